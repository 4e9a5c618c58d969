"""Time-limited TURN credentials in coturn's shared-secret scheme (``use-auth-secret``).

coturn's "TURN REST API" (draft-uberti-behave-turn-rest-00 §2.2, coturn's README.turnserver,
``--use-auth-secret``): the server and coturn share a secret; a credential is

- ``username`` = ``"<expiry, Unix seconds>:<user>"``, and
- ``password`` = base64(HMAC-SHA1(secret, username)),

used as the RFC 8489 §9.2 long-term credential. coturn recomputes the password from the username and
refuses it once the expiry has passed, so nothing is stored and a leaked credential dies on its own.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac

TURN_URL = re.compile(r"turns?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?")
CREDENTIAL_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class TurnCredential:
    """What a device puts in its ``RTCIceServer``: ``urls`` with ``username`` and ``credential``."""

    urls: tuple[str, ...]
    username: str
    credential: str
    expires_at: int
    """Unix seconds."""

    def to_json(self) -> dict[str, Any]:
        return {"urls": list(self.urls), "username": self.username, "credential": self.credential}


def check_turn_url(url: str) -> str:
    """``turn:host[:port][?transport=udp|tcp]`` (RFC 7065 §3.1), or ``turns:`` for TLS."""
    if not TURN_URL.fullmatch(url):
        raise ValueError(f"not a TURN URL (turn:host:port): {url!r}")
    return url


def stun_url(turn_url: str) -> str:
    """The same host and port as a STUN URL (RFC 7064): coturn answers STUN Binding requests there too."""
    return "stun:" + turn_url.split(":", 1)[1].split("?", 1)[0]


def password_for(secret: bytes, username: str) -> str:
    mac = hmac.HMAC(secret, hashes.SHA1())  # noqa: S303 - coturn's scheme is HMAC-SHA1 (not plain SHA-1)
    mac.update(username.encode())
    return base64.b64encode(mac.finalize()).decode()


def credential(
    secret: bytes, turn_urls: tuple[str, ...], user: str, now: int, lifetime: int = CREDENTIAL_SECONDS
) -> TurnCredential:
    """A credential for ``user`` (a device id) valid until ``now + lifetime`` (Unix seconds)."""
    expires_at = now + lifetime
    username = f"{expires_at}:{user}"
    return TurnCredential(turn_urls, username, password_for(secret, username), expires_at)


@dataclass(frozen=True, slots=True)
class TurnServer:
    """``lockstep serve --turn-url URL --turn-secret FILE``: one coturn and the secret it shares with us."""

    url: str
    secret: bytes

    def ice_servers(self, user: str, now: int) -> tuple[list[dict[str, Any]], int]:
        """WebRTC ``iceServers`` for ``user`` (STUN and TURN at the same coturn) and their expiry,
        both in Unix seconds."""
        turn = credential(self.secret, (self.url,), user, now)
        return [{"urls": [stun_url(self.url)]}, turn.to_json()], turn.expires_at
