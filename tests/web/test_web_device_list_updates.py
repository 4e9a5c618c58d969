"""§4.3 in the browser (web/src/link/deviceList.ts): the shared vectors of tests/link/
test_link_device_list_updates.py, and the same property with lists signed here and checked in Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import b64u_encode, key_id

pytestmark = pytest.mark.browser

VECTORS_DIR = Path(__file__).resolve().parents[2] / "vectors"
VECTORS = json.loads((VECTORS_DIR / "device-list-updates.json").read_text())

# What a companion holding `held_version` does with `offered`: the update, and whether it is unlinked.
OFFER = """
async ({ offered, accountKey, accountId, heldVersion, deviceId }) => {
  const { deviceList, b64u } = window.lockstep;
  const list = await deviceList.verifyDeviceList(offered, b64u.b64uDecode(accountKey), accountId);
  const update = deviceList.listUpdate(heldVersion, list);
  return { update, unlinked: update === "take" && deviceList.findDevice(list, deviceId) === undefined };
}
"""


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vectors(harness: Any, case: dict[str, Any]) -> None:
    out = harness.evaluate(
        OFFER,
        {
            "offered": case["offered"],
            "accountKey": b64u_encode(bytes.fromhex(VECTORS["account_key"])),
            "accountId": VECTORS["account_id"],
            "heldVersion": VECTORS["held_version"],
            "deviceId": VECTORS["device_id"],
        },
    )
    assert out == {"update": case["update"], "unlinked": case["unlinked"]}


ACCOUNT = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ACCOUNT_KEY = ACCOUNT.public_key().public_bytes_raw()
PRIMARY = DeviceEntry.new(Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.PRIMARY, "P", 1)
ME = DeviceEntry.new(Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.COMPANION, "Me", 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    held=st.integers(1, 5), offered=st.integers(1, 8), with_me=st.booleans(), issued_at=st.integers(0, 10**13)
)
def test_only_a_newer_list_is_taken(
    harness: Any, held: int, offered: int, with_me: bool, issued_at: int
) -> None:
    devices = (PRIMARY, ME) if with_me else (PRIMARY,)
    envelope = DeviceList(key_id(ACCOUNT_KEY), offered, issued_at, devices).sign(ACCOUNT).to_json()
    out = harness.evaluate(
        OFFER,
        {
            "offered": envelope,
            "accountKey": b64u_encode(ACCOUNT_KEY),
            "accountId": key_id(ACCOUNT_KEY),
            "heldVersion": held,
            "deviceId": ME.device_id,
        },
    )
    expected = "take" if offered > held else "keep" if offered == held else "stale"
    assert out == {"update": expected, "unlinked": expected == "take" and not with_me}
