"""Token buckets keyed by address or device: cheap, in memory, forgetful of idle keys."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_ms: int


@dataclass(slots=True)
class RateLimiter:
    """Allows ``per_minute`` events per key on average, in bursts of at most ``per_minute``."""

    per_minute: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, key: str, now_ms: int) -> bool:
        """Spend one token for ``key``; False when it has none left."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._forget_full(now_ms)
            bucket = self._buckets[key] = _Bucket(float(self.per_minute), now_ms)
        refill = (now_ms - bucket.updated_ms) * self.per_minute / 60_000
        bucket.tokens = min(float(self.per_minute), bucket.tokens + refill)
        bucket.updated_ms = now_ms
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def exhausted(self, key: str, now_ms: int) -> bool:
        """True if ``key`` has no token now, without spending one."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return False
        refill = (now_ms - bucket.updated_ms) * self.per_minute / 60_000
        return bucket.tokens + refill < 1

    def _forget_full(self, now_ms: int) -> None:
        stale = [k for k, b in self._buckets.items() if now_ms - b.updated_ms > 60_000]
        for key in stale:
            del self._buckets[key]
