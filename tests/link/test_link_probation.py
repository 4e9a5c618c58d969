"""Probation (linking.md §4.6) in Python: the shared vectors (vectors/probation.json, also run in Chromium by
tests/web/test_web_probation.py), and the rules around them: a list the server stripped or altered does not
verify, old lists parse, the primary lists a companion from another network on probation and ends it early."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from lockstep.link import probation
from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import key_id
from lockstep.link.envelope import Envelope
from lockstep.link.errors import DeviceListError
from lockstep.link.grant import AccountInfo, approve
from lockstep.link.qr import LinkCode

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "probation.json").read_text())
ACCOUNT_KEY = bytes.fromhex(VECTORS["account_key"])
HOUR = probation.HOUR_MS


@pytest.mark.parametrize("case", VECTORS["lists"], ids=lambda c: c["name"])
def test_every_device_refuses_a_list_whose_probation_was_tampered_with(case: dict[str, Any]) -> None:
    envelope = Envelope.from_json(case["envelope"])
    if case["valid"]:
        DeviceList.verify(envelope, ACCOUNT_KEY)
    else:
        with pytest.raises(DeviceListError):
            DeviceList.verify(envelope, ACCOUNT_KEY)


@pytest.mark.parametrize("moment", VECTORS["moments"], ids=lambda m: m["name"])
def test_what_a_device_concludes_at_each_moment(moment: dict[str, Any]) -> None:
    devices = DeviceList.from_payload(VECTORS["list"])
    now = moment["now"]
    assert [probation.on_probation(d, now) for d in devices.devices] == moment["on_probation"]
    shown = [probation.banner(d, now) for d in probation.newcomers(devices, now, VECTORS["desk_id"])]
    assert shown == moment["banners_on_desk"]
    # The device on probation never shows a banner about itself.
    assert probation.newcomers(devices, now, VECTORS["laptop_id"]) == ()


def test_ending_probation_early_signs_a_list_without_the_fields() -> None:
    devices = DeviceList.from_payload(VECTORS["list"])
    ended = probation.ended(devices, VECTORS["laptop_id"], devices.issued_at + HOUR)
    assert [d.to_json() for d in ended.devices] == VECTORS["ended_early"]
    assert ended.version == devices.version + 1
    assert probation.until_text(devices.devices[1].probation_until or 0) == VECTORS["until_text"]
    with pytest.raises(DeviceListError, match="not on probation"):
        probation.ended(ended, VECTORS["laptop_id"], ended.issued_at)


def test_an_old_list_keeps_its_bytes_and_only_companions_go_on_probation() -> None:
    entry = DeviceList.from_payload(VECTORS["list"]).devices[2]
    assert set(entry.to_json()) == {"device_id", "device_key", "role", "name", "linked_at"}
    primary = DeviceList.from_payload(VECTORS["list"]).primary
    with pytest.raises(DeviceListError, match="only a companion"):
        probation.start(primary, 0, "203.0.113.7")


@given(now=st.integers(0, 2**53), offset=st.integers(-(2**40), 2**40))
def test_probation_is_judged_on_the_earlier_clock(now: int, offset: int) -> None:
    """A server whose clock runs ahead cannot end probation early: the earlier clock decides."""
    device_key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    entry = probation.start(DeviceEntry.new(device_key, Role.COMPANION, "L", now), now, "203.0.113.7")
    judged = probation.judged_now(now + offset, now)
    assert probation.on_probation(entry, judged) == (min(now + offset, now) < now + probation.PROBATION_MS)
    assert probation.on_probation(entry, probation.judged_now(now + probation.PROBATION_MS * 9, now))


def test_the_primary_lists_a_companion_from_another_network_on_probation() -> None:
    account = Ed25519PrivateKey.generate()
    public = account.public_key().public_bytes_raw()
    phone_key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    phone = DeviceEntry.new(phone_key, Role.PRIMARY, "P", 5)
    devices = DeviceList(key_id(public), 1, 5, (phone,))
    info = AccountInfo(key_id(public), "ann", "Ann", public)

    def code() -> LinkCode:
        device = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        return LinkCode("http://127.0.0.1:8000", bytes(32), bytes(range(32)), device, bytes(32))

    away = approve(code(), account, info, devices, "Laptop", 1_000, other_network="127.0.0.2").new_list
    (laptop,) = away.companions
    assert (laptop.probation_until, laptop.linked_from) == (1_000 + probation.PROBATION_MS, "127.0.0.2")
    assert DeviceList.verify(away.sign(account), public) == away
    home = approve(code(), account, info, devices, "Desk", 1_000).new_list
    assert (home.companions[0].probation_until, home.companions[0].linked_from) == (None, None)
