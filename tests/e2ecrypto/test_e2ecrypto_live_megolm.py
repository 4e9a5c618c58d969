"""Live Megolm between vodozemac (this process) and the TypeScript implementation (Chromium), both ways:
session keys and exports shared at index 0 and later, messages read in any order, refusals typed."""

from __future__ import annotations

import random
from typing import Any

import pytest
import vodozemac

from .harness import Harness, b64, unb64

pytestmark = pytest.mark.browser

TS_ENCRYPT = """
const s = O.get(arg.session);
const out = [];
for (const p of arg.plaintexts) out.push(E.encodeBase64(await s.encrypt(E.decodeBase64(p))));
return out;
"""

TS_DECRYPT = """
const s = O.get(arg.session);
const out = [];
for (const body of arg.messages) {
  out.push(await T.outcome(async () => {
    const r = await s.decrypt(body);
    return [r.messageIndex, E.encodeBase64(r.plaintext)];
  }));
}
return out;
"""


def ts_encrypt(harness: Harness, session: str, plaintexts: list[bytes]) -> list[str]:
    result: list[str] = harness.run(
        TS_ENCRYPT, {"session": session, "plaintexts": [b64(p) for p in plaintexts]}
    )
    return result


def ts_decrypt(harness: Harness, session: str, messages: list[str]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = harness.run(TS_DECRYPT, {"session": session, "messages": messages})
    return result


def test_ts_outbound_read_by_vodozemac(harness: Harness) -> None:
    rng = random.Random(5)
    first = harness.run(
        """
const s = await E.OutboundGroupSession.create();
O.set("out", s);
return { sessionId: s.sessionId, sessionKey: await s.sessionKey(), index: s.messageIndex };
"""
    )
    assert first["index"] == 0
    plaintexts = [rng.randbytes(rng.choice([0, 5, 16, 33, 500])) for _ in range(8)]
    bodies = ts_encrypt(harness, "out", plaintexts)
    inbound = vodozemac.InboundGroupSession(vodozemac.SessionKey(first["sessionKey"]))
    assert inbound.session_id == first["sessionId"]
    order = list(range(len(bodies)))
    rng.shuffle(order)
    for i in order:
        decrypted = inbound.decrypt(vodozemac.MegolmMessage.from_base64(bodies[i]))
        assert (decrypted.plaintext, decrypted.message_index) == (plaintexts[i], i)

    # A member who joins later gets the session key at the current index: it reads from there on only.
    later = harness.run(
        'const s = O.get("out"); return { sessionKey: await s.sessionKey(), index: s.messageIndex };'
    )
    assert later["index"] == len(bodies)
    newcomer = vodozemac.InboundGroupSession(vodozemac.SessionKey(later["sessionKey"]))
    assert newcomer.first_known_index == len(bodies)
    [after] = ts_encrypt(harness, "out", [b"after the newcomer joined"])
    assert (
        newcomer.decrypt(vodozemac.MegolmMessage.from_base64(after)).plaintext == b"after the newcomer joined"
    )
    assert inbound.decrypt(vodozemac.MegolmMessage.from_base64(after)).message_index == len(bodies)
    with pytest.raises(vodozemac.MegolmDecryptionException):
        newcomer.decrypt(vodozemac.MegolmMessage.from_base64(bodies[0]))

    # The browser's inbound session exports at a later index; vodozemac imports that export.
    exported = harness.run(
        """
const inbound = await E.InboundGroupSession.fromSessionKey(arg);
O.set("in", inbound);
return await inbound.exportAt(3);
""",
        first["sessionKey"],
    )
    assert exported == inbound.export_at(3).to_base64()
    imported = vodozemac.InboundGroupSession.import_session(vodozemac.ExportedSessionKey(exported))
    assert imported.first_known_index == 3
    assert imported.decrypt(vodozemac.MegolmMessage.from_base64(bodies[5])).plaintext == plaintexts[5]


def test_vodozemac_outbound_read_by_ts(harness: Harness) -> None:
    rng = random.Random(6)
    outbound = vodozemac.GroupSession()
    key0 = outbound.session_key.to_base64()
    plaintexts = [rng.randbytes(rng.choice([0, 7, 16, 64, 2000])) for _ in range(300)]
    bodies = [outbound.encrypt(p).to_base64() for p in plaintexts]
    key_at_300 = outbound.session_key.to_base64()
    last = outbound.encrypt(b"the last one").to_base64()

    harness.run("O.set('in', await E.InboundGroupSession.fromSessionKey(arg));", key0)
    order = list(range(len(bodies)))
    rng.shuffle(order)
    got = ts_decrypt(harness, "in", [bodies[i] for i in order])
    assert got == [{"ok": [i, b64(plaintexts[i])]} for i in order]
    assert ts_decrypt(harness, "in", [last]) == [{"ok": [300, b64(b"the last one")]}]
    concurrent = harness.run(
        """
const s = await E.InboundGroupSession.fromSessionKey(arg.key);
const results = await Promise.all(arg.bodies.map((body) => s.decrypt(body)));
return results.map((r) => r.messageIndex);
""",
        {"key": key0, "bodies": [bodies[i] for i in order[:60]]},
    )
    assert concurrent == order[:60]  # concurrent decrypts do not trample the cached ratchet
    info = harness.run("const s = O.get('in'); return [s.sessionId, s.firstKnownIndex];")
    assert info == [outbound.session_id, 0]

    # Starting at a later index: from a session key shared at 300, and from vodozemac exports.
    harness.run("O.set('late', await E.InboundGroupSession.fromSessionKey(arg));", key_at_300)
    late = ts_decrypt(harness, "late", [last, bodies[299], bodies[0]])
    assert late[0] == {"ok": [300, b64(b"the last one")]}
    assert [r.get("error") for r in late[1:]] == ["UnknownIndexError", "UnknownIndexError"]

    reference = vodozemac.InboundGroupSession(vodozemac.SessionKey(key0))
    for index in (1, 255, 256, 299):
        exported = reference.export_at(index).to_base64()
        got = harness.run(
            """
const s = await E.InboundGroupSession.importSession(arg.exported);
O.set("imported", s);
return [s.firstKnownIndex, await s.exportAt(arg.index), s.signingKeyVerified];
""",
            {"exported": exported, "index": index},
        )
        assert got == [index, exported, False]
        window = ts_decrypt(harness, "imported", [bodies[index], bodies[-1], bodies[index - 1]])
        assert window[0] == {"ok": [index, b64(plaintexts[index])]}
        assert window[1] == {"ok": [299, b64(plaintexts[299])]}
        assert window[2]["error"] == "UnknownIndexError"


def _flip(text: str, position: int) -> str:
    raw = bytearray(unb64(text))
    raw[position] ^= 0x01
    return b64(bytes(raw))


def test_tampered_megolm_data_is_refused_with_typed_errors(harness: Harness) -> None:
    outbound = vodozemac.GroupSession()
    key = outbound.session_key.to_base64()
    body = outbound.encrypt(b"group secret").to_base64()
    length = len(unb64(body))
    harness.run("O.set('in', await E.InboundGroupSession.fromSessionKey(arg));", key)
    got = ts_decrypt(
        harness,
        "in",
        [
            _flip(body, length - 80),  # ciphertext: the signature no longer matches
            _flip(body, length - 70),  # MAC: likewise covered by the signature
            _flip(body, length - 1),  # signature
            b64(b"\x04" + unb64(body)[1:]),  # version
            b64(unb64(body)[:50]),  # truncated
            "@@@",
        ],
    )
    assert [r.get("error") for r in got] == [
        "SignatureError",
        "SignatureError",
        "SignatureError",
        "VersionError",
        "TruncatedError",
        "Base64Error",
    ]
    assert ts_decrypt(harness, "in", [body]) == [{"ok": [0, b64(b"group secret")]}]

    # A message signed by the session key but with a wrong MAC: only the holder of K can make one.
    # Built in the browser from vodozemac's secrets (read out of its pickle by the vector generator).
    mac_refused = harness.run(
        """
const V = await (await fetch("/vectors/megolm-session.json")).json();
const inbound = await E.InboundGroupSession.fromSessionKey(V.session_key0);
const original = E.MegolmMessage.decode(E.decodeBase64(V.messages[0].body));
const mac = original.mac.slice();
mac[0] ^= 1;
const forged = new E.MegolmMessage(original.messageIndex, original.ciphertext, mac);
const signature = await T.signWithSeed(E.decodeBase64(V.signing_seed), forged.signatureInput());
const signed = new E.MegolmMessage(forged.messageIndex, forged.ciphertext, forged.mac, signature);
return await T.outcome(() => inbound.decrypt(signed.encode()));
"""
    )
    assert mac_refused["error"] == "MacError"

    keys = harness.run(
        """
const attempt = (f) => T.outcome(async () => { await f(); return null; });
return [
  await attempt(() => E.InboundGroupSession.fromSessionKey(arg.flippedSignature)),
  await attempt(() => E.InboundGroupSession.fromSessionKey(arg.flippedRatchet)),
  await attempt(() => E.InboundGroupSession.fromSessionKey(arg.truncated)),
  await attempt(() => E.InboundGroupSession.importSession(arg.key)),
  await attempt(() => E.InboundGroupSession.fromSessionKey(arg.exported)),
];
""",
        {
            "flippedSignature": _flip(key, 200),
            "flippedRatchet": _flip(key, 40),
            "truncated": b64(unb64(key)[:228]),
            "key": key,
            "exported": outbound_export(key),
        },
    )
    assert [k.get("error") for k in keys] == [
        "SignatureError",
        "SignatureError",
        "TruncatedError",
        "VersionError",
        "VersionError",
    ]


def outbound_export(session_key: str) -> str:
    return vodozemac.InboundGroupSession(vodozemac.SessionKey(session_key)).export_at(0).to_base64()


def test_megolm_sessions_survive_indexeddb(harness: Harness) -> None:
    got = harness.run(
        """
const out = await E.OutboundGroupSession.create();
const inbound = await E.InboundGroupSession.fromSessionKey(await out.sessionKey());
const first = await out.encrypt(T.utf8("one"));
const db = await new Promise((resolve, reject) => {
  const open = indexedDB.open("megolm-test", 1);
  open.onupgradeneeded = () => open.result.createObjectStore("pickles");
  open.onsuccess = () => resolve(open.result);
  open.onerror = () => reject(open.error);
});
const roundTrip = (key, value) => new Promise((resolve, reject) => {
  const tx = db.transaction("pickles", "readwrite");
  const store = tx.objectStore("pickles");
  store.put(value, key);
  const read = store.get(key);
  tx.oncomplete = () => resolve(read.result);
  tx.onerror = () => reject(tx.error);
});
const outPickle = await roundTrip("out", out.pickle());
const inPickle = await roundTrip("in", inbound.pickle());
const out2 = E.OutboundGroupSession.unpickle(outPickle);
const in2 = E.InboundGroupSession.unpickle(inPickle);
const second = await out2.encrypt(T.utf8("two"));
return {
  extractable: outPickle.signingKey.privateKey.extractable,
  index: out2.messageIndex,
  same: out2.sessionId === out.sessionId && in2.sessionId === out.sessionId,
  read: [T.fromUtf8((await in2.decrypt(first)).plaintext), T.fromUtf8((await in2.decrypt(second)).plaintext)],
};
"""
    )
    assert got == {"extractable": False, "index": 2, "same": True, "read": ["one", "two"]}
