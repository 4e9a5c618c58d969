"""Domain-separated Ed25519 signatures over exact bytes (docs/protocol/linking.md §4.1).

A signed object travels as ``{"payload": b64u(json bytes), "signature": b64u(sig)}``. Verifiers check the
signature over the very bytes they then parse, so no canonical JSON is ever needed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lockstep.link.ed25519 import verify_strict
from lockstep.link.encoding import b64u_decode, b64u_encode, json_bytes, parse_json_object
from lockstep.link.errors import EncodingError, SignatureError

SIGNATURE_SIZE = 64
MAX_PAYLOAD_SIZE = 16384


class Context(enum.StrEnum):
    """What a signature is for; signed as ``context || 0x00 || message``."""

    DEVICE_LIST = "lockstep/device-list/v1"
    DEVICE_CERTIFICATE = "lockstep/device-certificate/v1"
    AUTH = "lockstep/auth/v1"
    DEVICE_KEYS = "lockstep/device-keys/v1"
    """A device's end-to-end key bundle, signed by its device key (docs/protocol/messaging.md §3)."""


def _signed_message(context: Context, message: bytes) -> bytes:
    return context.value.encode("ascii") + b"\x00" + message


def sign(key: Ed25519PrivateKey, context: Context, message: bytes) -> bytes:
    return key.sign(_signed_message(context, message))


def verify(key: Ed25519PublicKey | bytes, context: Context, message: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``key``'s over ``message`` in ``context``,
    strictly: small-order or non-canonical keys and signatures are refused (:mod:`lockstep.link.ed25519`)."""
    raw = key.public_bytes_raw() if isinstance(key, Ed25519PublicKey) else key
    try:
        verify_strict(raw, _signed_message(context, message), signature)
    except SignatureError as error:
        raise SignatureError(f"bad signature ({context.value}): {error}") from error


def auth_message(challenge: bytes, origin: str) -> bytes:
    """What a device signs to authenticate a WebSocket (§7.2): ``challenge || UTF-8(origin)``."""
    return challenge + origin.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed JSON payload, kept as the exact bytes that were signed."""

    payload: bytes
    signature: bytes

    @classmethod
    def seal(cls, key: Ed25519PrivateKey, context: Context, value: dict[str, Any]) -> Envelope:
        payload = json_bytes(value)
        return cls(payload, sign(key, context, payload))

    def open(self, key: Ed25519PublicKey | bytes, context: Context) -> dict[str, Any]:
        """Verify, then parse. Nothing of the payload is trusted before the signature checks out."""
        verify(key, context, self.payload, self.signature)
        try:
            return parse_json_object(self.payload, what="signed payload")
        except EncodingError as error:
            raise SignatureError(str(error)) from error

    def unverified(self) -> dict[str, Any]:
        """The payload parsed without verification: only to find which key to verify it with."""
        try:
            return parse_json_object(self.payload, what="signed payload")
        except EncodingError as error:
            raise SignatureError(str(error)) from error

    def to_json(self) -> dict[str, str]:
        return {"payload": b64u_encode(self.payload), "signature": b64u_encode(self.signature)}

    @classmethod
    def from_json(cls, value: object) -> Envelope:
        if not isinstance(value, dict) or set(value) != {"payload", "signature"}:
            raise SignatureError("an envelope is an object with exactly 'payload' and 'signature'")
        try:
            payload = b64u_decode(value["payload"], what="envelope payload")
            signature = b64u_decode(value["signature"], length=SIGNATURE_SIZE, what="signature")
        except EncodingError as error:
            raise SignatureError(str(error)) from error
        if len(payload) > MAX_PAYLOAD_SIZE:
            raise SignatureError(f"envelope payload over {MAX_PAYLOAD_SIZE} bytes")
        return cls(payload, signature)
