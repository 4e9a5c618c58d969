"""The browser's HPKE (web/src/crypto/hpke.ts) against RFC 9180 Appendix A.1, in real Chromium.

Vectors: vectors/hpke-rfc9180.json (A.1.1 base mode, A.1.2 PSK mode), shared with the Python tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CASES = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "hpke-rfc9180.json").read_text())[
    "cases"
]

# Runs the sender side with skEm injected and the recipient side with skRm, returning hex results.
RUN_CASE = """
async (c) => {
  const { hpke, bytes } = window.lockstep;
  const h = bytes.fromHex, x = bytes.toHex;
  const options = { mode: c.mode, info: h(c.info), psk: h(c.psk ?? ""), pskId: h(c.psk_id ?? "") };
  const skE = await hpke.importX25519Private(h(c.skEm));
  const skR = await hpke.importX25519Private(h(c.skRm));
  const encapsulated = await hpke.encap(h(c.pkRm), skE);
  const s = await hpke.keySchedule(
    c.mode, encapsulated.sharedSecret, options.info, options.psk, options.pskId
  );
  const sender = await hpke.setupSender(h(c.pkRm), options, skE);
  const recipient = await hpke.setupRecipient(h(c.enc), skR, options);
  const out = {
    pkEm: x(await hpke.publicKeyOf(skE)),
    pkRm: x(await hpke.publicKeyOf(skR)),
    enc: x(sender.enc),
    shared_secret: x(encapsulated.sharedSecret),
    recipient_shared_secret: x(await hpke.decap(h(c.enc), skR)),
    key_schedule_context: x(s.keyScheduleContext),
    secret: x(s.secret),
    key: x(s.key),
    base_nonce: x(s.baseNonce),
    exporter_secret: x(s.exporterSecret),
    context_fields: [sender.context, recipient]
      .flatMap((ctx) => Object.values(ctx))
      .filter((v) => v instanceof Uint8Array)
      .map(x),
    cts: [], pts: [],
  };
  for (const e of c.encryptions) {
    out.cts.push(x(await sender.context.seal(h(e.aad), h(e.pt))));
    out.pts.push(x(await recipient.open(h(e.aad), h(e.ct))));
  }
  return out;
}
"""


@pytest.mark.parametrize("case", CASES, ids=[c["source"].split(" (")[0] for c in CASES])
def test_rfc9180_vector(harness: Any, case: dict[str, Any]) -> None:
    out = harness.evaluate(RUN_CASE, case)
    assert out["pkEm"] == case["pkEm"]
    assert out["pkRm"] == case["pkRm"]
    assert out["enc"] == case["enc"]
    assert out["shared_secret"] == case["shared_secret"]
    assert out["recipient_shared_secret"] == case["shared_secret"]
    for field in ("key_schedule_context", "secret", "key", "base_nonce", "exporter_secret"):
        assert out[field] == case[field], field
    assert out["cts"] == [e["ct"] for e in case["encryptions"]]
    assert out["pts"] == [e["pt"] for e in case["encryptions"]]
    # A context holds the key as a non-extractable CryptoKey, the base nonce and the exporter secret only.
    assert case["shared_secret"] not in out["context_fields"]
    assert case["secret"] not in out["context_fields"]
    assert case["key"] not in out["context_fields"]


REFUSALS = """
async (c) => {
  const { hpke, bytes } = window.lockstep;
  const h = bytes.fromHex;
  const skR = await hpke.importX25519Private(h(c.skRm));
  const options = { mode: 1, info: h(c.info), psk: h(c.psk), pskId: h(c.psk_id) };
  const ct = h(c.encryptions[0].ct);
  const aad = h(c.encryptions[0].aad);
  const attempt = async (fn) => { try { await fn(); return "opened"; } catch (e) { return e.name; } };
  const open = async (enc, opts, a, body) => (await hpke.setupRecipient(enc, skR, opts)).open(a, body);
  const flipped = ct.slice(); flipped[0] ^= 1;
  const wrongPsk = h(c.psk); wrongPsk[31] ^= 1;
  return {
    tampered: await attempt(() => open(h(c.enc), options, aad, flipped)),
    wrong_psk: await attempt(() => open(h(c.enc), { ...options, psk: wrongPsk }, aad, ct)),
    wrong_aad: await attempt(() => open(h(c.enc), options, h("00"), ct)),
    psk_missing: await attempt(() => open(h(c.enc), { ...options, psk: new Uint8Array(0) }, aad, ct)),
    small_order: await attempt(() => open(new Uint8Array(32), options, aad, ct)),
    short_enc: await attempt(() => open(h(c.enc).slice(1), options, aad, ct)),
    good: await attempt(() => open(h(c.enc), options, aad, ct)),
  };
}
"""


def test_psk_mode_refusals(harness: Any) -> None:
    psk_case = next(c for c in CASES if c["mode"] == 1)
    out = harness.evaluate(REFUSALS, psk_case)
    assert out == {
        "tampered": "HpkeError",
        "wrong_psk": "HpkeError",
        "wrong_aad": "HpkeError",
        "psk_missing": "HpkeError",
        "small_order": "HpkeError",
        "short_enc": "HpkeError",
        "good": "opened",
    }


CONCURRENT_SEALS = """
async (c) => {
  const { hpke, bytes } = window.lockstep;
  const h = bytes.fromHex, x = bytes.toHex;
  const options = { mode: c.mode, info: h(c.info), psk: h(c.psk ?? ""), pskId: h(c.psk_id ?? "") };
  const skE = await hpke.importX25519Private(h(c.skEm));
  const { context } = await hpke.setupSender(h(c.pkRm), options, skE);
  const e = c.encryptions;
  // Started together, before either has finished: each must take its own sequence number.
  const sealed = await Promise.all(e.map((enc) => context.seal(h(enc.aad), h(enc.pt))));
  return sealed.map(x);
}
"""


@pytest.mark.parametrize("case", CASES, ids=[c["source"].split(" (")[0] for c in CASES])
def test_seals_started_together_use_different_nonces(harness: Any, case: dict[str, Any]) -> None:
    """RFC 9180 §5.2: each seal takes the next sequence number; before the fix, two seals started
    together both used sequence 0 (an AES-GCM nonce reused)."""
    assert harness.evaluate(CONCURRENT_SEALS, case) == [e["ct"] for e in case["encryptions"]]


SHORT_PSK = """
async (c) => {
  const { hpke, bytes } = window.lockstep;
  const h = bytes.fromHex;
  const skE = await hpke.importX25519Private(h(c.skEm));
  const attempt = async (psk) => {
    try {
      await hpke.setupSender(h(c.pkRm), { mode: 1, info: h(c.info), psk, pskId: h(c.psk_id) }, skE);
      return "ok";
    }
    catch (e) { return e.name + ": " + e.message; }
  };
  return { short: await attempt(h(c.psk).slice(0, 31)), full: await attempt(h(c.psk)) };
}
"""


def test_a_psk_shorter_than_32_bytes_is_refused(harness: Any) -> None:
    """RFC 9180 §5.1 (and §9.5): as lockstep.link.hpke, the browser refuses a PSK under 32 bytes."""
    psk_case = next(c for c in CASES if c["mode"] == 1)
    out = harness.evaluate(SHORT_PSK, psk_case)
    assert out["full"] == "ok"
    assert out["short"].startswith("HpkeError") and "32 bytes" in out["short"]
