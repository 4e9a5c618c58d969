"""Byte encodings used on the wire (docs/protocol/linking.md §2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from lockstep.link.errors import EncodingError

_B64U = re.compile(r"[A-Za-z0-9_-]*")


def b64u_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str, *, length: int | None = None, what: str = "value") -> bytes:
    """Strict base64url decoding: no padding, only the URL-safe alphabet, optional exact length."""
    if not isinstance(text, str) or not _B64U.fullmatch(text) or len(text) % 4 == 1:
        raise EncodingError(f"{what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise EncodingError(f"{what} is not base64url") from error
    if b64u_encode(data) != text:  # non-canonical trailing bits
        raise EncodingError(f"{what} is not canonical base64url")
    if length is not None and len(data) != length:
        raise EncodingError(f"{what} must be {length} bytes, got {len(data)}")
    return data


def key_id(public_key: bytes) -> str:
    """``b64u(SHA-256(key)[0:16])``: the id of a device or account from its Ed25519 key (§2)."""
    return b64u_encode(hashlib.sha256(public_key).digest()[:16])


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON for payloads we sign or encrypt (never re-serialised by verifiers)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_json_object(data: bytes, *, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise EncodingError(f"{what} is not UTF-8 JSON") from error
    if not isinstance(value, dict):
        raise EncodingError(f"{what} must be a JSON object")
    return value
