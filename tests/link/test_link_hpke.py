"""RFC 9180 Appendix A.1 vectors, and a cross-check of base mode against cryptography's own HPKE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from lockstep.link import hpke

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "hpke-rfc9180.json").read_text())["cases"]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["source"])
def test_derive_key_pair_matches_the_rfc(case: dict[str, Any]) -> None:
    assert hpke.derive_key_pair(h(case["ikmE"])).private_bytes_raw() == h(case["skEm"])
    assert hpke.derive_key_pair(h(case["ikmR"])).public_key().public_bytes_raw() == h(case["pkRm"])


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["source"])
def test_sender_matches_the_rfc(case: dict[str, Any]) -> None:
    mode = hpke.Mode(case["mode"])
    enc, context = hpke.setup_sender(
        mode,
        X25519PublicKey.from_public_bytes(h(case["pkRm"])),
        h(case["info"]),
        h(case.get("psk", "")),
        h(case.get("psk_id", "")),
        ephemeral_key=X25519PrivateKey.from_private_bytes(h(case["skEm"])),
    )
    assert enc == h(case["enc"])
    shared_secret, _ = hpke.encap(
        X25519PublicKey.from_public_bytes(h(case["pkRm"])),
        X25519PrivateKey.from_private_bytes(h(case["skEm"])),
    )
    assert shared_secret == h(case["shared_secret"])
    schedule = hpke.key_schedule(
        mode, shared_secret, h(case["info"]), h(case.get("psk", "")), h(case.get("psk_id", ""))
    )
    assert schedule.key_schedule_context == h(case["key_schedule_context"])
    assert schedule.secret == h(case["secret"])
    assert schedule.key == h(case["key"])
    assert schedule.base_nonce == h(case["base_nonce"])
    assert schedule.exporter_secret == h(case["exporter_secret"])
    for encryption in case["encryptions"]:
        assert context.seal(h(encryption["pt"]), h(encryption["aad"])) == h(encryption["ct"])
    kept = [getattr(context, name) for name in type(context).__slots__]
    assert not any(isinstance(value, hpke.KeySchedule) for value in kept)
    for secret in (shared_secret, schedule.secret, schedule.key):
        assert secret not in kept, "a context keeps only the AEAD, base nonce and exporter secret"


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["source"])
def test_recipient_opens_the_rfc_ciphertexts(case: dict[str, Any]) -> None:
    context = hpke.setup_recipient(
        hpke.Mode(case["mode"]),
        h(case["enc"]),
        X25519PrivateKey.from_private_bytes(h(case["skRm"])),
        h(case["info"]),
        h(case.get("psk", "")),
        h(case.get("psk_id", "")),
    )
    for encryption in case["encryptions"]:
        assert context.open(h(encryption["ct"]), h(encryption["aad"])) == h(encryption["pt"])


def test_psk_mode_refuses_a_wrong_secret_or_psk_id() -> None:
    recipient = X25519PrivateKey.generate()
    psk, psk_id = b"s" * 32, b"ref"
    enc, ciphertext = hpke.seal_psk(recipient.public_key(), b"info", b"aad", b"grant", psk, psk_id)
    assert hpke.open_psk(enc, recipient, b"info", b"aad", ciphertext, psk, psk_id) == b"grant"
    for wrong in [(b"t" * 32, psk_id), (psk, b"other")]:
        with pytest.raises(hpke.HpkeError):
            hpke.open_psk(enc, recipient, b"info", b"aad", ciphertext, *wrong)
    with pytest.raises(hpke.HpkeError):
        hpke.open_psk(enc, recipient, b"other info", b"aad", ciphertext, psk, psk_id)


def test_psk_rules_of_section_5_1() -> None:
    with pytest.raises(hpke.HpkeError):
        hpke.key_schedule(hpke.Mode.PSK, b"x" * 32, b"", b"", b"")
    with pytest.raises(hpke.HpkeError):
        hpke.key_schedule(hpke.Mode.PSK, b"x" * 32, b"", b"short", b"id")
    with pytest.raises(hpke.HpkeError):
        hpke.key_schedule(hpke.Mode.BASE, b"x" * 32, b"", b"p" * 32, b"id")


def test_base_mode_interoperates_with_cryptography() -> None:
    """cryptography's single-shot HPKE sends enc || ciphertext; ours must open it, and vice versa."""
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
    recipient = X25519PrivateKey.generate()
    theirs = suite.encrypt(b"hello", recipient.public_key(), info=b"ctx")
    ours = hpke.setup_recipient(hpke.Mode.BASE, theirs[:32], recipient, b"ctx").open(theirs[32:])
    assert ours == b"hello"
    enc, context = hpke.setup_sender(hpke.Mode.BASE, recipient.public_key(), b"ctx")
    assert suite.decrypt(enc + context.seal(b"back"), recipient, info=b"ctx") == b"back"
