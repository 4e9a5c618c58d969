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
from collections import defaultdict
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
        topics = [device_topic(device_id) for device_id in device_ids]
        for topic in topics:
            for peer in tuple(self._peers.get(topic, ())):
                if peer is not skip:
                    peer.push(frame)
        await self._publish([(topic, frame, None) for topic in topics])

    async def push_each(self, frames: list[tuple[str, Encoded]], timer: FanoutTimer | None = None) -> None:
        """One frame per device (``(device id, frame)`` pairs), published together; ``timer`` counts
        the copies for sockets here until they are written.

        The sockets here get theirs in the event loop's next turn, not at once: the request that made
        them (a ``messages.send``) puts its answer in its own socket's outbox first, so its writer is
        woken before the 2,047 of a large group's devices and the sender hears "accepted" without
        waiting for every copy to be written (docs/benchmarks.md, "Large groups")."""
        messages: list[BusMessage] = [(device_topic(device_id), frame, None) for device_id, frame in frames]
        asyncio.get_running_loop().call_soon(self._deliver_each, messages, timer)
        await self._publish(messages)

    def _deliver_each(self, messages: list[BusMessage], timer: FanoutTimer | None) -> None:
        for topic, frame, _ in messages:
            for peer in tuple(self._peers.get(topic, ())):
                peer.push(frame, timer)
        if timer is not None:
            timer.arm()

    async def push_link(self, session_id: str, event: dict[str, Any]) -> None:
        """An event for the companion socket that owns a link session, wherever it is connected."""
        topic, frame = link_topic(session_id), encode(event)
        self.deliver(topic, frame, None)
        await self._publish([(topic, frame, None)])

    async def disconnect(self, device_id: str, event: dict[str, Any], code: int, reason: str) -> None:
        """Tell every socket of a device, on every instance, why, then close them."""
        topic, frame = device_topic(device_id), encode(event)
        self.deliver(topic, frame, (code, reason))
        await self._publish([(topic, frame, (code, reason))])

    async def _publish(self, messages: list[BusMessage]) -> None:
        if not messages:
            return
        try:
            await self.bus.publish(messages)
        except Unavailable as error:  # the store has what matters; clients catch up (deploy.md)
            log.warning("an event did not reach other instances: %s", error)

    def deliver(self, topic: str, frame: Encoded, close: Close | None) -> None:
        """Push to this instance's sockets on ``topic`` (and close them if asked: each detaches itself
        as its socket ends, which ends the subscription with the last one)."""
        for peer in tuple(self._peers.get(topic, ())):
            peer.push(frame)
            if close is not None:
                peer.close_soon(*close)

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
