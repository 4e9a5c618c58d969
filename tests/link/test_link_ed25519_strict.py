"""Strict Ed25519 (lockstep.link.ed25519) on vectors/ed25519-strict.json, and everywhere a key or a
signature arrives from outside: envelopes, device lists, certificates, accounts, QR codes, one-time keys,
key bundles and Megolm session keys. The browser runs the same vectors (tests/web/test_web_ed25519_strict.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import vodozemac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.e2e.errors import DecryptionError, KeyBundleError
from lockstep.e2e.keys import DeviceKeys, OneTimeKey
from lockstep.e2e.megolm import GroupSessions
from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.ed25519 import WeakKeyError, check_public_key, verify_strict
from lockstep.link.encoding import b64u_encode, json_bytes, key_id
from lockstep.link.envelope import Context, Envelope, verify
from lockstep.link.errors import DeviceListError, GrantError, MalformedCode, SignatureError
from lockstep.link.grant import AccountInfo
from lockstep.link.qr import LinkCode, decode_text

CASES = json.loads((Path(__file__).parents[2] / "vectors" / "ed25519-strict.json").read_text())["cases"]
WEAK_KEY = bytes([1]) + bytes(31)  # the neutral point
FORGED = bytes([1]) + bytes(63)  # R = the neutral point, S = 0: "verifies" under WEAK_KEY for any message


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_vectors(case: dict[str, Any]) -> None:
    key, message, signature = (bytes.fromhex(case[k]) for k in ("public_key", "message", "signature"))
    if case["strict"]:
        verify_strict(key, message, signature)
    else:
        with pytest.raises(SignatureError):
            verify_strict(key, message, signature)


@pytest.mark.parametrize("case", [c for c in CASES if "key:" in c["name"]], ids=lambda c: c["name"])
def test_weak_keys_are_refused_on_arrival(case: dict[str, Any]) -> None:
    with pytest.raises(WeakKeyError):
        check_public_key(bytes.fromhex(case["public_key"]))


def test_the_issue_example_is_accepted_by_plain_cryptography_but_not_here() -> None:
    """Why the checks exist: OpenSSL's verify (through cryptography) accepts it for every message."""
    example = next(c for c in CASES if c["name"].startswith("key 01 00"))
    assert example["lax"] is True and example["strict"] is False
    for message in (b"", b"I will pay you on Friday"):
        with pytest.raises(SignatureError):
            verify(WEAK_KEY, Context.DEVICE_LIST, message, FORGED)


def test_a_device_list_signed_by_a_weak_account_key_is_refused() -> None:
    envelope = Envelope(json_bytes({"v": 1, "type": "device-list", "account_id": key_id(WEAK_KEY)}), FORGED)
    with pytest.raises(DeviceListError):
        DeviceList.verify(envelope, WEAK_KEY)


def test_a_device_entry_with_a_weak_key_is_refused() -> None:
    entry = {
        "device_id": key_id(WEAK_KEY),
        "device_key": b64u_encode(WEAK_KEY),
        "role": "companion",
        "name": "Evil",
        "linked_at": 1,
    }
    with pytest.raises(DeviceListError, match="small-order"):
        DeviceEntry.from_json(entry)


def test_an_account_with_a_weak_key_is_refused() -> None:
    account = {"id": key_id(WEAK_KEY), "handle": "mallory", "display_name": "M", "key": b64u_encode(WEAK_KEY)}
    with pytest.raises(GrantError, match="small-order"):
        AccountInfo.from_json(account)


def test_a_linking_code_with_a_weak_device_key_is_refused() -> None:
    code = LinkCode("https://chat.example", bytes(32), bytes(range(32)), WEAK_KEY, bytes(32))
    with pytest.raises(MalformedCode):
        decode_text(code.to_text())


def test_one_time_keys_and_bundles_under_a_weak_signing_key_are_refused() -> None:
    with pytest.raises(KeyBundleError):
        OneTimeKey("AAAAAQ", bytes(range(32)), FORGED).verify(WEAK_KEY)
    account, device = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    account_key = account.public_key().public_bytes_raw()
    entry = DeviceEntry.new(device.public_key().public_bytes_raw(), Role.PRIMARY, "Phone", 1)
    devices = DeviceList(key_id(account_key), 1, 1, (entry,))
    bundle = DeviceKeys(devices.account_id, entry.device_id, bytes(range(32)), WEAK_KEY, 1).seal(device)
    with pytest.raises(KeyBundleError, match="small-order"):
        DeviceKeys.verify(bundle, devices, entry.device_id)


def test_a_megolm_session_key_on_a_weak_key_is_refused() -> None:
    """vodozemac's verify_strict refuses it; the browser must too (tests/web/test_web_ed25519_strict.py)."""
    body = bytes([2]) + (0).to_bytes(4, "big") + bytes(128) + WEAK_KEY
    session_key = base64.b64encode(body + FORGED).decode().rstrip("=")
    share = {"group_id": "g", "session_id": "x", "session_key": session_key}
    with pytest.raises(DecryptionError):
        GroupSessions().add_inbound("d", "k", share)
    with pytest.raises(vodozemac.SessionKeyDecodeException):
        vodozemac.SessionKey(session_key)
