"""Signed envelopes and device lists (linking.md §4) against the shared vectors, plus list rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.link.devices import MAX_COMPANIONS, DeviceEntry, DeviceList, Role
from lockstep.link.encoding import key_id
from lockstep.link.envelope import Context, Envelope, sign, verify
from lockstep.link.errors import DeviceListError, SignatureError

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "link-signatures.json").read_text())


@pytest.mark.parametrize("case", VECTORS["signatures"], ids=lambda c: c["name"])
def test_signatures_match_the_vectors(case: dict[str, str]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(case["private_key"]))
    context, message = Context(case["context"]), bytes.fromhex(case["message"])
    assert sign(key, context, message).hex() == case["signature"]
    verify(bytes.fromhex(case["public_key"]), context, message, bytes.fromhex(case["signature"]))


@pytest.mark.parametrize("case", VECTORS["signatures"], ids=lambda c: c["name"])
def test_a_signature_does_not_verify_in_another_context(case: dict[str, str]) -> None:
    other = next(c for c in Context if c.value != case["context"])
    with pytest.raises(SignatureError):
        verify(
            bytes.fromhex(case["public_key"]),
            other,
            bytes.fromhex(case["message"]),
            bytes.fromhex(case["signature"]),
        )


ACCOUNT_KEY = bytes.fromhex(VECTORS["device_lists"]["account_key"])


@pytest.mark.parametrize("case", VECTORS["device_lists"]["valid"], ids=lambda c: c["name"])
def test_valid_device_lists_verify(case: dict[str, Any]) -> None:
    devices = DeviceList.verify(Envelope.from_json(case["envelope"]), ACCOUNT_KEY)
    assert devices.version == case["version"]
    assert [d.device_id for d in devices.devices] == case["device_ids"]


@pytest.mark.parametrize("case", VECTORS["device_lists"]["invalid"], ids=lambda c: c["name"])
def test_invalid_device_lists_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(DeviceListError):
        DeviceList.verify(Envelope.from_json(case["envelope"]), ACCOUNT_KEY)


def _list_with(companions: int) -> tuple[Ed25519PrivateKey, DeviceList]:
    account = Ed25519PrivateKey.generate()
    entries = [
        DeviceEntry.new(Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.PRIMARY, "P", 1)
    ]
    entries += [
        DeviceEntry.new(
            Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.COMPANION, f"C{i}", 1
        )
        for i in range(companions)
    ]
    return account, DeviceList(key_id(account.public_key().public_bytes_raw()), 1, 1, tuple(entries))


def test_a_fifth_companion_is_refused_with_a_clear_message() -> None:
    _, devices = _list_with(MAX_COMPANIONS)
    fifth = DeviceEntry.new(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.COMPANION, "5th", 2
    )
    with pytest.raises(DeviceListError, match="already has 4 linked devices"):
        devices.with_companion(fifth, 2)


def test_unlink_and_rename_make_the_next_version() -> None:
    account, devices = _list_with(2)
    companion = devices.companions[0]
    smaller = devices.without(companion.device_id, 5)
    assert smaller.version == 2 and smaller.find(companion.device_id) is None
    renamed = smaller.renamed(smaller.companions[0].device_id, "Laptop", 6)
    assert renamed.version == 3 and renamed.companions[0].name == "Laptop"
    assert DeviceList.verify(renamed.sign(account), account.public_key().public_bytes_raw()) == renamed
    with pytest.raises(DeviceListError):
        devices.without(devices.primary.device_id, 7)


def test_a_list_signed_by_another_key_is_refused() -> None:
    _account, devices = _list_with(1)
    with pytest.raises(DeviceListError):
        devices.sign(Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"payload": "x"},
        {"payload": "AA", "signature": "short"},
        {"payload": "!!", "signature": "A" * 86},
    ],
)
def test_malformed_envelopes_raise_signature_error(value: object) -> None:
    with pytest.raises(SignatureError):
        Envelope.from_json(value)
