"""The TypeScript Olm/Megolm against vodozemac's recorded output (vectors/olm-*.json, vectors/megolm-*.json).

Every message is decoded and re-encoded to the same bytes, decrypted, and — from the secrets vodozemac
used — produced again byte for byte by the browser. Ratchets at each index equal vodozemac's exports.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from .harness import Harness

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
OLM = json.loads((VECTORS / "olm-session.json").read_text())
MEGOLM = json.loads((VECTORS / "megolm-session.json").read_text())

LOAD = "const V = await (await fetch(arg)).json();"

BOB = """
const d = E.decodeBase64;
const bob = await E.OlmAccount.fromSecrets({
  identityKey: d(V.bob.identity_secret),
  signingSeed: d(V.bob.signing_seed),
  oneTimeKeys: V.bob.one_time_keys.map((k) => ({ id: k.id, secret: d(k.secret) })),
});
"""


def test_vectors_name_their_source() -> None:
    for doc in (OLM, MEGOLM):
        assert doc["source"].startswith("vodozemac")


def test_olm_account_keys_and_signatures(harness: Harness) -> None:
    got = harness.run(
        LOAD
        + BOB
        + """
const signatures = [];
const verified = [];
for (const s of V.bob_signatures) {
  signatures.push(await bob.sign(T.utf8(s.message)));
  verified.push(await T.outcome(() => E.verifyEd25519Signature(V.bob.ed25519, s.message, s.signature)));
  verified.push(await T.outcome(() => E.verifyEd25519Signature(V.bob.ed25519, s.message + "!", s.signature)));
}
const oneTimeKeys = bob.oneTimeKeys();
return { curve25519: bob.curve25519Key, ed25519: bob.ed25519Key, oneTimeKeys, signatures, verified };
""",
        "/vectors/olm-session.json",
    )
    bob = OLM["bob"]
    assert got["curve25519"] == bob["curve25519"]
    assert got["ed25519"] == bob["ed25519"]
    assert got["oneTimeKeys"] == {k["key_id"]: k["public"] for k in bob["one_time_keys"]}
    assert got["signatures"] == [s["signature"] for s in OLM["bob_signatures"]]
    assert [v.get("error") for v in got["verified"]] == [None, "SignatureError"] * len(OLM["bob_signatures"])


def test_olm_transcript_replayed_as_bob(harness: Harness) -> None:
    """Bob's side of a vodozemac conversation: decrypt what Alice sent (out of order, across ratchet turns,
    replays refused) and re-encrypt what Bob sent to the same bytes, given the ratchet keys he drew."""
    got = harness.run(
        LOAD
        + BOB
        + """
let session = null;
let rootKey = null;
const results = [];
for (const ev of V.events) {
  const body = d(ev.body);
  if (ev.op === "receive") {
    const decoded = ev.type === 0 ? E.PreKeyMessage.decode(body) : E.OlmNormalMessage.decode(body);
    const reencoded = E.encodeBase64(decoded.encode());
    const r = await T.outcome(async () => {
      if (session === null) {
        const created = await bob.createInboundSession(V.alice.curve25519, { type: ev.type, body });
        session = created.session;
        rootKey = session.pickle().sending.rootKey;
        return T.fromUtf8(created.plaintext);
      }
      return T.fromUtf8(await session.decrypt({ type: ev.type, body }));
    });
    results.push({ reencoded, ...r });
  } else {
    session.keySource = T.queuedKeys(ev.new_ratchet_secret ? [ev.new_ratchet_secret] : []);
    const m = await session.encrypt(T.utf8(ev.plaintext));
    results.push({ type: m.type, body: E.encodeBase64(m.body) });
  }
}
const oneTimeKeysLeft = Object.keys(bob.oneTimeKeys());
return { results, sessionId: session.sessionId, oneTimeKeysLeft, rootKey };
""",
        "/vectors/olm-session.json",
    )
    events = OLM["events"]
    assert len(got["results"]) == len(events)
    for event, result in zip(events, got["results"], strict=True):
        if event["op"] == "receive":
            assert result["reencoded"] == event["body"], event["note"]
            if "error" in event:
                assert result.get("error") == event["error"], event["note"]
            else:
                assert result.get("ok") == event["plaintext"], (event["note"], result)
        else:
            assert result == {"type": event["type"], "body": event["body"]}, event["note"]
    assert got["sessionId"] == OLM["session_id"]
    assert got["rootKey"] == OLM["alice_initial"]["root_key"]  # Bob's triple DH + HKDF meets Alice's R0
    used = OLM["bob_one_time_key"]
    assert got["oneTimeKeysLeft"] == [k["key_id"] for k in OLM["bob"]["one_time_keys"] if k["key_id"] != used]


def test_olm_transcript_replayed_as_alice(harness: Harness) -> None:
    """Alice's side from vodozemac's session state right after creation (R0, C(0,0), T0), as a pickle:
    her pre-key messages, ratchet turns and normal messages come out byte for byte; Bob's replies decrypt."""
    got = harness.run(
        LOAD
        + """
const d = E.decodeBase64;
const st = V.alice_initial;
const t0 = await E.importX25519(d(st.ratchet_secret));
const oneTimeKey = V.bob.one_time_keys.find((k) => k.key_id === V.bob_one_time_key).public;
const session = await E.OlmSession.unpickle({
  format: "lockstep-olm-session-1",
  sessionKeys: { identityKey: V.alice.curve25519, baseKey: st.base_key, oneTimeKey },
  sending: {
    kind: "active",
    rootKey: st.root_key,
    ratchetKey: { privateKey: t0.privateKey, publicKey: E.encodeBase64(t0.publicKey) },
    chainKey: st.chain_key,
    chainIndex: 0,
  },
  receiving: [],
});
const results = [];
for (const ev of V.alice_events) {
  if (ev.op === "send") {
    session.keySource = T.queuedKeys(ev.new_ratchet_secret ? [ev.new_ratchet_secret] : []);
    const m = await session.encrypt(T.utf8(ev.plaintext));
    results.push({ type: m.type, body: E.encodeBase64(m.body) });
  } else {
    const plaintext = await session.decrypt({ type: ev.type, body: d(ev.body) });
    results.push({ plaintext: T.fromUtf8(plaintext) });
  }
}
return { results, sessionId: session.sessionId };
""",
        "/vectors/olm-session.json",
    )
    events = OLM["alice_events"]
    assert len(got["results"]) == len(events) > 50
    for number, (event, result) in enumerate(zip(events, got["results"], strict=True)):
        if event["op"] == "send":
            assert result == {"type": event["type"], "body": event["body"]}, number
        else:
            assert result == {"plaintext": event["plaintext"]}, number
    assert got["sessionId"] == OLM["session_id"]


def test_megolm_session_key_and_messages_from_the_same_secrets(harness: Harness) -> None:
    got = harness.run(
        LOAD
        + """
const d = E.decodeBase64;
const out = await E.OutboundGroupSession.fromSecrets(d(V.ratchet0), 0, d(V.signing_seed));
const sessionKey0 = await out.sessionKey();
const bodies = [];
for (const m of V.messages) bodies.push(E.encodeBase64(await out.encrypt(T.utf8(m.plaintext))));
const late = [];
for (const m of V.late) {
  const exported = await E.decodeSessionKey(m.session_key);
  const s = await E.OutboundGroupSession.fromSecrets(exported.ratchet, m.index, d(V.signing_seed));
  late.push({ sessionKey: await s.sessionKey(), body: E.encodeBase64(await s.encrypt(T.utf8(m.plaintext))) });
}
return { sessionId: out.sessionId, sessionKey0, bodies, late, next: out.messageIndex };
""",
        "/vectors/megolm-session.json",
    )
    assert got["sessionId"] == MEGOLM["session_id"]
    assert got["sessionKey0"] == MEGOLM["session_key0"]
    assert got["bodies"] == [m["body"] for m in MEGOLM["messages"]]
    assert got["next"] == len(MEGOLM["messages"])
    assert got["late"] == [{"sessionKey": m["session_key"], "body": m["body"]} for m in MEGOLM["late"]]


def test_megolm_inbound_decrypts_reencodes_and_exports(harness: Harness) -> None:
    got = harness.run(
        LOAD
        + """
const inbound = await E.InboundGroupSession.fromSessionKey(V.session_key0);
const messages = [];
for (const m of [...V.messages, ...V.late].reverse()) {
  const body = E.decodeBase64(m.body);
  const reencoded = E.encodeBase64(E.MegolmMessage.decode(body).encode());
  const r = await inbound.decrypt(body);
  messages.push({ reencoded, plaintext: T.fromUtf8(r.plaintext), index: r.messageIndex });
}
const exports = [];
for (const e of V.exports) exports.push(await inbound.exportAt(e.index));
const first = inbound.firstKnownIndex;
return { messages: messages.reverse(), exports, sessionId: inbound.sessionId, first };
""",
        "/vectors/megolm-session.json",
    )
    expected = [*MEGOLM["messages"], *MEGOLM["late"]]
    assert got["messages"] == [
        {"reencoded": m["body"], "plaintext": m["plaintext"], "index": m["index"]} for m in expected
    ]
    assert got["exports"] == [e["exported"] for e in MEGOLM["exports"]]
    assert got["sessionId"] == MEGOLM["session_id"]
    assert got["first"] == 0


def test_megolm_ratchet_step_by_step_equals_vodozemac_exports(harness: Harness) -> None:
    """advance() one index at a time (the outbound path) meets every exported ratchet up to 1024, and
    advanceTo() from each export reaches every later export (the inbound path)."""
    got = harness.run(
        LOAD
        + """
const d = E.decodeBase64;
const wanted = new Map(V.exports.map((e) => [e.index, E.encodeBase64(d(e.exported).slice(5, 133))]));
const stepped = {};
const r = E.MegolmRatchet.fromBytes(d(V.ratchet0), 0);
while (r.index <= 1024) {
  if (wanted.has(r.index)) stepped[r.index] = E.encodeBase64(r.bytes());
  await r.advance();
}
const jumps = [];
for (const a of V.exports) for (const b of V.exports) {
  if (b.index <= a.index) continue;
  const x = E.MegolmRatchet.fromBytes(d(a.exported).slice(5, 133), a.index);
  await x.advanceTo(b.index);
  jumps.push(E.encodeBase64(x.bytes()) === wanted.get(b.index));
}
return { stepped, jumps };
""",
        "/vectors/megolm-session.json",
    )
    ratchets = {e["index"]: _ratchet(e["exported"]) for e in MEGOLM["exports"]}
    stepped = {int(k): v for k, v in got["stepped"].items()}
    assert stepped == {i: r for i, r in ratchets.items() if i <= 1024}
    assert len(stepped) >= 10
    assert got["jumps"] and all(got["jumps"])


def _ratchet(exported: str) -> str:
    raw = base64.b64decode(exported + "=" * (-len(exported) % 4))
    return base64.b64encode(raw[5:133]).decode().rstrip("=")
