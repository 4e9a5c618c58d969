"""What every request handler can reach: settings-derived facts, the store, link sessions, the hub."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from lockstep.server.clock import Clock, system_clock
from lockstep.server.hub import Hub
from lockstep.server.link_sessions import LinkRegistry
from lockstep.server.ratelimit import RateLimiter
from lockstep.server.storage import SqliteStore


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits of docs/protocol/linking.md §6.4."""

    link_start: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=20))
    unknown_refs: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=10))
    auth_failures: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=20))
    registrations: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=10))
    key_claims: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=600))
    """keys.claim and accounts.lookup per device (messaging.md §7.6): one-time keys are a finite pool."""
    sends: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=1200))
    """messages.send, groups.* changes and media.token per device (messaging.md §7.6)."""


@dataclass(slots=True)
class Services:
    origin: str
    store: SqliteStore
    links: LinkRegistry = field(default_factory=LinkRegistry)
    hub: Hub = field(default_factory=Hub)
    limits: Limits = field(default_factory=Limits)
    clock: Clock = system_clock
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """How timers wait, in seconds; tests swap in one driven by their fake clock."""
    media_max_bytes: int = 100 * 1024 * 1024
    """Largest encrypted media blob accepted (LOCKSTEP_MEDIA_MAX_BYTES)."""
    media_dir: Path | None = None
    """Where encrypted blobs live; by default a ``media`` folder beside the database."""
    media_retention_ms: int = 30 * 86_400_000
    """Blobs are deleted this long after upload (WhatsApp keeps undownloaded media about as long)."""
    media_tokens: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Media HTTP bearer tokens: token → (device id, expiry in server ms)."""

    @property
    def media_root(self) -> Path:
        return self.media_dir if self.media_dir is not None else self.store.path.parent / "media"
