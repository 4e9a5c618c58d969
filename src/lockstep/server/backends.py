"""Where the state that crosses instances lives, chosen from a URL (like broadcaster's backends):
none or ``memory://`` keeps it in this process (one instance, the default); ``redis://``,
``rediss://`` or ``unix://`` puts it in Redis, so several instances behind one load balancer act as one
server. The Redis driver is imported only when asked for.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from lockstep.server.hub import Hub
from lockstep.server.link_store import LinkStore, MemoryLinkStore
from lockstep.server.media_tokens import MediaTokens, MemoryMediaTokens
from lockstep.server.media_uploads import UploadLedger, UploadsInFlight
from lockstep.server.services import Limits
from lockstep.server.settings import SHARED_STATE_SCHEMES, StorageLimits


@dataclass(frozen=True, slots=True)
class Backends:
    hub: Hub = field(default_factory=Hub)
    links: LinkStore = field(default_factory=MemoryLinkStore)
    limits: Limits = field(default_factory=Limits.in_memory)
    media_tokens: MediaTokens = field(default_factory=MemoryMediaTokens)
    media_uploads: UploadLedger = field(default_factory=UploadsInFlight)


def open_backends(
    url: str | None, prefix: str = "lockstep", storage: StorageLimits | None = None
) -> Backends:
    """The backends ``url`` names (checked by Settings; nothing connects until the app starts)."""
    scheme = urllib.parse.urlsplit(url).scheme if url else "memory"
    if scheme not in SHARED_STATE_SCHEMES:
        raise ValueError(f"no shared-state backend for {scheme}://")
    if url is None or scheme == "memory":
        return Backends(limits=Limits.in_memory(storage))
    from lockstep.server.redis_backend import (
        RedisLinkStore,
        RedisMediaTokens,
        RedisRateLimiter,
        RedisUploads,
        connect,
    )
    from lockstep.server.redis_bus import RedisBus

    client = connect(url)
    return Backends(
        hub=Hub(RedisBus(url, client, prefix)),
        links=RedisLinkStore(client, prefix),
        limits=Limits.build(
            lambda name, rate, keep_ms: RedisRateLimiter(client, prefix, name, rate, keep_ms), storage
        ),
        media_tokens=RedisMediaTokens(client, prefix),
        media_uploads=RedisUploads(client, prefix),
    )
