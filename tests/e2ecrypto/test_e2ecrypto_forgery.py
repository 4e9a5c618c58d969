"""Forged Olm messages against the browser's Olm (web/src/e2e/olmSession.ts) and the messenger's session
choice (web/src/messenger/olmDevice.ts): they change nothing, and what they cost is bounded.

A forger needs no key to make a receiver work: a normal message with a random ciphertext and MAC, at the
largest chain gap (2000) on a chain the receiver knows, or under a ratchet key it has never seen.
docs/benchmarks.md has the times (bench/olm_forgery.py); here the work is counted in chain steps.
"""

from __future__ import annotations

from typing import Any

import pytest

from .harness import Harness

pytestmark = pytest.mark.browser

# Alice's browser session with Bob (both in the page): Alice starts, Bob answers once, so Alice's
# sending chain is inactive (she has not replied) and she holds one receiving chain (Bob's ratchet key).
SESSION = """
const alice = await E.OlmAccount.create(), bob = await E.OlmAccount.create();
await bob.generateOneTimeKeys(1);
const session = await alice.createOutboundSession(bob.curve25519Key, Object.values(bob.oneTimeKeys())[0]);
const first = await session.encrypt(T.utf8("hi"));
const preKey = E.PreKeyMessage.decode(first.body);
const { session: bobSession } = await bob.createInboundSession(alice.curve25519Key, preKey);
const reply = await bobSession.encrypt(T.utf8("hello"));
await session.decrypt(reply);
O.set("alice", session);
return E.encodeBase64(E.decodeOlmMessage(reply).message.ratchetKey);
"""

# A forged normal message: random ciphertext and MAC under the given ratchet key and chain index.
FORGE = """
const forge = (ratchetKey, index) => ({
  type: 1,
  body: new E.OlmNormalMessage(ratchetKey, index, crypto.getRandomValues(new Uint8Array(32)))
    .withMac(crypto.getRandomValues(new Uint8Array(8))).encode(),
});
"""

# The session as stored: its pickle as JSON, with the CryptoKey (if any) named by identity.
SNAPSHOT = """
const keys = [];
const snapshot = (session) => JSON.stringify(session.pickle(), (name, value) => {
  if (!(value instanceof CryptoKey)) return value;
  if (!keys.includes(value)) keys.push(value);
  return `CryptoKey#${keys.indexOf(value)}`;
});
"""


def test_a_forged_message_leaves_the_session_byte_identical(harness: Harness) -> None:
    """vodozemac advances a copy of its ratchet and keeps it only once the MAC verified; before the fix
    the browser activated its sending chain (a new ratchet key) for a message that then failed."""
    known = harness.run(SESSION)
    out = harness.run(
        FORGE
        + SNAPSHOT
        + """
const session = O.get("alice");
const before = snapshot(session);
const results = [];
for (const message of [
  forge(crypto.getRandomValues(new Uint8Array(32)), 0),      // an unknown ratchet key: a new chain
  forge(crypto.getRandomValues(new Uint8Array(32)), 2000),
  forge(E.decodeBase64(arg.known), 1),                        // the next index of the known chain
  forge(E.decodeBase64(arg.known), 2001),                     // the largest gap on it
]) results.push(await T.outcome(() => session.decrypt(message)));
return { before, after: snapshot(session), errors: results.map((r) => r.error) };
""",
        {"known": known},
    )
    assert out["errors"] == ["MacError"] * 4
    assert '"kind":"inactive"' in out["before"]
    assert out["after"] == out["before"]


# Five sessions between two messenger devices, each with a chain Alice knows (Bob answered on each).
DEVICES = """
const alice = await T.OlmDevice.create(), bob = await T.OlmDevice.create();
await bob.account.generateOneTimeKeys(5);
const ratchetKeys = [];
for (const oneTimeKey of Object.values(bob.account.oneTimeKeys())) {
  await alice.startOutbound(bob.identityKey, E.decodeBase64(oneTimeKey));
  const hello = await alice.encrypt(bob.identityKey, T.utf8("hi"));
  await bob.decrypt(alice.identityKey, hello.type, hello.body);
  const reply = await bob.encrypt(alice.identityKey, T.utf8("hello"));
  await alice.decrypt(bob.identityKey, reply.type, reply.body);
  ratchetKeys.push(E.encodeBase64(E.decodeOlmMessage(reply).message.ratchetKey));
}
O.set("alice", alice);
O.set("bob", bob);
return ratchetKeys;
"""


def forged_batch_steps(
    harness: Harness, ratchet_keys: list[str] | None, index: int, count: int
) -> dict[str, Any]:
    result: dict[str, Any] = harness.run(
        FORGE
        + """
const alice = O.get("alice"), bob = O.get("bob");
const errors = new Set();
const before = E.chainWork.steps;
for (let i = 0; i < arg.count; i++) {
  const random = () => crypto.getRandomValues(new Uint8Array(32));
  const key = arg.keys ? E.decodeBase64(arg.keys[i % arg.keys.length]) : random();
  const message = forge(key, arg.index);
  errors.add((await T.outcome(() => alice.decrypt(bob.identityKey, message.type, message.body))).error);
}
return { steps: E.chainWork.steps - before, errors: [...errors] };
""",
        {"keys": ratchet_keys, "index": index, "count": count},
    )
    return result


def test_forged_messages_on_known_chains_cost_one_walk_per_chain(harness: Harness) -> None:
    """Before: every forged message at gap 2000 was tried with all five sessions, 2000 steps each
    (10,000 per message). Now only the session that knows the ratchet key tries it, and the chain keys
    it derived are remembered for the next forgery on that chain."""
    ratchet_keys = harness.run(DEVICES)
    out = forged_batch_steps(harness, ratchet_keys, 2001, 50)
    assert out["errors"] == ["MacError"]
    # Five chains walked once (2000 steps each), then at most 50 steps per message from a checkpoint.
    assert out["steps"] <= 5 * 2000 + 50 * 50
    legit = harness.run(
        """
const alice = O.get("alice"), bob = O.get("bob");
const message = await bob.encrypt(alice.identityKey, T.utf8("still readable"));
return T.fromUtf8(await alice.decrypt(bob.identityKey, message.type, message.body));
"""
    )
    assert legit == "still readable"


def test_forged_messages_under_unknown_ratchet_keys_have_a_budget(harness: Harness) -> None:
    """Under a ratchet key no session knows, each session tried starts a chain at index 0: at the
    largest gap the budget lets two sessions try (before: all five, 10,000 steps per message)."""
    harness.run(DEVICES)
    out = forged_batch_steps(harness, None, 2000, 10)
    assert out["errors"] == ["MacError"]
    assert out["steps"] <= 10 * 2 * 2001
    small = forged_batch_steps(harness, None, 3, 10)
    assert small["steps"] == 10 * 5 * 3  # a small index is still tried with every session
