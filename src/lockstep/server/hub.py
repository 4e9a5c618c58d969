"""Fan-out: which sockets here belong to which device (or link session), and pushing events to them,
here and, through a :class:`Bus`, on every other instance.

Events are addressed to *topics*: ``d:<device id>`` for the sockets of an authenticated device,
``l:<session id>`` for the companion socket that owns a link session. The hub delivers to its own
sockets at once and hands the same event to the bus, which carries it to the instances that have a
socket on that topic (``LocalBus`` for a single instance does nothing; ``redis_bus.RedisBus``
publishes on Redis). Events are a live convenience, never the record: messages stay queued in the
store until acknowledged, and clients fetch on (re)connect and on any gap in sequence numbers.

An event is encoded once (``frames.encode``), and the same text goes to every socket here and to the
bus, which carries it as text: no instance decodes or re-encodes what it passes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from lockstep.server.errors import Unavailable
from lockstep.server.fanout import FanoutTimer
from lockstep.server.frames import Encoded, Outgoing, encode

log = logging.getLogger(__name__)

DEVICE = "d:"
LINK = "l:"


def device_topic(device_id: str) -> str:
    return DEVICE + device_id


def link_topic(session_id: str) -> str:
    return LINK + session_id


class Peer(Protocol):
    """What the hub needs of a connection."""

    def push(self, frame: Outgoing, timer: FanoutTimer | None = None) -> None: ...

    def close_soon(self, code: int, reason: str) -> None: ...


class Receiver(Protocol):
    """What a bus calls back: an event from another instance, and "I was cut off and am back"."""

    def deliver(self, topic: str, frame: Encoded, close: Close | None) -> None: ...

    async def reconnected(self) -> None: ...


Close = tuple[int, str]
BusMessage = tuple[str, Encoded, Close | None]
"""A topic, an event for it, and (optionally) the code and reason to close its sockets with."""
_Delivery = tuple[list[BusMessage], FanoutTimer | None, Peer | None]
"""Events for sockets here, the timer of a send's copies among them, and a socket to leave out."""


class Bus(Protocol):
    """Carries hub events between instances."""

    async def start(self, receiver: Receiver) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, topic: str) -> None:
        """Receive this topic's events from now on (returns once the subscription is in force)."""
        ...

    async def unsubscribe(self, topic: str) -> None: ...

    async def publish(self, messages: list[BusMessage]) -> None:
        """Send events (and requests to close sockets) to the other instances."""
        ...

    async def present(self, topics: list[str]) -> set[str]:
        """Those of ``topics`` some instance (this one included) is subscribed to."""
        ...

    async def ping(self) -> None:
        """Raise :class:`Unavailable` unless the bus works."""
        ...


class LocalBus:
    """One instance: nothing to carry."""

    async def start(self, receiver: Receiver) -> None:
        pass

    async def close(self) -> None:
        pass

    async def subscribe(self, topic: str) -> None:
        pass

    async def unsubscribe(self, topic: str) -> None:
        pass

    async def publish(self, messages: list[BusMessage]) -> None:
        pass

    async def present(self, topics: list[str]) -> set[str]:
        return set()

    async def ping(self) -> None:
        pass


class Hub:
    def __init__(self, bus: Bus | None = None) -> None:
        self.bus: Bus = bus or LocalBus()
        self._peers: defaultdict[str, dict[Peer, None]] = defaultdict(dict)
        """Sockets per topic, oldest first."""
        self._waiting: deque[_Delivery] = deque()
        """Deliveries for the loop's next turn, in the order they were made (``push_each``)."""
        self.on_reconnected: Callable[[], Awaitable[None]] | None = None
        """Run after the bus was cut off and is back (events meanwhile may be lost): catch-up."""

    async def start(self) -> None:
        await self.bus.start(self)

    async def close(self) -> None:
        await self.bus.close()

    # --- sockets here -----------------------------------------------------------------------------
    async def attach(self, device_id: str, peer: Peer, most: int | None = None) -> list[Peer]:
        """Add a device's socket; with ``most``, the device's oldest sockets here beyond that many
        are returned (still attached) for the caller to close."""
        topic = device_topic(device_id)
        await self._attach(topic, peer)
        peers = list(self._peers.get(topic, ()))
        return peers[: max(0, len(peers) - most)] if most is not None else []

    async def detach(self, device_id: str, peer: Peer) -> None:
        await self._detach(device_topic(device_id), peer)

    async def attach_link(self, session_id: str, peer: Peer) -> None:
        await self._attach(link_topic(session_id), peer)

    async def detach_link(self, session_id: str, peer: Peer) -> None:
        await self._detach(link_topic(session_id), peer)

    async def _attach(self, topic: str, peer: Peer) -> None:
        first = topic not in self._peers
        self._peers[topic][peer] = None
        if first:
            try:
                await self.bus.subscribe(topic)
            except Unavailable as error:  # the bus subscribes to every local topic when it is back
                log.warning("events from other instances are not reaching this one: %s", error)

    async def _detach(self, topic: str, peer: Peer) -> None:
        peers = self._peers.get(topic)
        if peers is None or peer not in peers:
            return
        del peers[peer]
        if not peers:
            del self._peers[topic]
            with contextlib.suppress(Unavailable):  # a bus that is back subscribes to the topics here
                await self.bus.unsubscribe(topic)

    def device_count(self) -> int:
        return sum(1 for topic in self._peers if topic.startswith(DEVICE))

    def devices_here(self) -> list[str]:
        return [topic.removeprefix(DEVICE) for topic in self._peers if topic.startswith(DEVICE)]

    # --- sending ----------------------------------------------------------------------------------
    async def push(
        self, device_ids: Iterable[str], event: dict[str, Any], *, skip: Peer | None = None
    ) -> None:
        frame = encode(event)
        messages: list[BusMessage] = [(device_topic(device_id), frame, None) for device_id in device_ids]
        self._deliver_in_order((messages, None, skip))
        await self._publish(messages)

    async def push_each(self, frames: list[tuple[str, Encoded]], timer: FanoutTimer | None = None) -> None:
        """One frame per device (``(device id, frame)`` pairs), published together; ``timer`` counts
        the copies for sockets here until they are written.

        The sockets here get theirs in the event loop's next turn, not at once: the request that made
        them (a ``messages.send``) puts its answer in its own socket's outbox first, so its writer is
        woken before the 2,047 of a large group's devices and the sender hears "accepted" without
        waiting for every copy to be written (docs/benchmarks.md, "Large groups"). Whatever is made for
        sockets here meanwhile waits behind them (``_deliver_in_order``)."""
        messages: list[BusMessage] = [(device_topic(device_id), frame, None) for device_id, frame in frames]
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._deliver_waiting)
        self._waiting.append((messages, timer, None))
        await self._publish(messages)

    def _deliver_in_order(self, delivery: _Delivery) -> None:
        """Deliver at once, unless a send's copies wait for the next turn: then behind them, so a
        device's sockets get events in the order they were made (a group change or an unlink made
        right after a message never overtakes its copy, messaging.md §7.2)."""
        if self._waiting:
            self._waiting.append(delivery)
        else:
            self._deliver(delivery)

    def _deliver_waiting(self) -> None:
        while self._waiting:  # delivering adds nothing: sockets only queue frames
            self._deliver(self._waiting.popleft())

    def _deliver(self, delivery: _Delivery) -> None:
        messages, timer, skip = delivery
        for topic, frame, close in messages:
            for peer in tuple(self._peers.get(topic, ())):
                if peer is skip:
                    continue
                peer.push(frame, timer)
                if close is not None:
                    peer.close_soon(*close)
        if timer is not None:
            timer.arm()

    async def push_link(self, session_id: str, event: dict[str, Any]) -> None:
        """An event for the companion socket that owns a link session, wherever it is connected."""
        messages: list[BusMessage] = [(link_topic(session_id), encode(event), None)]
        self._deliver_in_order((messages, None, None))
        await self._publish(messages)

    async def disconnect(self, device_id: str, event: dict[str, Any], code: int, reason: str) -> None:
        """Tell every socket of a device, on every instance, why, then close them."""
        messages: list[BusMessage] = [(device_topic(device_id), encode(event), (code, reason))]
        self._deliver_in_order((messages, None, None))
        await self._publish(messages)

    async def _publish(self, messages: list[BusMessage]) -> None:
        if not messages:
            return
        try:
            await self.bus.publish(messages)
        except Unavailable as error:  # the store has what matters; clients catch up (deploy.md)
            log.warning("an event did not reach other instances: %s", error)

    def deliver(self, topic: str, frame: Encoded, close: Close | None) -> None:
        """Push to this instance's sockets on ``topic`` (and close them if asked: each detaches itself
        as its socket ends, which ends the subscription with the last one), after what was made for
        them before."""
        self._deliver_in_order(([(topic, frame, close)], None, None))

    async def reconnected(self) -> None:
        if self.on_reconnected is not None:
            await self.on_reconnected()

    # --- presence ---------------------------------------------------------------------------------
    async def online(self, device_ids: Iterable[str]) -> set[str]:
        """Those devices with a socket on some instance."""
        ids = list(device_ids)
        here = {device_id for device_id in ids if device_topic(device_id) in self._peers}
        elsewhere = [device_topic(device_id) for device_id in ids if device_id not in here]
        try:
            present = await self.bus.present(elsewhere) if elsewhere else set()
        except Unavailable:
            present = set()
        return here | {topic.removeprefix(DEVICE) for topic in present}

    async def link_owner_present(self, session_id: str) -> bool:
        """Whether the companion socket of a link session is still connected to some instance."""
        topic = link_topic(session_id)
        if topic in self._peers:
            return True
        try:
            return bool(await self.bus.present([topic]))
        except Unavailable:
            return False
