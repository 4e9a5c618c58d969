"""Live Olm between vodozemac (this process) and the TypeScript implementation (Chromium), both ways.

Each side starts a session to the other's one-time key; then rounds of messages go back and forth with
shuffled delivery, crossing messages and ratchet turns, and every plaintext must come out on the other
side. Tampered messages are refused with the typed error and leave the session usable.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import vodozemac

from .harness import Harness, b64, unb64

pytestmark = pytest.mark.browser

TS_DECRYPT = """
const s = O.get(arg.session);
const out = [];
for (const [type, body] of arg.messages) {
  const decrypt = async () => E.encodeBase64(await s.decrypt({ type, body: E.decodeBase64(body) }));
  out.push(await T.outcome(decrypt));
}
return out;
"""


class TsPeer:
    """An Olm session living in the page under a name."""

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness = harness
        self.name = name

    def encrypt(self, plaintexts: list[bytes]) -> list[tuple[int, str]]:
        return self.harness.olm_encrypt(self.name, plaintexts)

    def decrypt(self, messages: list[tuple[int, str]]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.harness.run(
            TS_DECRYPT, {"session": self.name, "messages": [list(m) for m in messages]}
        )
        return result


class VzPeer:
    def __init__(self, session: vodozemac.Session) -> None:
        self.session = session

    def encrypt(self, plaintexts: list[bytes]) -> list[tuple[int, str]]:
        out = []
        for plaintext in plaintexts:
            message_type, body = self.session.encrypt(plaintext).to_parts()
            out.append((message_type, b64(body)))
        return out

    def decrypt(self, messages: list[tuple[int, str]]) -> list[bytes]:
        return [
            self.session.decrypt(vodozemac.AnyOlmMessage.from_parts(t, unb64(body))) for t, body in messages
        ]


def converse(ts: TsPeer, vz: VzPeer, rng: random.Random, rounds: int) -> int:
    """Rounds of messages: one side sends 1..4, or both send before either reads (crossing);
    delivery order shuffled. Returns the number of messages checked."""
    checked = 0
    for round_number in range(rounds):
        senders = ["ts", "vz"] if round_number % 3 == 2 else [rng.choice(["ts", "vz"])]
        batches: dict[str, tuple[list[bytes], list[tuple[int, str]]]] = {}
        for sender in senders:
            plaintexts = [
                rng.randbytes(rng.choice([0, 1, 15, 16, 17, 100, 1000])) for _ in range(rng.randint(1, 4))
            ]
            messages = (ts if sender == "ts" else vz).encrypt(plaintexts)
            batches[sender] = (plaintexts, messages)
        for sender, (plaintexts, messages) in batches.items():
            order = list(range(len(messages)))
            rng.shuffle(order)
            shuffled = [messages[i] for i in order]
            if sender == "ts":
                assert vz.decrypt(shuffled) == [plaintexts[i] for i in order]
            else:
                got = ts.decrypt(shuffled)
                assert got == [{"ok": b64(plaintexts[i])} for i in order], (round_number, got)
            checked += len(messages)
    return checked


def test_ts_outbound_to_vodozemac_account(harness: Harness) -> None:
    bob = vodozemac.Account()
    bob.generate_one_time_keys(2)
    one_time_key = next(iter(bob.one_time_keys.values()))
    alice = harness.run(
        """
const alice = await E.OlmAccount.create();
const session = await alice.createOutboundSession(arg.identity, arg.oneTimeKey);
O.set("alice", alice);
O.set("ts", session);
return { identity: alice.curve25519Key, sessionId: session.sessionId };
""",
        {"identity": bob.curve25519_key.to_base64(), "oneTimeKey": one_time_key.to_base64()},
    )
    ts = TsPeer(harness, "ts")
    first = ts.encrypt([b"hello from the browser", b"second pre-key", b""])
    assert [t for t, _ in first] == [0, 0, 0]
    identity = vodozemac.Curve25519PublicKey.from_base64(alice["identity"])
    pre_key = vodozemac.AnyOlmMessage.from_parts(0, unb64(first[2][1])).to_pre_key()
    session, plaintext = bob.create_inbound_session(identity, pre_key)
    assert plaintext == b""
    assert session.session_id == alice["sessionId"]
    vz = VzPeer(session)
    assert vz.decrypt([first[1], first[0]]) == [b"second pre-key", b"hello from the browser"]
    assert len(bob.one_time_keys) == 1  # vodozemac used up the one-time key the browser chose

    replies = vz.encrypt([b"reply 1", b"reply 2"])
    assert [t for t, _ in replies] == [1, 1]
    assert ts.decrypt(replies[::-1]) == [{"ok": b64(b"reply 2")}, {"ok": b64(b"reply 1")}]
    after = ts.encrypt([b"now a normal message"])
    assert after[0][0] == 1
    assert vz.decrypt(after) == [b"now a normal message"]

    assert converse(ts, vz, random.Random(1), rounds=12) > 20

    burst = harness.run(
        """
const s = O.get("ts");
const sent = await Promise.all(["a", "b", "c", "d", "e"].map((t) => s.encrypt(T.utf8(t))));
return sent.map((m) => [m.type, E.encodeBase64(m.body)]);
"""
    )
    assert vz.decrypt([(t, body) for t, body in burst][::-1]) == [b"e", b"d", b"c", b"b", b"a"]


def test_vodozemac_outbound_to_ts_account(harness: Harness) -> None:
    keys = harness.run(
        """
const bob = await E.OlmAccount.create();
await bob.generateOneTimeKeys(3);
const keys = bob.oneTimeKeys();
bob.markKeysAsPublished();
O.set("bob", bob);
return { identity: bob.curve25519Key, signing: bob.ed25519Key, oneTimeKeys: keys };
"""
    )
    assert list(keys["oneTimeKeys"]) == ["AAAAAAAAAAA", "AAAAAAAAAAE", "AAAAAAAAAAI"]
    alice = vodozemac.Account()
    chosen = keys["oneTimeKeys"]["AAAAAAAAAAE"]
    outbound = alice.create_outbound_session(
        vodozemac.Curve25519PublicKey.from_base64(keys["identity"]),
        vodozemac.Curve25519PublicKey.from_base64(chosen),
    )
    vz = VzPeer(outbound)
    first = vz.encrypt([b"hi browser", b"are you there?"])
    got = harness.run(
        """
const bob = O.get("bob");
const [type, body] = arg.message;
const message = { type, body: E.decodeBase64(body) };
const { session, plaintext } = await bob.createInboundSession(arg.identity, message);
O.set("ts", session);
const left = bob.pickle().oneTimeKeys.map((k) => E.keyIdToString(k.id));
return { plaintext: E.encodeBase64(plaintext), sessionId: session.sessionId, left };
""",
        {"identity": alice.curve25519_key.to_base64(), "message": list(first[1])},
    )
    assert got["plaintext"] == b64(b"are you there?")
    assert got["sessionId"] == outbound.session_id
    assert got["left"] == ["AAAAAAAAAAA", "AAAAAAAAAAI"]
    ts = TsPeer(harness, "ts")
    assert ts.decrypt([first[0]]) == [{"ok": b64(b"hi browser")}]
    assert converse(ts, vz, random.Random(2), rounds=12) > 20


def test_session_survives_indexeddb_between_messages(harness: Harness) -> None:
    """Both Olm sessions and the account go through IndexedDB (structured clone; private keys stay
    non-extractable CryptoKeys) in the middle of a conversation and carry on."""
    bob = vodozemac.Account()
    bob.generate_one_time_keys(1)
    harness.run(
        """
const alice = await E.OlmAccount.create();
O.set("ts", await alice.createOutboundSession(arg.identity, arg.oneTimeKey));
O.set("alice", alice);
""",
        {
            "identity": bob.curve25519_key.to_base64(),
            "oneTimeKey": next(iter(bob.one_time_keys.values())).to_base64(),
        },
    )
    ts = TsPeer(harness, "ts")
    first = ts.encrypt([b"before storage"])
    identity_b64 = harness.run('return O.get("alice").curve25519Key;')
    identity = vodozemac.Curve25519PublicKey.from_base64(identity_b64)
    session, _ = bob.create_inbound_session(
        identity, vodozemac.AnyOlmMessage.from_parts(*_parts(first[0])).to_pre_key()
    )
    vz = VzPeer(session)
    converse(ts, vz, random.Random(3), rounds=4)
    stored = harness.run(
        """
const db = await new Promise((resolve, reject) => {
  const open = indexedDB.open("olm-test", 1);
  open.onupgradeneeded = () => open.result.createObjectStore("pickles");
  open.onsuccess = () => resolve(open.result);
  open.onerror = () => reject(open.error);
});
const put = (key, value) => new Promise((resolve, reject) => {
  const tx = db.transaction("pickles", "readwrite");
  tx.objectStore("pickles").put(value, key);
  tx.oncomplete = resolve;
  tx.onerror = () => reject(tx.error);
});
const get = (key) => new Promise((resolve, reject) => {
  const request = db.transaction("pickles").objectStore("pickles").get(key);
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});
await put("session", O.get("ts").pickle());
await put("account", O.get("alice").pickle());
O.delete("ts");
O.delete("alice");
const sessionPickle = await get("session");
const accountPickle = await get("account");
O.set("ts", await E.OlmSession.unpickle(sessionPickle));
const alice = E.OlmAccount.unpickle(accountPickle);
O.set("alice", alice);
const key = sessionPickle.sending.ratchetKey?.privateKey ?? accountPickle.identityKey.privateKey;
return { extractable: key.extractable, identityExtractable: accountPickle.identityKey.privateKey.extractable,
         identity: alice.curve25519Key, signature: await alice.sign("after storage") };
"""
    )
    assert stored["extractable"] is False
    assert stored["identityExtractable"] is False
    assert stored["identity"] == identity_b64
    assert converse(ts, vz, random.Random(4), rounds=6) > 5


def _parts(message: tuple[int, str]) -> tuple[int, bytes]:
    return message[0], unb64(message[1])


def _flip(body: str, position: int) -> str:
    raw = bytearray(unb64(body))
    raw[position] ^= 0x01
    return b64(bytes(raw))


def test_tampered_olm_messages_are_refused_with_typed_errors(harness: Harness) -> None:
    bob = vodozemac.Account()
    bob.generate_one_time_keys(1)
    harness.run(
        """
const alice = await E.OlmAccount.create();
O.set("ts", await alice.createOutboundSession(arg.identity, arg.oneTimeKey));
return alice.curve25519Key;
""",
        {
            "identity": bob.curve25519_key.to_base64(),
            "oneTimeKey": next(iter(bob.one_time_keys.values())).to_base64(),
        },
    )
    ts = TsPeer(harness, "ts")
    first = ts.encrypt([b"hello"])
    pre_key = vodozemac.AnyOlmMessage.from_parts(*_parts(first[0])).to_pre_key()
    alice_identity = vodozemac.Curve25519PublicKey.from_base64(
        harness.run('return O.get("ts").pickle().sessionKeys.identityKey;')
    )
    session, _ = bob.create_inbound_session(alice_identity, pre_key)
    vz = VzPeer(session)
    [good] = vz.encrypt([b"the real message"])
    body_length = len(unb64(good[1]))
    tampered = [
        (1, _flip(good[1], body_length - 9)),  # last ciphertext byte
        (1, _flip(good[1], body_length - 1)),  # MAC
        (1, _flip(good[1], 5)),  # ratchet key: a new chain whose MAC cannot verify
        (1, b64(b"\x04" + unb64(good[1])[1:])),  # version
        (1, b64(unb64(good[1])[:9])),  # truncated
        (1, ""),  # empty
        (1, "not base64!"),
        (0, good[1]),  # a normal message sent as a pre-key message
        (7, good[1]),  # unknown type
    ]
    got = ts.decrypt(tampered)
    assert [r.get("error") for r in got] == [
        "MacError",
        "MacError",
        "MacError",
        "VersionError",
        "TruncatedError",
        "TruncatedError",
        "Base64Error",
        "MalformedError",
        "MalformedError",
    ], got
    assert all(r["typed"] for r in got)
    assert ts.decrypt([good]) == [{"ok": b64(b"the real message")}]
    [replay] = ts.decrypt([good])
    assert replay["error"] == "MissingMessageKeyError"

    # vodozemac refuses the browser's tampered messages too.
    [mine] = ts.encrypt([b"to vodozemac"])
    with pytest.raises(vodozemac.OlmDecryptionException):
        vz.decrypt([(1, _flip(mine[1], len(unb64(mine[1])) - 3))])
    assert vz.decrypt([mine]) == [b"to vodozemac"]


def test_pre_key_messages_for_someone_else_are_refused(harness: Harness) -> None:
    keys = harness.run(
        """
const bob = await E.OlmAccount.create();
await bob.generateOneTimeKeys(1);
O.set("bob", bob);
return { identity: bob.curve25519Key, oneTimeKeys: bob.oneTimeKeys() };
"""
    )
    alice, mallory = vodozemac.Account(), vodozemac.Account()
    stranger = vodozemac.Account()
    stranger.generate_one_time_keys(1)
    to_bob = alice.create_outbound_session(
        vodozemac.Curve25519PublicKey.from_base64(keys["identity"]),
        vodozemac.Curve25519PublicKey.from_base64(next(iter(keys["oneTimeKeys"].values()))),
    )
    to_stranger = alice.create_outbound_session(
        stranger.curve25519_key, next(iter(stranger.one_time_keys.values()))
    )
    message = to_bob.encrypt(b"for bob").to_parts()
    other = to_stranger.encrypt(b"for the stranger").to_parts()
    got = harness.run(
        """
const bob = O.get("bob");
const attempt = ([type, body], identity) =>
  T.outcome(async () => {
    const created = await bob.createInboundSession(identity, { type, body: E.decodeBase64(body) });
    return E.encodeBase64(created.plaintext);
  });
return [
  await attempt(arg.message, arg.mallory),
  await attempt(arg.other, arg.alice),
  await attempt(arg.message, arg.alice),
  await attempt(arg.message, arg.alice),
];
""",
        {
            "message": [message[0], b64(message[1])],
            "other": [other[0], b64(other[1])],
            "alice": alice.curve25519_key.to_base64(),
            "mallory": mallory.curve25519_key.to_base64(),
        },
    )
    assert got[0]["error"] == "SessionMismatchError"  # another identity key than the message's
    assert got[1]["error"] == "SessionMismatchError"  # a one-time key Bob never had
    assert got[2] == {"ok": b64(b"for bob")}
    assert got[3]["error"] == "SessionMismatchError"  # the one-time key is used up


def test_fallback_keys_work_both_ways_and_are_not_used_up(harness: Harness) -> None:
    keys = harness.run(
        """
const bob = await E.OlmAccount.create();
await bob.generateFallbackKey();
O.set("bob", bob);
const alice = await E.OlmAccount.create();
O.set("alice", alice);
return { bob: bob.curve25519Key, fallback: bob.fallbackKey(), alice: alice.curve25519Key };
"""
    )
    [(key_id, fallback)] = keys["fallback"].items()
    assert key_id == "AAAAAAAAAAA"
    # Two vodozemac devices start sessions to the browser's one fallback key; both are accepted.
    for text in (b"first user of the fallback key", b"second user of the same key"):
        sender = vodozemac.Account()
        outbound = sender.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_base64(keys["bob"]),
            vodozemac.Curve25519PublicKey.from_base64(fallback),
        )
        message_type, body = outbound.encrypt(text).to_parts()
        got = harness.run(
            """
const message = { type: arg.type, body: E.decodeBase64(arg.body) };
const { plaintext } = await O.get("bob").createInboundSession(arg.identity, message);
return E.encodeBase64(plaintext);
""",
            {"type": message_type, "body": b64(body), "identity": sender.curve25519_key.to_base64()},
        )
        assert got == b64(text)

    # The browser starts a session to a vodozemac fallback key.
    carol = vodozemac.Account()
    carol.generate_fallback_key()
    [carol_fallback] = carol.fallback_key.values()
    [(message_type, body)] = harness.run(
        """
const s = await O.get("alice").createOutboundSession(arg.identity, arg.fallback);
const m = await s.encrypt(T.utf8("to a fallback key"));
return [[m.type, E.encodeBase64(m.body)]];
""",
        {"identity": carol.curve25519_key.to_base64(), "fallback": carol_fallback.to_base64()},
    )
    pre_key = vodozemac.AnyOlmMessage.from_parts(message_type, unb64(body)).to_pre_key()
    alice = vodozemac.Curve25519PublicKey.from_base64(keys["alice"])
    _, plaintext = carol.create_inbound_session(alice, pre_key)
    assert plaintext == b"to a fallback key"
