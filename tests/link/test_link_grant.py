"""The link grant (linking.md §5): the shared vector opens; every tampering or mix-up is refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import key_id
from lockstep.link.errors import GrantError
from lockstep.link.grant import AccountInfo, SealedGrant, approve, open_grant
from lockstep.link.qr import decode_text

VECTOR = json.loads((Path(__file__).parents[2] / "vectors" / "link-grant.json").read_text())
CODE = decode_text(VECTOR["code_text"])
EPHEMERAL = X25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR["ephemeral_private_key"]))


def test_the_vector_grant_opens_and_checks_out() -> None:
    valid = VECTOR["valid"]
    grant = open_grant(
        CODE, EPHEMERAL, SealedGrant(bytes.fromhex(valid["enc"]), bytes.fromhex(valid["ciphertext"]))
    )
    assert grant.account.account_id == valid["account_id"]
    assert grant.account.handle == valid["handle"]
    assert grant.account.display_name == valid["display_name"]
    assert grant.device_name == valid["device_name"]
    assert grant.devices.version == valid["device_list_version"]
    assert grant.devices.find(valid["device_id"]) is not None


@pytest.mark.parametrize("case", VECTOR["invalid"], ids=lambda c: c["name"])
def test_tampered_grants_are_refused(case: dict[str, str]) -> None:
    with pytest.raises(GrantError):
        open_grant(
            CODE, EPHEMERAL, SealedGrant(bytes.fromhex(case["enc"]), bytes.fromhex(case["ciphertext"]))
        )


def test_a_grant_needs_the_qr_secret() -> None:
    valid = VECTOR["valid"]
    sealed = SealedGrant(bytes.fromhex(valid["enc"]), bytes.fromhex(valid["ciphertext"]))
    with pytest.raises(GrantError):
        open_grant(replace(CODE, link_secret=bytes.fromhex(VECTOR["wrong_secret"])), EPHEMERAL, sealed)
    with pytest.raises(GrantError):
        open_grant(replace(CODE, ref=bytes(32)), EPHEMERAL, sealed)


def _primary() -> tuple[Ed25519PrivateKey, AccountInfo, DeviceList]:
    account = Ed25519PrivateKey.generate()
    public = account.public_key().public_bytes_raw()
    info = AccountInfo(key_id(public), "bob", "Bob", public)
    primary = DeviceEntry.new(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.PRIMARY, "P", 1
    )
    return account, info, DeviceList(info.account_id, 1, 1, (primary,))


def test_a_grant_from_a_key_other_than_the_accounts_is_refused() -> None:
    account, info, devices = _primary()
    mallory = Ed25519PrivateKey.generate()
    forged_info = replace(info, account_key=mallory.public_key().public_bytes_raw())
    approval = approve(CODE, account, info, devices, "Laptop", 2)
    assert open_grant(CODE, EPHEMERAL, approval.sealed).account == info
    with pytest.raises(GrantError):  # the account id no longer derives from the key
        open_grant(CODE, EPHEMERAL, approve(CODE, account, forged_info, devices, "Laptop", 2).sealed)


def test_a_grant_for_another_companion_key_is_refused() -> None:
    account, info, devices = _primary()
    other_device = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    approval = approve(replace(CODE, device_key=other_device), account, info, devices, "Laptop", 2)
    with pytest.raises(GrantError, match="another device"):
        open_grant(CODE, EPHEMERAL, approval.sealed)
