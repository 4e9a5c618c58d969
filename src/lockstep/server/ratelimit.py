"""Rate limits: token buckets keyed by address or device, behind one interface with two homes.

The rule is :func:`refill` and :func:`spend`: ``per_minute`` tokens a minute on average, in bursts of
at most ``per_minute``. :class:`MemoryRateLimiter` keeps buckets in this process (one instance);
``lockstep.server.redis_state.RedisRateLimiter`` keeps them in Redis so a limit holds per key across
every instance. A contract test (tests/server/test_server_backends.py) runs both through the same
sequence and expects the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Bucket:
    """Tokens counted in units of 1/60,000 token, so refilling is exact integer arithmetic
    (``per_minute`` units per millisecond) wherever the rule runs, Python or Redis's Lua."""

    units: int
    updated_ms: int


def refill(bucket: Bucket | None, per_minute: int, now_ms: int) -> Bucket:
    """The bucket as of ``now_ms``: full if new; a clock that went backwards refills nothing."""
    if bucket is None:
        return Bucket(per_minute * WINDOW_MS, now_ms)
    elapsed = max(0, now_ms - bucket.updated_ms)
    units = min(per_minute * WINDOW_MS, bucket.units + elapsed * per_minute)
    return Bucket(units, max(now_ms, bucket.updated_ms))


def spend(bucket: Bucket | None, per_minute: int, now_ms: int) -> tuple[Bucket, bool]:
    """Spend one token: the new bucket and whether there was one to spend."""
    current = refill(bucket, per_minute, now_ms)
    if current.units < WINDOW_MS:
        return current, False
    return Bucket(current.units - WINDOW_MS, current.updated_ms), True


class RateLimiter(Protocol):
    """One limit (``per_minute`` per key); where its buckets live is the implementation's business."""

    per_minute: int

    async def allow(self, key: str, now_ms: int) -> bool:
        """Spend one token for ``key``; False when it has none left."""
        ...

    async def exhausted(self, key: str, now_ms: int) -> bool:
        """True if ``key`` has no token now, without spending one."""
        ...


@dataclass(slots=True)
class MemoryRateLimiter:
    """Buckets in this process: cheap, forgetful of idle keys, right for a single instance."""

    per_minute: int
    _buckets: dict[str, Bucket] = field(default_factory=dict)

    async def allow(self, key: str, now_ms: int) -> bool:
        if key not in self._buckets and len(self._buckets) > 100_000:
            self._forget_full(now_ms)
        self._buckets[key], allowed = spend(self._buckets.get(key), self.per_minute, now_ms)
        return allowed

    async def exhausted(self, key: str, now_ms: int) -> bool:
        bucket = self._buckets.get(key)
        return bucket is not None and refill(bucket, self.per_minute, now_ms).units < WINDOW_MS

    def _forget_full(self, now_ms: int) -> None:
        stale = [k for k, b in self._buckets.items() if now_ms - b.updated_ms > WINDOW_MS]
        for key in stale:
            del self._buckets[key]


@dataclass(slots=True)
class PerWindow:
    """``inner``'s ``per_minute`` events per ``window_ms`` instead of per minute.

    The same bucket rule on a clock slowed by ``window_ms / WINDOW_MS``, so it holds unchanged wherever
    ``inner`` keeps its buckets (memory or Redis), and idle keys are forgotten after one window.
    """

    inner: RateLimiter
    window_ms: int
    per_minute: int = field(init=False)
    """Events per window (the name is the interface's)."""

    def __post_init__(self) -> None:
        self.per_minute = self.inner.per_minute

    def _slowed(self, now_ms: int) -> int:
        return now_ms * WINDOW_MS // self.window_ms

    async def allow(self, key: str, now_ms: int) -> bool:
        return await self.inner.allow(key, self._slowed(now_ms))

    async def exhausted(self, key: str, now_ms: int) -> bool:
        return await self.inner.exhausted(key, self._slowed(now_ms))
