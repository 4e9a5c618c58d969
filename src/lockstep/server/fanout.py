"""A send's copies on their way to sockets: their ``message`` events encoded once, and the time until the
last of them was written (messaging.md §7.2; the ``lockstep_send_fanout_seconds`` metric).

A group message at 1,024 members x 2 devices is 2,047 copies of one event that differ only in each
device's sequence number: the rest is encoded once and each number spliced in, instead of building
and encoding 2,047 events field by field (docs/benchmarks.md, "Large groups").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from lockstep.server.frames import Encoded, encode
from lockstep.server.store import QueuedMessage

_HEAD = '{"event":"message","seq":'
"""How every ``message`` event starts: ``events.Message`` has ``seq`` as its first field."""

_SameButSeq = tuple[int, str, str, str, str | None, int]


def message_frames(copies: Iterable[tuple[str, QueuedMessage]]) -> list[tuple[str, Encoded]]:
    """Each ``(device id, queued copy)``'s ``message`` event as text, in order; copies of one message
    with one payload object (a group's Megolm message) share all but their sequence number's text."""
    tails: dict[_SameButSeq, str] = {}
    frames: list[tuple[str, Encoded]] = []
    for device_id, message in copies:
        key = (
            id(message.payload),  # payload objects live as long as ``copies``: ids stay distinct
            message.message_id,
            message.sender_account,
            message.sender_device,
            message.group_id,
            message.server_time,
        )
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = _tail(message)
        frames.append((device_id, Encoded(f"{_HEAD}{message.seq}{tail}")))
    return frames


def _tail(message: QueuedMessage) -> str:
    """The event's text after its sequence number."""
    text = encode(message.to_event())
    number = str(message.seq)
    if not text.startswith(_HEAD + number):
        raise AssertionError(f"a message event no longer starts with {_HEAD!r}: {text[:40]!r}")
    return text[len(_HEAD) + len(number) :]


class FanoutTimer:
    """Counts a send's copies down as this instance's sockets write them, and reports the time from
    the send's arrival to its last copy written here. A copy that is never written (its socket went
    away first, or was closed for not reading) leaves the send unreported."""

    __slots__ = ("_armed", "_copies", "_left", "_report", "_started")

    def __init__(self, started: float, report: Callable[[float], None]) -> None:
        self._started = started
        """``time.perf_counter()`` when the send arrived."""
        self._report = report
        self._copies = self._left = 0
        self._armed = False

    def expect(self) -> None:
        """One more copy is in a socket's outbox."""
        self._copies += 1
        self._left += 1

    def written(self) -> None:
        self._left -= 1
        if self._left == 0 and self._armed:
            self._report(time.perf_counter() - self._started)

    def arm(self) -> None:
        """Every copy for a socket here has been expected: report once the last is written (now, if
        the sockets wrote them all while the send was still being passed to other instances)."""
        self._armed = True
        if self._copies and self._left == 0:
            self._report(time.perf_counter() - self._started)
