"""What every request handler can reach: settings-derived facts, the store, link sessions, the hub."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import HTTPConnection

from lockstep.calls.turn import TurnServer
from lockstep.server.admission import Admission
from lockstep.server.ca_page import LocalCa
from lockstep.server.client_address import ClientAddress, TrustedProxies, address_of
from lockstep.server.clock import Clock, system_clock
from lockstep.server.context import Network
from lockstep.server.disk import DiskGuard
from lockstep.server.hub import Hub, Peer
from lockstep.server.link_store import LinkStore, MemoryLinkStore
from lockstep.server.media_tokens import MediaTokens, MemoryMediaTokens
from lockstep.server.media_uploads import UploadLedger, UploadPace, UploadsInFlight
from lockstep.server.metrics import Metrics
from lockstep.server.ratelimit import WINDOW_MS, MemoryRateLimiter, PerWindow, RateLimiter
from lockstep.server.settings import StorageLimits
from lockstep.server.store import MediaQuota, Store, StrangerLimits


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits of docs/protocol/linking.md §6.4 and messaging.md §7.6 (rates in :data:`RATES`)."""

    link_start: RateLimiter
    unknown_refs: RateLimiter
    code_offers: RateLimiter
    """``link.code.offer`` per account: each is one online guess at a typed code (linking.md §10.3)."""
    auth_failures: RateLimiter
    """Failed ``auth`` per address; a valid signature is never refused (SECURITY.md)."""
    auth_device_failures: RateLimiter
    """Failed ``auth`` per claimed (existing) device, from any address."""
    registrations: RateLimiter
    key_claims: RateLimiter
    """keys.claim and accounts.lookup per device (messaging.md §7.6): one-time keys are a finite pool."""
    sends: RateLimiter
    """messages.send, groups.* changes and media.token per device (messaging.md §7.6)."""
    one_time_keys: RateLimiter
    """One-time keys per (claimer account, target device) per window (StorageLimits.key_claims and
    key_claim_window_s); past it the fallback key is handed out."""

    @classmethod
    def build(
        cls, limiter: Callable[[str, int, int], RateLimiter], storage: StorageLimits | None = None
    ) -> Limits:
        """Every limit from ``limiter(name, per_minute, window_ms)`` (in Redis, so a limit holds across
        instances); ``window_ms`` is how long, in real time, an idle bucket takes to fill up again."""
        storage = storage or StorageLimits()
        window_ms = storage.key_claim_window_s * 1000
        one_time_keys = PerWindow(limiter("one_time_keys", storage.key_claims, window_ms), window_ms)
        limits = {name: limiter(name, rate, WINDOW_MS) for name, rate in RATES.items()}
        return cls(**limits, one_time_keys=one_time_keys)

    @classmethod
    def in_memory(cls, storage: StorageLimits | None = None) -> Limits:
        return cls.build(lambda name, rate, window_ms: MemoryRateLimiter(per_minute=rate), storage)


RATES = {
    "link_start": 20,
    "unknown_refs": 10,
    "code_offers": 5,
    "auth_failures": 20,
    "auth_device_failures": 20,
    "registrations": 10,
    "key_claims": 600,
    "sends": 1200,
}
"""Events per key per minute, each limit's bucket size too."""


@dataclass(slots=True)
class Services:
    origin: str
    store: Store
    links: LinkStore = field(default_factory=MemoryLinkStore)
    hub: Hub = field(default_factory=Hub)
    limits: Limits = field(default_factory=Limits.in_memory)
    media_tokens: MediaTokens = field(default_factory=MemoryMediaTokens)
    clock: Clock = system_clock
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """How timers wait, in seconds; tests swap in one driven by their fake clock."""
    media_max_bytes: int = 100 * 1024 * 1024
    """Largest encrypted media blob accepted (LOCKSTEP_MEDIA_MAX_BYTES)."""
    media_dir: Path | None = None
    """Where encrypted blobs live (LOCKSTEP_MEDIA_DIR; with several instances, one folder they all
    share); the runner sets it, by default to a ``media`` folder in the data folder."""
    media_retention_ms: int = 30 * 86_400_000
    """Blobs are deleted this long after upload (WhatsApp keeps undownloaded media about as long)."""
    media_uploads: UploadLedger = field(default_factory=UploadsInFlight)
    """Uploads still streaming, per device (in this process, or in Redis across instances): capped,
    and held against its quota."""
    media_pace: UploadPace = field(default_factory=UploadPace)
    """How fast an upload body must arrive before it is cut off (its partial file deleted)."""
    storage_limits: StorageLimits = field(default_factory=StorageLimits)
    """Quotas against storage abuse; ``limits.one_time_keys`` is built from the same settings."""
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    """Reverse proxies whose forwarding header is believed (--trusted-proxy); none by default."""
    separate_networks: tuple[Network, ...] = ()
    """Networks of their own for ``same_network`` (--separate-network, linking.md §6.5)."""
    allowed_origins: tuple[str, ...] = ()
    """Origins besides ``origin`` whose pages and Host names are served (--allowed-origin)."""
    admission: Admission[Peer] = field(default_factory=Admission[Peer])
    """Caps on sockets that have not authenticated (per process: sockets live in one process)."""
    disk: DiskGuard | None = None
    """Free-space reserve of the data and media folders; None: not watched (in-memory tests)."""
    metrics: Metrics = field(default_factory=Metrics)
    local_ca: LocalCa | None = None
    """``serve --lan``'s certificate authority: its root is served at ``/ca.crt`` with a page at ``/ca``."""
    turn: TurnServer | None = None
    """The coturn whose short-lived credentials ``calls.ice_servers`` hands out (--turn-url)."""
    draining: bool = False
    """Set on SIGTERM: ``/readyz`` answers 503 so a load balancer sends new clients elsewhere."""

    @property
    def stranger_limits(self) -> StrangerLimits:
        return StrangerLimits(
            self.storage_limits.stranger_sender_bytes, self.storage_limits.stranger_queue_bytes
        )

    @property
    def media_quota(self) -> MediaQuota:
        return MediaQuota(self.storage_limits.media_daily_bytes, self.storage_limits.media_stored_bytes)

    def client_address(self, connection: HTTPConnection) -> ClientAddress:
        """Who sent an HTTP request or opened a WebSocket: the one answer every per-address rule uses."""
        return address_of(connection, self.proxies)

    @property
    def media_root(self) -> Path:
        if self.media_dir is None:
            raise RuntimeError("Services.media_dir is not set (the runner sets it from the settings)")
        return self.media_dir
