"""What several instances share through Redis (``--redis URL``): link sessions, rate limits, media
tokens (here) and the fan-out bus (``redis_bus.py``). Imported only when a Redis URL is configured.

Keys, all under the deployment's prefix ``P`` (``--redis-prefix``, so deployments can share a Redis):

| key | holds | lifetime |
|---|---|---|
| ``P:ls:<session id>`` | a link session as ``LinkSession.to_json()`` | 11 minutes after its last change |
| ``P:lr:<ref hex>`` | the id of the session that issued a ref | as its session |
| ``P:lc:<code id>`` | the id of the typed-code session (linking.md §10) using a code id | as its session |
| ``P:rl:<limit>:<key>`` | a token bucket, hash ``u`` (units) ``t`` (ms) | its window + 1 s after last use |
| ``P:mt:<token>`` | a media token's device id and expiry | the token's lifetime |
| ``P:up:<device id>`` | uploads in flight, hash upload → ``<bytes held>:<until ms>`` | its newest lease |

Nothing here is durable: if Redis loses it, codes on screen stop working (the companion page offers a
new one), media tokens are asked for again, and limits start afresh (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from lockstep.link.bycode import new_code_id
from lockstep.server.errors import Unavailable
from lockstep.server.link_sessions import REMEMBER_MS, CompanionContext, LinkRegistry, LinkSession
from lockstep.server.link_store import (
    CODE_ID_ATTEMPTS,
    LinkOperations,
    RefChange,
    SessionChange,
    no_free_code_id,
)
from lockstep.server.media_tokens import new_token
from lockstep.server.media_uploads import TooManyUploads
from lockstep.server.ratelimit import WINDOW_MS

T = TypeVar("T")

SESSION_TTL_MS = REMEMBER_MS + 60_000
WATCH_ATTEMPTS = 50


POOL_SIZE = 64
"""Connections to Redis one client opens at most. More commands at once wait for a free connection
(at most POOL_WAIT_S) instead of failing: redis-py's default pool refuses the 101st concurrent command
("Too many connections"), which 1,000 link flows at once reached (docs/benchmarks.md)."""
POOL_WAIT_S = 5.0


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client for ``redis://``, ``rediss://`` or ``unix://`` URLs; short timeouts so an unreachable
    Redis turns into ``unavailable`` answers rather than hung requests."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        socket_timeout=2,
        socket_connect_timeout=2,
        socket_keepalive=True,
        **options,
    )
    return aioredis.Redis.from_pool(pool)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        raise Unavailable(f"Redis: {error}") from error


# Atomic token bucket: the rule of ratelimit.refill/spend, in integer units (exact in Lua's doubles).
# KEYS[1] bucket; ARGV: per_minute, now_ms, spend (1) or only look (0), window_ms, ttl_ms.
# Returns 1 when a token was spent (spend) or none is left (look), else 0.
BUCKET_SCRIPT = """
local per_minute, now, spend = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local window, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local cap = per_minute * window
local stored = redis.call('HMGET', KEYS[1], 'u', 't')
local units, updated = cap, now
if stored[1] then
  units, updated = tonumber(stored[1]), tonumber(stored[2])
  units = math.min(cap, units + math.max(0, now - updated) * per_minute)
  updated = math.max(now, updated)
elseif not spend then
  return 0
end
if not spend then
  if units < window then return 1 else return 0 end
end
local allowed = 0
if units >= window then
  units = units - window
  allowed = 1
end
redis.call('HSET', KEYS[1], 'u', string.format('%.0f', units), 't', string.format('%.0f', updated))
redis.call('PEXPIRE', KEYS[1], ttl)
return allowed
"""


class RedisRateLimiter:
    """One limit whose buckets live in Redis: ``per_minute`` per key across every instance."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, name: str, per_minute: int, window_ms: int = WINDOW_MS
    ) -> None:
        self.per_minute = per_minute
        self._keep_ms = window_ms + 1_000  # an idle bucket is full again after a window: forget it
        self._client = client
        self._key = f"{prefix}:rl:{name}:"
        self._script = client.register_script(BUCKET_SCRIPT)

    async def _run(self, key: str, now_ms: int, spend: bool) -> bool:
        args = [self.per_minute, now_ms, 1 if spend else 0, WINDOW_MS, self._keep_ms]
        with unavailable_on_error():
            return bool(await self._script(keys=[self._key + key], args=args))

    async def allow(self, key: str, now_ms: int) -> bool:
        try:
            return await self._run(key, now_ms, spend=True)
        except Unavailable:
            # Limits guard against abuse, not correctness: while Redis is away, serve rather than
            # refuse everyone (docs/deploy.md, "Failure semantics").
            return True

    async def exhausted(self, key: str, now_ms: int) -> bool:
        try:
            return await self._run(key, now_ms, spend=False)
        except Unavailable:
            return False


class RedisMediaTokens:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}:mt:"

    async def issue(self, device_id: str, now: int, lifetime_ms: int) -> str:
        token = new_token()
        value = json.dumps([device_id, now + lifetime_ms])
        with unavailable_on_error():
            await self._client.set(self._prefix + token, value, px=lifetime_ms)
        return token

    async def device(self, token: str, now: int) -> str | None:
        with unavailable_on_error():
            raw = await self._client.get(self._prefix + token)
        if raw is None:
            return None
        device_id, expires_at = json.loads(raw)
        return str(device_id) if int(expires_at) > now else None


class RedisLinkStore(LinkOperations):
    """Link sessions as JSON in Redis; each operation loads one session into a fresh
    :class:`LinkRegistry`, applies the rule there and writes the session back in a MULTI/EXEC that
    fails if anyone else changed it meanwhile (WATCH), in which case it runs again on the new state."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._sessions = f"{prefix}:ls:"
        self._refs = f"{prefix}:lr:"
        self._codes = f"{prefix}:lc:"

    async def start(self, context: CompanionContext, now: int, *, code: bool = False) -> LinkSession:
        session = LinkRegistry().start(context, now)
        if code:
            for _ in range(CODE_ID_ATTEMPTS):
                code_id = new_code_id()
                with unavailable_on_error():
                    taken = await self._client.set(
                        self._codes + code_id, session.session_id, nx=True, px=SESSION_TTL_MS
                    )
                if taken:
                    session.code_id = code_id
                    break
            else:
                raise no_free_code_id()
        with unavailable_on_error():
            await self._client.set(
                self._sessions + session.session_id, json.dumps(session.to_json()), px=SESSION_TTL_MS
            )
        return session

    async def _on_session(self, session_id: str, change: SessionChange[T]) -> T:
        key = self._sessions + session_id
        with unavailable_on_error():
            async with self._client.pipeline(transaction=True) as pipe:
                for _ in range(WATCH_ATTEMPTS):
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        session = None if raw is None else LinkSession.from_json(json.loads(raw))
                        registry = LinkRegistry()
                        before: dict[str, Any] | None = None
                        if session is not None:
                            registry.adopt(session)
                            before = session.to_json()
                        result = change(registry, session)
                        if session is None or session.to_json() == before:
                            return result  # leaving the pipeline block unwatches
                        pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                        pipe.set(key, json.dumps(session.to_json()), px=SESSION_TTL_MS)
                        for issued in session.refs:
                            pipe.set(self._refs + issued.ref.hex(), session_id, px=SESSION_TTL_MS)
                        await pipe.execute()
                        return result
                    except WatchError:
                        continue
        raise Unavailable("Redis: a link session kept changing under this update")

    async def _on_ref(self, ref: bytes, change: RefChange[T]) -> T:
        with unavailable_on_error():
            session_id = await self._client.get(self._refs + ref.hex())
        if session_id is None:
            return change(LinkRegistry())  # the registry's own answer for a ref it does not know
        return await self._on_session(text(session_id), lambda registry, _session: change(registry))

    async def _on_code(self, code_id: str, change: RefChange[T]) -> T:
        with unavailable_on_error():
            session_id = await self._client.get(self._codes + code_id)
        if session_id is None:
            return change(LinkRegistry())
        return await self._on_session(text(session_id), lambda registry, _session: change(registry))


# A device's uploads in flight, shared by every instance. KEYS[1] the device's hash; ARGV: upload id,
# bytes it holds, now_ms, lease_ms, and for a new upload the cap (0: an upload growing). Entries whose
# lease ran out (their instance died mid-upload) are dropped first. Returns the bytes the device's
# other uploads hold, or -1 when a new upload would pass the cap.
UPLOAD_SCRIPT = """
local upload, held, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local entries = redis.call('HGETALL', KEYS[1])
local live, others = 0, 0
for i = 1, #entries, 2 do
  local size, until_ms = string.match(entries[i + 1], '^(%d+):(%d+)$')
  if tonumber(until_ms) <= now then
    redis.call('HDEL', KEYS[1], entries[i])
  elseif entries[i] == upload then
    held = math.max(held, tonumber(size))
  else
    live = live + 1
    others = others + tonumber(size)
  end
end
if cap > 0 and live >= cap then return -1 end
redis.call('HSET', KEYS[1], upload, string.format('%.0f:%.0f', held, now + lease))
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return others
"""


class RedisUploads:
    """The uploads ledger (media_uploads.UploadLedger) in Redis: a device's cap and the quota its
    uploads hold count across every instance. An upload an instance never finished (it died) stops
    counting when its lease runs out, at most as long as its body could still have been arriving."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._prefix = f"{prefix}:up:"
        self._client = client
        self._script = client.register_script(UPLOAD_SCRIPT)

    async def _run(self, device_id: str, upload: str, held: int, now_ms: int, lease_ms: int, cap: int) -> int:
        with unavailable_on_error():
            return int(
                await self._script(
                    keys=[self._prefix + device_id], args=[upload, held, now_ms, lease_ms, cap]
                )
            )

    async def start(
        self, device_id: str, declared: int, per_device: int, now_ms: int, lease_ms: int
    ) -> tuple[str, int]:
        upload = new_token()
        others = await self._run(device_id, upload, declared, now_ms, lease_ms, max(per_device, 1))
        if others < 0:
            raise TooManyUploads(per_device)
        return upload, others

    async def grow(self, device_id: str, upload: str, received: int, now_ms: int, lease_ms: int) -> int:
        return await self._run(device_id, upload, received, now_ms, lease_ms, 0)

    async def finish(self, device_id: str, upload: str) -> None:
        with unavailable_on_error():
            await self._client.hdel(self._prefix + device_id, upload)
