"""Media HTTP bearer tokens (messaging.md §7.4): issued over the WebSocket API, checked by
``POST /media`` and ``GET /media/{id}`` — possibly on another instance, so with ``--redis`` they live
in Redis (``redis_state.RedisMediaTokens``), else in this process."""

from __future__ import annotations

import secrets
from typing import Protocol

from lockstep.link.encoding import b64u_encode


def new_token() -> str:
    return b64u_encode(secrets.token_bytes(32))


class MediaTokens(Protocol):
    async def issue(self, device_id: str, now: int, lifetime_ms: int) -> str:
        """A new token for ``device_id``, valid until ``now + lifetime_ms``."""
        ...

    async def device(self, token: str, now: int) -> str | None:
        """The device a live token belongs to."""
        ...


class MemoryMediaTokens:
    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, int]] = {}

    async def issue(self, device_id: str, now: int, lifetime_ms: int) -> str:
        for stale in [t for t, (_, expires) in self._tokens.items() if expires <= now]:
            del self._tokens[stale]
        token = new_token()
        self._tokens[token] = (device_id, now + lifetime_ms)
        return token

    async def device(self, token: str, now: int) -> str | None:
        entry = self._tokens.get(token)
        return entry[0] if entry is not None and entry[1] > now else None
