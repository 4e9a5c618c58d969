#!/usr/bin/env python3
"""Regenerates vectors/ed25519-strict.json: Ed25519 keys and signatures a strict verifier must refuse.

Every case names its source. ``lax`` says what ``cryptography``'s (OpenSSL's) plain verify answered when
the file was made: the reason the strict checks exist (Chromium's WebCrypto answers the same for the
small-order cases). Python (lockstep.link.ed25519) and the browser (web/src/crypto/ed25519.ts) both run
every case and must give ``strict``.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lockstep.link.ed25519 import L, P

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

# RFC 8032 §7.1, TEST 1 and TEST 2.
RFC_TEST_1 = (
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "",
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
)
RFC_TEST_2 = (
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    "72",
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
)
Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
SIGN = 1 << 255


def le(value: int) -> str:
    return value.to_bytes(32, "little").hex()


# Every encoding of a small-order point ("Taming the many EdDSAs", Chalkias et al. 2020, Table 5, and
# libsodium's blocklist): y in {0, 1, p-1, y8, p-y8} with either sign bit, plus y+p where y+p < 2^255.
SMALL_ORDER = [
    ("identity (order 1)", le(1)),
    ("order 2 (y = p-1)", le(P - 1)),
    ("order 4 (y = 0)", le(0)),
    ("order 4 (y = 0, sign bit)", le(SIGN)),
    ("order 8 (y = y8)", le(Y8)),
    ("order 8 (y = y8, sign bit)", le(Y8 | SIGN)),
    ("order 8 (y = p-y8)", le(P - Y8)),
    ("order 8 (y = p-y8, sign bit)", le((P - Y8) | SIGN)),
]
NON_CANONICAL = [
    ("identity, sign bit set (x = 0 with x_0 = 1, RFC 8032 §5.1.3 step 4)", le(1 | SIGN)),
    ("order 2, sign bit set", le((P - 1) | SIGN)),
    ("y = p (= 0, order 4)", le(P)),
    ("y = p+1 (= 1, the identity)", le(P + 1)),
    ("y = p+1, sign bit set", le((P + 1) | SIGN)),
]


def lax(public_key: str, message: str, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            bytes.fromhex(signature), bytes.fromhex(message)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def case(
    name: str, source: str, public_key: str, message: str, signature: str, strict: bool
) -> dict[str, object]:
    return {
        "name": name,
        "source": source,
        "public_key": public_key,
        "message": message,
        "signature": signature,
        "strict": strict,
        "lax": lax(public_key, message, signature),
    }


def main() -> None:
    identity_sig = le(1) + le(0)  # R = the neutral point, S = 0
    message = b"I will pay you on Friday".hex()
    cases = [
        case("RFC 8032 TEST 1", "RFC 8032 §7.1", *RFC_TEST_1, strict=True),
        case("RFC 8032 TEST 2", "RFC 8032 §7.1", *RFC_TEST_2, strict=True),
        case(
            "key 01 00…00 with an identity-R, S = 0 signature (verifies for every message)",
            "issue 14 B.15; RFC 8032 §5.1.7 equation with A and R of order 1",
            le(1),
            message,
            identity_sig,
            strict=False,
        ),
    ]
    for name, encoding in SMALL_ORDER[1:]:
        cases.append(
            case(f"small-order key: {name}", "small-order points", encoding, message, identity_sig, False)
        )
    for name, encoding in NON_CANONICAL:
        cases.append(
            case(f"non-canonical key: {name}", "RFC 8032 §5.1.3", encoding, message, identity_sig, False)
        )
    public, msg, signature = RFC_TEST_1
    r, s = signature[:64], int.from_bytes(bytes.fromhex(signature[64:]), "little")
    cases.append(case("S + L (S not below L)", "RFC 8032 §5.1.7 step 1", public, msg, r + le(s + L), False))
    cases.append(case("S = L", "RFC 8032 §5.1.7 step 1", public, msg, r + le(L), False))
    for name, encoding in SMALL_ORDER[:2] + NON_CANONICAL[2:4]:
        cases.append(
            case(f"R {name}", "small-order or non-canonical R", public, msg, encoding + le(s), False)
        )
    # A well-formed key of a real key pair, with a signature over another message: fails the equation.
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    key_hex = key.public_key().public_bytes_raw().hex()
    cases.append(
        case(
            "a real key, signature of another message",
            "RFC 8032 §5.1.7",
            key_hex,
            message,
            key.sign(b"x").hex(),
            False,
        )
    )
    cases.append(
        case(
            "a real key, its own signature",
            "RFC 8032 §5.1.6",
            key_hex,
            message,
            key.sign(bytes.fromhex(message)).hex(),
            True,
        )
    )
    document = {
        "description": "Ed25519 public keys and signatures a strict verifier must refuse (small-order or "
        "non-canonical A or R, S not below L) and two it must accept. 'lax' is what cryptography's plain "
        "verify answered when the file was made. Made by scripts/generate-ed25519-vectors.py.",
        "cases": cases,
    }
    (VECTORS / "ed25519-strict.json").write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
