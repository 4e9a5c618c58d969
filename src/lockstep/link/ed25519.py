"""Strict Ed25519 verification (RFC 8032 §5.1.7 plus the small-order checks of ed25519-dalek's
``verify_strict``, which vodozemac uses), on top of ``cryptography``'s verifier.

OpenSSL (behind ``cryptography``) and Chromium's WebCrypto follow RFC 8032's cofactorless equation but
accept *small-order* public keys: with ``A = 01 00…00`` (the neutral point) and a signature
``R = 01 00…00, S = 0``, ``[S]B = R + [k]A`` holds for every message, so anyone can "sign" anything for
that key. Before any key or signature from outside is used, this module refuses:

- a public key ``A`` or signature point ``R`` whose encoding is not canonical (``y ≥ p``; RFC 8032
  §5.1.3 decoding, and the "x = 0 with sign bit 1" encodings, which are all small-order);
- ``A`` or ``R`` of small order: the eight points of order 1, 2, 4 and 8, recognised by their ``y``
  (0, 1, p-1 and ±y₈, where y₈ is the y of the order-8 points; every encoding of them, sign bit or not);
- ``S ≥ L`` (RFC 8032 §5.1.7 step 1: "If any of the decodings fail (including S being out of range)").

The same checks run in the browser (``web/src/crypto/ed25519.ts``); both read vectors/ed25519-strict.json.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lockstep.link.errors import SignatureError

P = 2**255 - 19
"""The field prime (RFC 8032 §5.1)."""
L = 2**252 + 27742317777372353535851937790883648493
"""The order of the base point (RFC 8032 §5.1)."""
_Y_ORDER_8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
SMALL_ORDER_Y = frozenset({0, 1, P - 1, _Y_ORDER_8, P - _Y_ORDER_8})
"""The y coordinates of the eight small-order points (orders 1, 2, 4, 8)."""
KEY_SIZE = 32
SIGNATURE_SIZE = 64


class WeakKeyError(SignatureError):
    """An Ed25519 public key (or signature point) that is small-order or not canonically encoded."""


def point_problem(encoded: bytes) -> str | None:
    """Why a 32-byte point encoding is refused (non-canonical or small-order), or None if it is not."""
    if len(encoded) != KEY_SIZE:
        return f"is not {KEY_SIZE} bytes"
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    if y >= P:
        return "is not canonically encoded (y ≥ p)"
    if y in SMALL_ORDER_Y:
        return "is a small-order point"
    return None


def check_public_key(key: bytes, what: str = "Ed25519 public key") -> bytes:
    """Return ``key`` if it may be used as an Ed25519 public key, else raise :class:`WeakKeyError`."""
    problem = point_problem(key)
    if problem is not None:
        raise WeakKeyError(f"the {what} {problem}")
    return key


def signature_problem(signature: bytes) -> str | None:
    """Why a signature is refused before the equation is even checked, or None."""
    if len(signature) != SIGNATURE_SIZE:
        return f"is not {SIGNATURE_SIZE} bytes"
    problem = point_problem(signature[:32])
    if problem is not None:
        return f"point R {problem}"
    if int.from_bytes(signature[32:], "little") >= L:
        return "scalar S is not below L (RFC 8032 §5.1.7)"
    return None


def verify_strict(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is a strictly valid signature of ``message``."""
    check_public_key(public_key)
    problem = signature_problem(signature)
    if problem is not None:
        raise SignatureError(f"the signature's {problem}")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as error:
        raise SignatureError("the signature does not verify") from error
