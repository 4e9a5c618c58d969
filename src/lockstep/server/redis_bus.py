"""The hub's bus over Redis pub/sub: one channel per topic, so an event goes only to the instances
that have a socket on it (design and guarantees: docs/ARCHITECTURE.md, docs/deploy.md).

Each instance holds one pub/sub connection, subscribed to ``P:t:<topic>`` for every topic with a
socket here (``d:<device id>``, ``l:<link session id>``) and to its own ``P:i:<instance id>``. A
subscription is awaited until Redis confirms it, so an event published after ``auth`` has replied is
never missed. Publishing is ``PUBLISH`` per topic in one pipeline; ``PUBSUB NUMSUB`` answers "is this
device connected anywhere". A message is the event's JSON text as the sockets get it, behind the
publishing instance's id and any request to close (:func:`pack`), so an instance passes events on
without decoding them, and drops its own by their first bytes. Redis pub/sub keeps nothing: when the
connection drops (Redis restarts, or drops us as too slow), events meanwhile are lost, so after
subscribing again the bus tells the hub (``Receiver.reconnected``), which has every socket here catch
up from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lockstep.server.errors import Unavailable
from lockstep.server.frames import Encoded
from lockstep.server.hub import BusMessage, Close, Receiver
from lockstep.server.redis_backend import connect, text, unavailable_on_error

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 2.0
START_TIMEOUT_S = 5.0
RECONNECT_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0)


def pack(instance_id: str, frame: Encoded, close: Close | None) -> str:
    """``<instance id> TAB <close as JSON, or nothing> TAB <the frame's JSON text>``. JSON text never
    holds a raw tab (RFC 8259 §7: control characters are escaped), so the first two tabs split it."""
    return f"{instance_id}\t{'' if close is None else json.dumps(close)}\t{frame}"


def unpack(data: bytes) -> tuple[str, Close | None, Encoded]:
    instance_id, close, frame = data.decode().split("\t", 2)
    code, reason = json.loads(close) if close else (None, None)
    return instance_id, None if code is None else (int(code), str(reason)), Encoded(frame)


class RedisBus:
    def __init__(self, url: str, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        # The listening connection must not reconnect behind our back (redis-py retries and
        # resubscribes by itself otherwise): that would hide that events were lost meanwhile.
        self._pubsub_client = connect(url, retry=Retry(NoBackoff(), 0))
        self._prefix = f"{prefix}:t:"
        self.instance_id = secrets.token_hex(8)
        self._own_channel = f"{prefix}:i:{self.instance_id}"
        self._own_messages = f"{self.instance_id}\t".encode()
        self._topics: set[str] = set()
        self._pubsub: PubSub | None = None
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._listening: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._receiver: Receiver | None = None
        self._catch_up: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._listening = asyncio.create_task(self._listen(), name="redis-bus")
        try:
            await asyncio.wait_for(self._up.wait(), timeout=START_TIMEOUT_S)
        except TimeoutError:
            log.error("Redis is not reachable; serving, and retrying in the background")

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        await self._pubsub_client.aclose()
        await self._client.aclose()

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    # --- the listening connection -----------------------------------------------------------------
    def _channel(self, topic: str) -> str:
        return self._prefix + topic

    async def _listen(self) -> None:
        attempt, ever_up = 0, False
        while True:
            pubsub = self._pubsub_client.pubsub()
            try:
                # Our own channel last: its confirmation means every topic before it is in force.
                await pubsub.subscribe(*[self._channel(t) for t in self._topics], self._own_channel)
                self._pubsub = pubsub
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        channel = text(message["channel"])
                        if channel == self._own_channel:
                            attempt = 0
                            self._up.set()
                            if ever_up:
                                log.warning("Redis pub/sub is back; sockets here catch up from the store")
                                self._catch_up = asyncio.create_task(
                                    self._reconnected(), name="redis-bus-catch-up"
                                )
                            ever_up = True
                        self._confirm(channel)
                    elif message["type"] == "message":
                        self._deliver(text(message["channel"]), message["data"])
            except (RedisConnectionError, RedisTimeoutError, OSError) as error:
                if self._up.is_set():
                    log.warning("Redis pub/sub connection lost: %s", error)
            finally:
                self._up.clear()
                self._pubsub = None
                self._fail_waiters()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
            await asyncio.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
            attempt += 1

    async def _reconnected(self) -> None:
        assert self._receiver is not None
        try:
            await self._receiver.reconnected()
        except Exception:
            log.exception("catching up after a Redis outage failed")

    def _deliver(self, channel: str, data: bytes) -> None:
        if not channel.startswith(self._prefix) or self._receiver is None:
            return
        if data.startswith(self._own_messages):
            return  # the hub delivered it here already
        _, close, frame = unpack(data)
        self._receiver.deliver(channel.removeprefix(self._prefix), frame, close)

    def _confirm(self, channel: str) -> None:
        waiters = self._waiters.get(channel)
        if waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
            if not waiters:
                del self._waiters[channel]

    def _fail_waiters(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(Unavailable("Redis pub/sub connection lost"))
        self._waiters.clear()

    # --- Bus --------------------------------------------------------------------------------------
    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        pubsub = self._pubsub
        if pubsub is None:
            raise Unavailable("Redis pub/sub is reconnecting")
        channel = self._channel(topic)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        with unavailable_on_error():
            await pubsub.subscribe(channel)
        try:
            await asyncio.wait_for(waiter, timeout=SUBSCRIBE_TIMEOUT_S)
        except TimeoutError as error:
            raise Unavailable("Redis did not confirm a subscription in time") from error

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        pubsub = self._pubsub
        if pubsub is not None:
            with unavailable_on_error():
                await pubsub.unsubscribe(self._channel(topic))

    async def publish(self, messages: list[BusMessage]) -> None:
        with unavailable_on_error():
            async with self._client.pipeline(transaction=False) as pipe:
                for topic, frame, close in messages:
                    pipe.publish(self._channel(topic), pack(self.instance_id, frame, close))
                await pipe.execute()

    async def present(self, topics: list[str]) -> set[str]:
        with unavailable_on_error():
            counts = await self._client.pubsub_numsub(*[self._channel(t) for t in topics])
        return {text(channel).removeprefix(self._prefix) for channel, count in counts if count > 0}

    async def ping(self) -> None:
        if not self.connected:
            raise Unavailable("Redis pub/sub is not connected")
        with unavailable_on_error():
            await self._client.ping()
