"""The Megolm message indexes a device already decrypted in one inbound session, in bounded space
(messaging.md §6.1; the twin of web/src/messenger/seenIndexes.ts).

A group message whose index was decrypted before is a replay and is refused. Keeping every index
grows with the session (the old list kept up to 10,000 per session and then forgot the oldest, which
made them decryptable again). Indexes are kept instead as sorted, disjoint ranges ``[start, end)``:
messages that arrive in order, the usual case, stay one range whatever their number. Out-of-order
arrival opens gaps; past :data:`MAX_RANGES` ranges the lowest gap is closed, so the first range's end
works as a low-water mark: everything below it counts as seen, like the anti-replay window of
RFC 4303 §3.4.3. A message that arrives more than 64 gaps late is therefore refused as a replay; with
sessions rotated every 100 messages (§6.1) and a server queue that delivers in order, that does not
happen to honest senders. Pure: no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

MAX_RANGES = 64
"""Ranges kept per session: what it stores is bounded by this, not by how many messages it carried."""


class SeenIndexes:
    __slots__ = ("_ends", "_starts")

    def __init__(self, indexes: Iterable[int] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for index in sorted(indexes):
            self.add(index)

    def __contains__(self, index: int) -> bool:
        at = bisect_right(self._starts, index) - 1
        return at >= 0 and index < self._ends[at]

    def add(self, index: int) -> bool:
        """Note ``index`` as decrypted; False if it counts as seen already (a replay)."""
        if index < 0:
            raise ValueError("a message index is not negative")
        starts, ends = self._starts, self._ends
        at = bisect_right(starts, index) - 1  # the range starting at or before index, if any
        if at >= 0 and index < ends[at]:
            return False
        joins_lower = at >= 0 and ends[at] == index
        joins_upper = at + 1 < len(starts) and starts[at + 1] == index + 1
        if joins_lower and joins_upper:
            ends[at] = ends[at + 1]
            del starts[at + 1], ends[at + 1]
        elif joins_lower:
            ends[at] = index + 1
        elif joins_upper:
            starts[at + 1] = index
        else:
            starts.insert(at + 1, index)
            ends.insert(at + 1, index + 1)
        if len(starts) > MAX_RANGES:  # close the lowest gap: the low-water mark moves up
            ends[0] = ends[1]
            del starts[1], ends[1]
        return True

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def to_json(self) -> list[list[int]]:
        return [[start, end] for start, end in self.ranges]

    @classmethod
    def from_json(cls, value: object) -> SeenIndexes:
        """Ranges as :meth:`to_json` writes them, or a plain list of indexes (state from before ranges);
        ValueError if it is neither."""
        if not isinstance(value, list):
            raise ValueError("seen indexes are a list")
        if all(type(i) is int for i in value):
            return cls(value)
        seen = cls()
        for pair in value:
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and all(type(i) is int for i in pair)
                and 0 <= pair[0] < pair[1]
                and (not seen._ends or seen._ends[-1] < pair[0])
            ):
                raise ValueError("seen index ranges are sorted, disjoint [start, end) pairs")
            seen._starts.append(pair[0])
            seen._ends.append(pair[1])
        if len(seen._starts) > MAX_RANGES:
            raise ValueError(f"more than {MAX_RANGES} seen index ranges")
        return seen
