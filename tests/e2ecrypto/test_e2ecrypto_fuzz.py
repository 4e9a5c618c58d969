"""Hypothesis drives the browser's decoders: any bytes (or text) give a value or one of our typed errors
(E2EError subclasses), never a TypeError, RangeError or a WebCrypto DOMException; a single-byte change
to a real message never yields a different plaintext."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import vodozemac
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .harness import Harness, b64, unb64

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
OLM = json.loads((VECTORS / "olm-session.json").read_text())
MEGOLM = json.loads((VECTORS / "megolm-session.json").read_text())
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SETUP = """
const V = await (await fetch("/vectors/olm-session.json")).json();
const M = await (await fetch("/vectors/megolm-session.json")).json();
const d = E.decodeBase64;
const secrets = () => ({
  identityKey: d(V.bob.identity_secret),
  signingSeed: d(V.bob.signing_seed),
  oneTimeKeys: V.bob.one_time_keys.map((k) => ({ id: k.id, secret: d(k.secret) })),
});
O.set("secrets", secrets);
const bob = await E.OlmAccount.fromSecrets(secrets());
const first = V.events[0];
const { session } = await bob.createInboundSession(null, { type: first.type, body: d(first.body) });
O.set("olm", session);
O.set("megolm", await E.InboundGroupSession.fromSessionKey(M.session_key0));
"""

DECODE_ALL = """
const bytes = E.decodeBase64(arg.data);
const size = (value) => value.encode().length;
const account = await E.OlmAccount.fromSecrets(O.get("secrets")());
return {
  normal: await T.outcome(async () => size(E.OlmNormalMessage.decode(bytes))),
  preKey: await T.outcome(async () => size(E.PreKeyMessage.decode(bytes))),
  megolm: await T.outcome(async () => size(E.MegolmMessage.decode(bytes))),
  sessionKey: await T.outcome(async () => (await E.decodeSessionKey(bytes)).index),
  exported: await T.outcome(async () => (await E.decodeExportedSessionKey(bytes)).index),
  ratchet: await T.outcome(async () => E.MegolmRatchet.fromBytes(bytes, 0).index),
  olmNormal: await T.outcome(async () => (await O.get("olm").decrypt({ type: 1, body: bytes })).length),
  olmPreKey: await T.outcome(async () => (await O.get("olm").decrypt({ type: 0, body: bytes })).length),
  inbound: await T.outcome(async () => (await O.get("megolm").decrypt(bytes)).plaintext.length),
  newSession: await T.outcome(async () => {
    const created = await account.createInboundSession(null, { type: 0, body: bytes });
    return created.plaintext.length;
  }),
};
"""


def _only_typed(results: dict[str, Any]) -> None:
    for name, result in results.items():
        assert "ok" in result or result["typed"], (name, result)


@pytest.fixture
def fuzz_page(harness: Harness) -> Harness:
    harness.run(SETUP)
    return harness


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_give_typed_errors(fuzz_page: Harness, data: bytes) -> None:
    results = fuzz_page.run(DECODE_ALL, {"data": b64(data)})
    _only_typed(results)
    for name in ("olmNormal", "olmPreKey", "inbound", "newSession"):
        assert "error" in results[name], name  # random bytes never authenticate


@FUZZ
@given(
    prefix=st.sampled_from(
        [b"\x03", b"\x03\x0a\x20", b"\x03\x08", b"\x02", b"\x01", b"\x03\x0a\x20" + b"\x11" * 32]
    ),
    data=st.binary(max_size=250),
)
def test_plausible_prefixes_give_typed_errors(fuzz_page: Harness, prefix: bytes, data: bytes) -> None:
    """Random tails behind the version bytes and tags the formats start with, to reach the field parsers."""
    _only_typed(fuzz_page.run(DECODE_ALL, {"data": b64(prefix + data)}))


@FUZZ
@given(text=st.text(max_size=80))
def test_random_text_as_base64(fuzz_page: Harness, text: str) -> None:
    result = fuzz_page.run(
        """
const r = await T.outcome(async () => E.encodeBase64(E.decodeBase64(arg)));
const k = await T.outcome(async () => (await E.InboundGroupSession.fromSessionKey(arg)).sessionId);
return [r, k];
""",
        text,
    )
    for r in result:
        assert "ok" in r or r["typed"], r
    if "ok" in result[0]:
        assert result[0]["ok"] == text.rstrip("=")


# Messages the fuzz page's sessions can read: Alice's first-chain (pre-key) messages and Megolm messages.
MUTABLE = [
    ("olm", event["type"], event["body"], event["plaintext"])
    for event in OLM["events"]
    if event["op"] == "receive" and event["type"] == 0 and "error" not in event
][1:] + [("megolm", 0, m["body"], m["plaintext"]) for m in MEGOLM["messages"][:3]]


@FUZZ
@given(case=st.sampled_from(MUTABLE), position=st.integers(min_value=0), mask=st.integers(1, 255))
def test_one_changed_byte_never_changes_the_plaintext(
    fuzz_page: Harness, case: tuple[str, int, str, str], position: int, mask: int
) -> None:
    kind, message_type, body, plaintext = case
    raw = bytearray(unb64(body))
    raw[position % len(raw)] ^= mask
    result = fuzz_page.run(
        """
const bytes = E.decodeBase64(arg.body);
if (arg.kind === "olm") {
  return await T.outcome(async () => T.fromUtf8(await O.get("olm").decrypt({ type: arg.type, body: bytes })));
}
return await T.outcome(async () => T.fromUtf8((await O.get("megolm").decrypt(bytes)).plaintext));
""",
        {"kind": kind, "type": message_type, "body": b64(bytes(raw))},
    )
    if "ok" in result:
        # Only a change the decoder canonicalises away (e.g. a zero index moved to an unknown field)
        # can still authenticate, and then it is the same message.
        assert result["ok"] == plaintext
    else:
        assert result["typed"], result


GROUP_MESSAGES = 600


@pytest.fixture(scope="module")
def group_transcript() -> dict[str, Any]:
    """A vodozemac group session's 600 messages, its session key at 0 and its exports."""
    outbound = vodozemac.GroupSession()
    key0 = outbound.session_key.to_base64()
    bodies = [outbound.encrypt(f"message {i}".encode()).to_base64() for i in range(GROUP_MESSAGES)]
    reference = vodozemac.InboundGroupSession(vodozemac.SessionKey(key0))
    return {"key0": key0, "bodies": bodies, "reference": reference}


@FUZZ
@given(
    start=st.integers(0, GROUP_MESSAGES - 1),
    reads=st.lists(st.integers(0, GROUP_MESSAGES - 1), min_size=1, max_size=12),
)
def test_megolm_inbound_agrees_with_vodozemac_from_any_start(
    harness: Harness, group_transcript: dict[str, Any], start: int, reads: list[int]
) -> None:
    """Import at a random index (vodozemac's export), then read random indexes in random order, with
    repeats: the browser succeeds exactly where vodozemac does, with the same plaintext."""
    exported = group_transcript["reference"].export_at(start).to_base64()
    mirror = vodozemac.InboundGroupSession.import_session(vodozemac.ExportedSessionKey(exported))
    expected = []
    for index in reads:
        try:
            decrypted = mirror.decrypt(vodozemac.MegolmMessage.from_base64(group_transcript["bodies"][index]))
            expected.append({"ok": [decrypted.message_index, decrypted.plaintext.decode()]})
        except vodozemac.MegolmDecryptionException:
            expected.append({"error": "UnknownIndexError"})
    got = harness.run(
        """
const s = await E.InboundGroupSession.importSession(arg.exported);
const out = [];
for (const body of arg.bodies) {
  const r = await T.outcome(async () => {
    const d = await s.decrypt(body);
    return [d.messageIndex, T.fromUtf8(d.plaintext)];
  });
  out.push("ok" in r ? { ok: r.ok } : { error: r.error });
}
return out;
""",
        {"exported": exported, "bodies": [group_transcript["bodies"][i] for i in reads]},
    )
    assert got == expected
