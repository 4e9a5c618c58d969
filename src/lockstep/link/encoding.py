"""Byte encodings used on the wire (docs/protocol/linking.md §2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import sys
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
    """Compact UTF-8 JSON for payloads we sign or encrypt (never re-serialised by verifiers).

    Raises ValueError for NaN or an infinity: they are not JSON (RFC 8259 §6), and a browser could not
    parse what we signed.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def parse_json(text: str | bytes) -> tuple[Any, str | None]:
    """``json.loads`` that also reports the first number JSON cannot carry, which it reads as None.

    RFC 8259 §6 has no NaN or infinities, and ``1e999`` or an integer past the double range has no
    finite value in a browser (``JSON.parse`` gives Infinity). Python would read them as ``nan``/``inf``
    (or fail with a bare ValueError past 4300 digits) and later write ``Infinity``, which is not JSON.
    Callers refuse the value when the second item is set; the first still lets them name the request.
    Raises ``json.JSONDecodeError``, ``UnicodeDecodeError`` or ``RecursionError`` for text that does not
    parse.
    """
    bad: list[str] = []

    def constant(name: str) -> None:
        bad.append(name)

    def floating(token: str) -> float | None:
        value = float(token)
        if math.isfinite(value):
            return value
        bad.append(token)
        return None

    def integer(token: str) -> int | None:
        try:
            value = int(token)
        except ValueError:  # over Python's 4300-digit limit for int()
            value = None
        if value is not None and abs(value) <= sys.float_info.max:
            return value
        bad.append(token if len(token) <= 24 else f"{token[:12]}... ({len(token)} digits)")
        return None

    value = json.loads(text, parse_constant=constant, parse_float=floating, parse_int=integer)
    return value, (bad[0] if bad else None)


def parse_json_object(data: bytes, *, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object of finite numbers."""
    try:
        value, bad_number = parse_json(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise EncodingError(f"{what} is not UTF-8 JSON") from error
    if bad_number is not None:
        raise EncodingError(f"{what} has a number JSON cannot carry: {bad_number}")
    if not isinstance(value, dict):
        raise EncodingError(f"{what} must be a JSON object")
    return value
