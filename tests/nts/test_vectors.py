"""Vectors: NTS-KE requests captured from chrony and NTPsec (tests/nts/capture_vectors.py), and
the AES-SIV example of RFC 5297 that fixes the order NTS relies on (associated data, then nonce)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from lockstep.ntp.nts import fields
from lockstep.ntp.nts.cookies import CookieKeys
from lockstep.ntp.nts.ke import KeAccepted, KeServerSession
from lockstep.ntp.nts.records import AeadAlgorithm, RecordType, decode_records, encode_records

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("vector", load("ke_records.json"), ids=lambda v: v["name"])
def test_captured_ke_requests_round_trip_and_are_accepted(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    records = decode_records(data)
    assert encode_records(records) == data
    assert [r.record_type for r in records] == [
        RecordType.NEXT_PROTOCOL,
        RecordType.AEAD_ALGORITHM,
        RecordType.END_OF_MESSAGE,
    ]
    assert KeServerSession(CookieKeys(b"v" * 32)).receive_data(data) == KeAccepted(
        AeadAlgorithm.AES_SIV_CMAC_256
    )


@pytest.mark.parametrize("vector", load("aes_siv.json"), ids=lambda v: v["name"])
def test_aes_siv_vector(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key"])
    associated = [bytes.fromhex(a) for a in vector["associated_data"]]
    nonce = bytes.fromhex(vector["nonce"])
    plaintext = bytes.fromhex(vector["plaintext"])
    output = bytes.fromhex(vector["output"])
    assert AESSIV(key).encrypt(plaintext, [*associated, nonce]) == output
    # Our authenticator puts the one associated-data string first and the nonce last, likewise.
    sealed = fields.seal(key, nonce, associated[0], plaintext)
    assert fields.open_sealed(key, sealed.value, associated[0]) == plaintext
    assert (
        AESSIV(key).decrypt(sealed.value[4 + 16 :][: 16 + len(plaintext)], [associated[0], nonce])
        == plaintext
    )
