"""The browser's QR codec, signed envelopes, device lists and link grant against the shared vectors.

Vectors: vectors/link-qr.json, vectors/link-signatures.json, vectors/link-grant.json (made by
scripts/generate-link-vectors.py; the Python tests read the same files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
QR = json.loads((VECTORS / "link-qr.json").read_text())
SIGNATURES = json.loads((VECTORS / "link-signatures.json").read_text())
GRANT = json.loads((VECTORS / "link-grant.json").read_text())

DECODE = """
([text, own]) => {
  const { qr, bytes } = window.lockstep;
  try {
    const c = qr.decodeLinkText(text, own);
    const x = bytes.toHex;
    return { origin: c.origin, ref: x(c.ref), ephemeral_key: x(c.ephemeralKey),
             device_key: x(c.deviceKey), link_secret: x(c.linkSecret) };
  } catch (e) {
    return { error: e.name, isLinkCodeError: e instanceof qr.LinkCodeError, message: e.message };
  }
}
"""


@pytest.mark.parametrize("case", QR["valid"], ids=[c["name"] for c in QR["valid"]])
def test_qr_valid(harness: Any, case: dict[str, str]) -> None:
    out = harness.evaluate(DECODE, [case["text"], QR["own_origin"]])
    expected = {k: case[k] for k in ("origin", "ref", "ephemeral_key", "device_key", "link_secret")}
    assert out == expected


@pytest.mark.parametrize("case", QR["invalid"], ids=[c["name"] for c in QR["invalid"]])
def test_qr_invalid(harness: Any, case: dict[str, str]) -> None:
    out = harness.evaluate(DECODE, [case["text"], QR["own_origin"]])
    assert out["error"] == case["error"]
    assert out["isLinkCodeError"] is True
    if case["error"] == "ForeignOrigin":
        assert "not from your server" in out["message"]


def test_qr_encode_round_trip(harness: Any) -> None:
    """Encoding the canonical vector's fields gives back its exact text."""
    case = QR["valid"][0]
    text = harness.evaluate(
        """(c) => {
          const { qr, bytes } = window.lockstep;
          return qr.encodeLinkText(c.origin, { version: 1, ref: bytes.fromHex(c.ref),
            ephemeralKey: bytes.fromHex(c.ephemeral_key), deviceKey: bytes.fromHex(c.device_key),
            linkSecret: bytes.fromHex(c.link_secret) });
        }""",
        case,
    )
    assert text == case["text"]


def test_qr_decoder_raises_only_link_code_errors(harness: Any) -> None:
    """Odd inputs (empty, binary, unicode, huge, near-misses) raise LinkCodeError subclasses only."""
    own = QR["own_origin"]
    good = QR["valid"][0]["text"]
    texts = [
        "",
        "\x00\xff",
        "https://",
        "https:///link#AQ",
        "https://chat.example:8443/link#",
        "https://chat.example:8443/link#%41",
        "https://chat.example:99999/link#AQ",
        "https://[::1/link#AQ",
        "https://chat.example:8443/link#\u00e9\u00e9",
        "javascript:alert(1)//link#AQ",
        good[:-1],
        good + "A",
        good.replace("#", "##"),
        "x" * 100_000,
    ]
    out = harness.evaluate(
        """([texts, own]) => texts.map((t) => {
             try { window.lockstep.qr.decodeLinkText(t, own); return "decoded"; }
             catch (e) { return e instanceof window.lockstep.qr.LinkCodeError ? e.name : "LEAKED " + e.name; }
           })""",
        [texts, own],
    )
    assert all(not r.startswith("LEAKED") and r != "decoded" for r in out), out


SIGN = """
async (c) => {
  const { ed25519, envelope, bytes } = window.lockstep;
  const h = bytes.fromHex;
  const key = await ed25519.importEd25519Private(h(c.private_key));
  const message = envelope.signedMessage(c.context, h(c.message));
  const signature = await ed25519.sign(key, message);
  return {
    signature: bytes.toHex(signature),
    verifies: await ed25519.verify(h(c.public_key), message, h(c.signature)),
    other_context: await ed25519.verify(h(c.public_key), envelope.signedMessage(
        c.context === "lockstep/auth/v1" ? "lockstep/device-list/v1" : "lockstep/auth/v1", h(c.message)),
        h(c.signature)),
  };
}
"""


@pytest.mark.parametrize("case", SIGNATURES["signatures"], ids=[c["name"] for c in SIGNATURES["signatures"]])
def test_domain_separated_signature(harness: Any, case: dict[str, str]) -> None:
    out = harness.evaluate(SIGN, case)
    assert out == {"signature": case["signature"], "verifies": True, "other_context": False}


def test_auth_signature_helper_matches_vector(harness: Any) -> None:
    """authSignature(key, challenge, origin) signs challenge || UTF-8(origin) in the auth context."""
    case = next(c for c in SIGNATURES["signatures"] if c["context"] == "lockstep/auth/v1")
    message = bytes.fromhex(case["message"])
    challenge, origin = message[:32].hex(), message[32:].decode()
    out = harness.evaluate(
        """async ([c, challenge, origin]) => {
          const { ed25519, envelope, bytes } = window.lockstep;
          const key = await ed25519.importEd25519Private(bytes.fromHex(c.private_key));
          return bytes.toHex(await envelope.authSignature(key, bytes.fromHex(challenge), origin));
        }""",
        [case, challenge, origin],
    )
    assert out == case["signature"]


VERIFY_LIST = """
async ([envelope, accountKey]) => {
  const { deviceList, ed25519, bytes } = window.lockstep;
  const key = bytes.fromHex(accountKey);
  try {
    const list = await deviceList.verifyDeviceList(envelope, key, await ed25519.keyId(key));
    return { version: list.version, device_ids: list.devices.map((d) => d.device_id) };
  } catch (e) {
    return { error: e.name };
  }
}
"""

LISTS = SIGNATURES["device_lists"]


@pytest.mark.parametrize("case", LISTS["valid"], ids=[c["name"] for c in LISTS["valid"]])
def test_device_list_valid(harness: Any, case: dict[str, Any]) -> None:
    out = harness.evaluate(VERIFY_LIST, [case["envelope"], LISTS["account_key"]])
    assert out == {"version": case["version"], "device_ids": case["device_ids"]}


@pytest.mark.parametrize("case", LISTS["invalid"], ids=[c["name"] for c in LISTS["invalid"]])
def test_device_list_invalid(harness: Any, case: dict[str, Any]) -> None:
    out = harness.evaluate(VERIFY_LIST, [case["envelope"], LISTS["account_key"]])
    assert out == {"error": "InvalidDeviceList"}


OPEN_GRANT = """
async ([g, enc, ciphertext, secretOverride]) => {
  const { grant, qr, hpke, bytes } = window.lockstep;
  const h = bytes.fromHex;
  const code = qr.decodeLinkText(g.code_text, "https://chat.example:8443");
  const sk = await hpke.importX25519Private(h(g.ephemeral_private_key));
  try {
    const opened = await grant.openGrant({ enc: h(enc), ciphertext: h(ciphertext), ephemeralPrivateKey: sk,
      ref: code.ref, linkSecret: secretOverride ? h(secretOverride) : code.linkSecret,
      origin: code.origin, deviceKey: code.deviceKey });
    return { account_id: opened.account.id, handle: opened.account.handle,
             display_name: opened.account.display_name, device_name: opened.deviceName,
             device_list_version: opened.list.version, device_id: opened.deviceId };
  } catch (e) {
    return { error: e.name };
  }
}
"""


def test_grant_opens_and_verifies(harness: Any) -> None:
    valid = GRANT["valid"]
    out = harness.evaluate(OPEN_GRANT, [GRANT, valid["enc"], valid["ciphertext"], None])
    expected = {
        k: valid[k]
        for k in ("account_id", "handle", "display_name", "device_name", "device_list_version", "device_id")
    }
    assert out == expected


@pytest.mark.parametrize("case", GRANT["invalid"], ids=[c["name"] for c in GRANT["invalid"]])
def test_grant_tampered(harness: Any, case: dict[str, str]) -> None:
    out = harness.evaluate(OPEN_GRANT, [GRANT, case["enc"], case["ciphertext"], None])
    assert out == {"error": "GrantError"}


def test_grant_wrong_secret(harness: Any) -> None:
    valid = GRANT["valid"]
    out = harness.evaluate(OPEN_GRANT, [GRANT, valid["enc"], valid["ciphertext"], GRANT["wrong_secret"]])
    assert out == {"error": "GrantError"}


def test_device_names_the_primary_writes(harness: Any) -> None:
    """Trimmed, 1 to 64 characters, no control characters (what lockstep.link.devices.check_name accepts)."""
    names = ["  Den PC  ", "", "   ", "x" * 64, "x" * 65, "tab\there", "nul\x00", "c1\x85", "Café ☕"]
    out = harness.evaluate("(names) => names.map((n) => window.lockstep.deviceList.checkName(n))", names)
    assert out == ["Den PC", None, None, "x" * 64, None, None, None, None, "Café ☕"]
