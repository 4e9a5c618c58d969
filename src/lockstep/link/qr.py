"""The QR code's payload and text (docs/protocol/linking.md §3).

The text is ``{origin}/link#{b64u(payload)}``: a URL, so a phone camera app that opens it lands on a page
that explains linking only works by scanning in the Lockstep app, and never on a page that acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from lockstep.link.ed25519 import point_problem
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.errors import (
    EncodingError,
    ForeignOrigin,
    MalformedCode,
    NotALinkCode,
    UnsupportedVersion,
)

VERSION = 1
KEY_SIZE = 32
PAYLOAD_SIZE = 1 + 4 * KEY_SIZE
MAX_TEXT_LENGTH = 512
LINK_PATH = "/link"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class LinkCode:
    """What a companion shows and a primary scans (§3.1)."""

    origin: str
    ref: bytes
    ephemeral_key: bytes
    """The companion's ephemeral X25519 public key: the HPKE recipient key."""
    device_key: bytes
    """The companion's long-term Ed25519 device public key."""
    link_secret: bytes
    """32 random bytes; the HPKE PSK. Never sent to the server."""

    def __post_init__(self) -> None:
        for name in ("ref", "ephemeral_key", "device_key", "link_secret"):
            if len(getattr(self, name)) != KEY_SIZE:
                raise ValueError(f"{name} must be {KEY_SIZE} bytes")

    def payload(self) -> bytes:
        return bytes([VERSION]) + self.ref + self.ephemeral_key + self.device_key + self.link_secret

    def to_text(self) -> str:
        return f"{normalise_origin(self.origin)}{LINK_PATH}#{b64u_encode(self.payload())}"


def normalise_origin(url: str) -> str:
    """``scheme://host[:port]``, lowercase, default port omitted (RFC 6454 §6.1, §2)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise NotALinkCode from error
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise NotALinkCode
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def decode_text(text: str, *, own_origin: str | None = None) -> LinkCode:
    """Decode scanned text, in the order of §3.3. Raises only :class:`LinkCodeError` subclasses.

    With ``own_origin`` the code must name that server, else :class:`ForeignOrigin` — checked before
    the payload, so a damaged or newer code from another server still gets the phishing warning.
    """
    if len(text) > MAX_TEXT_LENGTH:
        raise MalformedCode(f"it is {len(text)} characters long, at most {MAX_TEXT_LENGTH} are allowed")
    origin = normalise_origin(text)
    parts = urlsplit(text.strip())
    if parts.path != LINK_PATH or parts.query or not parts.fragment:
        raise NotALinkCode
    if own_origin is not None and origin != normalise_origin(own_origin):
        raise ForeignOrigin(origin, normalise_origin(own_origin))
    try:
        payload = b64u_decode(parts.fragment, what="code payload")
    except EncodingError as error:
        raise MalformedCode("it is not valid base64url") from error
    return decode_payload(origin, payload)


def decode_payload(origin: str, payload: bytes) -> LinkCode:
    """The §3.1 payload (from a QR code, or sealed under a typed code's PAKE key, §10) for ``origin``."""
    if not payload:
        raise MalformedCode("it is empty")
    if payload[0] != VERSION:
        raise UnsupportedVersion(payload[0])
    if len(payload) != PAYLOAD_SIZE:
        raise MalformedCode(f"it holds {len(payload)} bytes, not {PAYLOAD_SIZE}")
    fields = [payload[1 + i * KEY_SIZE : 1 + (i + 1) * KEY_SIZE] for i in range(4)]
    code = LinkCode(origin, *fields)
    if point_problem(code.device_key) is not None:  # never certify a key anyone can sign for
        raise MalformedCode("its device key is not a usable Ed25519 key")
    return code
