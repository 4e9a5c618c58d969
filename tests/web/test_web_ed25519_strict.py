"""Strict Ed25519 in the browser (web/src/crypto/ed25519.ts) on the vectors shared with
tests/link/test_link_ed25519_strict.py, and where keys arrive: device lists, certificates, QR codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.link.devices import DeviceCertificate, DeviceEntry, DeviceList, Role
from lockstep.link.encoding import b64u_encode, key_id
from lockstep.link.envelope import Context, Envelope

pytestmark = pytest.mark.browser

CASES = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "ed25519-strict.json").read_text())[
    "cases"
]
WEAK_KEY = bytes([1]) + bytes(31)

VERIFY_ALL = """
async (cases) => {
  const { ed25519, bytes } = window.lockstep;
  const out = [];
  for (const c of cases) {
    const key = bytes.fromHex(c.public_key);
    out.push({
      verifies: await ed25519.verify(key, bytes.fromHex(c.message), bytes.fromHex(c.signature)),
      keyProblem: ed25519.pointProblem(key),
    });
  }
  return out;
}
"""


def test_vectors(harness: Any) -> None:
    out = harness.evaluate(VERIFY_ALL, CASES)
    for case, result in zip(CASES, out, strict=True):
        assert result["verifies"] is case["strict"], case["name"]
        if "key:" in case["name"]:
            assert result["keyProblem"], case["name"]


def test_a_device_list_or_certificate_naming_a_weak_device_key_is_refused(harness: Any) -> None:
    account = Ed25519PrivateKey.generate()
    account_key = account.public_key().public_bytes_raw()
    phone = DeviceEntry.new(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.PRIMARY, "P", 1
    )
    evil = DeviceEntry(key_id(WEAK_KEY), WEAK_KEY, Role.COMPANION, "Evil", 1)  # bypasses from_json's check
    signed_list = DeviceList(key_id(account_key), 2, 1, (phone, evil)).sign(account).to_json()
    certificate = DeviceCertificate(key_id(account_key), account_key, evil.device_id, WEAK_KEY, "Evil", 1)
    sealed = Envelope.seal(account, Context.DEVICE_CERTIFICATE, certificate.to_payload())
    out = harness.evaluate(
        """
async (a) => {
  const { deviceList, b64u } = window.lockstep;
  const key = b64u.b64uDecode(a.accountKey);
  const attempt = async (work) => {
    try { await work(); return "accepted"; } catch (e) { return `${e.name}: ${e.message}`; }
  };
  return {
    list: await attempt(() => deviceList.verifyDeviceList(a.list, key, a.accountId)),
    certificate: await attempt(() => deviceList.verifyCertificate(a.certificate, key, a.accountId)),
  };
}
""",
        {
            "list": signed_list,
            "certificate": sealed.to_json(),
            "accountKey": b64u_encode(account_key),
            "accountId": key_id(account_key),
        },
    )
    assert out["list"].startswith("InvalidDeviceList") and "small-order" in out["list"]
    assert out["certificate"].startswith("InvalidCertificate") and "small-order" in out["certificate"]


def test_a_linking_code_with_a_weak_device_key_is_refused(harness: Any) -> None:
    out = harness.evaluate(
        """
(weak) => {
  const { qr, bytes } = window.lockstep;
  const payload = { version: 1, ref: new Uint8Array(32), ephemeralKey: new Uint8Array(32).fill(9),
                    deviceKey: bytes.fromHex(weak), linkSecret: new Uint8Array(32) };
  const origin = "https://chat.example";
  try { qr.decodeLinkText(qr.encodeLinkText(origin, payload), origin); return "accepted"; }
  catch (e) { return e.name; }
}
""",
        WEAK_KEY.hex(),
    )
    assert out == "MalformedCode"
