"""A Hypothesis state machine over Olm delivery: sends from either side, deliveries in any order,
duplicates and long-held messages. Three conversations run the same schedule:

  ts_alice: browser Alice ⇄ vodozemac Bob      ts_bob: vodozemac Alice ⇄ browser Bob
  reference: vodozemac Alice ⇄ vodozemac Bob

Whether a delivery succeeds depends only on the schedule (chains, indexes, limits), never on the keys, so
all three must agree on every outcome, and every success must give back the plaintext that was sent.
"""

from __future__ import annotations

from collections import Counter

import pytest
import vodozemac
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from .harness import Harness, b64, unb64

pytestmark = pytest.mark.browser

CONVERSATIONS = ("ts_alice", "ts_bob", "reference")
OUTCOMES: Counter[str] = Counter()
BROWSER_SIDE = {"ts_alice": "alice", "ts_bob": "bob"}

CREATE = """
const alice = await E.OlmAccount.create();
const bob = await E.OlmAccount.create();
await bob.generateOneTimeKeys(1);
O.set("sm_alice_account", alice);
O.set("sm_bob_account", bob);
O.set("ts_alice", await alice.createOutboundSession(arg.bobIdentity, arg.bobOneTimeKey));
const bobOneTimeKey = Object.values(bob.oneTimeKeys())[0];
return { alice: alice.curve25519Key, bob: bob.curve25519Key, bobOneTimeKey };
"""

DECRYPT = """
const body = E.decodeBase64(arg.body);
if (arg.create) {
  return await T.outcome(async () => {
    const account = O.get("sm_bob_account");
    const { session, plaintext } = await account.createInboundSession(arg.identity, { type: arg.type, body });
    O.set("ts_bob", session);
    return E.encodeBase64(plaintext);
  });
}
const session = O.get(arg.session);
return await T.outcome(async () => E.encodeBase64(await session.decrypt({ type: arg.type, body })));
"""


def vodozemac_error_name(text: str) -> str:
    """Our error class for a vodozemac decryption failure, from its message."""
    for fragment, name in (
        ("can't be created", "MissingMessageKeyError"),
        ("message gap was too big", "MessageGapError"),
        ("invalid MAC", "MacError"),
        ("one-time key", "SessionMismatchError"),
    ):
        if fragment in text:
            return name
    return text


class OlmDelivery(RuleBasedStateMachine):
    harness: Harness

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[tuple[str, str], vodozemac.Session] = {}
        self.plaintexts: dict[str, list[bytes]] = {"alice": [], "bob": []}
        self.bodies: dict[str, dict[str, list[tuple[int, str]]]] = {
            conv: {"alice": [], "bob": []} for conv in CONVERSATIONS
        }
        self.browser_bob_ready = False
        self.read: dict[str, set[int]] = {"alice": set(), "bob": set()}

    @initialize()
    def start(self) -> None:
        # Bob's accounts: vodozemac for ts_alice and reference; the browser's for ts_bob.
        vz_bob_for_ts, vz_bob_ref = vodozemac.Account(), vodozemac.Account()
        for account in (vz_bob_for_ts, vz_bob_ref):
            account.generate_one_time_keys(1)
        keys = self.harness.run(
            CREATE,
            {
                "bobIdentity": vz_bob_for_ts.curve25519_key.to_base64(),
                "bobOneTimeKey": next(iter(vz_bob_for_ts.one_time_keys.values())).to_base64(),
            },
        )
        self.ts_alice_identity = vodozemac.Curve25519PublicKey.from_base64(keys["alice"])
        self.bob_accounts = {"ts_alice": vz_bob_for_ts, "reference": vz_bob_ref}
        vz_alice_for_ts, vz_alice_ref = vodozemac.Account(), vodozemac.Account()
        self.alice_accounts = {"ts_bob": vz_alice_for_ts, "reference": vz_alice_ref}
        self.sessions[("ts_bob", "alice")] = vz_alice_for_ts.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_base64(keys["bob"]),
            vodozemac.Curve25519PublicKey.from_base64(keys["bobOneTimeKey"]),
        )
        self.sessions[("reference", "alice")] = vz_alice_ref.create_outbound_session(
            vz_bob_ref.curve25519_key, next(iter(vz_bob_ref.one_time_keys.values()))
        )
        # Bob needs a session before he can send: Alice's first message is delivered at once.
        self.send("alice", [b"hello"])
        self.deliver_to("bob", 0)

    def encrypt(self, conv: str, sender: str, plaintexts: list[bytes]) -> list[tuple[int, str]]:
        if BROWSER_SIDE.get(conv) == sender:
            return self.harness.olm_encrypt(conv, plaintexts)
        session = self.sessions[(conv, sender)]
        messages = []
        for plaintext in plaintexts:
            message_type, body = session.encrypt(plaintext).to_parts()
            messages.append((message_type, b64(body)))
        return messages

    def decrypt(self, conv: str, receiver: str, message: tuple[int, str]) -> tuple[str, str]:
        message_type, body = message
        if BROWSER_SIDE.get(conv) == receiver:
            create = conv == "ts_bob" and not self.browser_bob_ready
            identity = self.alice_accounts["ts_bob"].curve25519_key.to_base64()
            result = self.harness.run(
                DECRYPT,
                {"session": conv, "type": message_type, "body": body, "create": create, "identity": identity},
            )
            if create and "ok" in result:
                self.browser_bob_ready = True
            if "ok" in result:
                return "ok", result["ok"]
            assert result["typed"], result
            return "error", result["error"]
        key = (conv, receiver)
        try:
            if key not in self.sessions:
                sender_identity = (
                    self.ts_alice_identity if conv == "ts_alice" else self.alice_accounts[conv].curve25519_key
                )
                pre_key = vodozemac.AnyOlmMessage.from_parts(message_type, unb64(body)).to_pre_key()
                session, plaintext = self.bob_accounts[conv].create_inbound_session(sender_identity, pre_key)
                self.sessions[key] = session
            else:
                plaintext = self.sessions[key].decrypt(
                    vodozemac.AnyOlmMessage.from_parts(message_type, unb64(body))
                )
        except (vodozemac.OlmDecryptionException, vodozemac.SessionCreationException) as error:
            return "error", vodozemac_error_name(str(error))
        return "ok", b64(plaintext)

    def send(self, sender: str, plaintexts: list[bytes]) -> None:
        types = set()
        for conv in CONVERSATIONS:
            messages = self.encrypt(conv, sender, plaintexts)
            self.bodies[conv][sender].extend(messages)
            types.add(tuple(t for t, _ in messages))
        assert len(types) == 1, types  # pre-key vs normal is decided the same way everywhere
        self.plaintexts[sender].extend(plaintexts)

    def deliver_to(self, receiver: str, number: int) -> None:
        sender = "alice" if receiver == "bob" else "bob"
        outcomes = {
            conv: self.decrypt(conv, receiver, self.bodies[conv][sender][number]) for conv in CONVERSATIONS
        }
        assert len(set(outcomes.values())) == 1, outcomes  # same success, or the same error
        for kind, value in outcomes.values():
            if kind == "ok":
                assert value == b64(self.plaintexts[sender][number])
        kind, value = outcomes["reference"]
        OUTCOMES[kind] += 1
        if kind == "error":
            OUTCOMES[value] += 1
        self.read[receiver].add(number)

    @rule(
        sender=st.sampled_from(["alice", "bob"]), sizes=st.lists(st.integers(0, 40), min_size=1, max_size=3)
    )
    def send_messages(self, sender: str, sizes: list[int]) -> None:
        start = len(self.plaintexts[sender])
        self.send(sender, [f"{sender} {start + i} ".encode() + b"." * size for i, size in enumerate(sizes)])

    @rule(sender=st.sampled_from(["alice", "bob"]))
    def send_burst(self, sender: str) -> None:
        """More messages than the 40 skipped keys a chain keeps."""
        start = len(self.plaintexts[sender])
        self.send(sender, [f"{sender} burst {start + i}".encode() for i in range(42)])

    @rule(turns=st.integers(1, 4))
    def ping_pong(self, turns: int) -> None:
        """Ratchet turns: each side answers the other's newest message (older chains get dropped after 5)."""
        for _ in range(turns):
            for sender, receiver in (("alice", "bob"), ("bob", "alice")):
                self.send(sender, [f"{sender} turn {len(self.plaintexts[sender])}".encode()])
                self.deliver_to(receiver, len(self.plaintexts[sender]) - 1)

    @rule(data=st.data(), receiver=st.sampled_from(["alice", "bob"]))
    def deliver(self, data: st.DataObject, receiver: str) -> None:
        """Any message the other side sent: new, late, or a duplicate of one already read."""
        sender = "alice" if receiver == "bob" else "bob"
        count = len(self.plaintexts[sender])
        if count:
            self.deliver_to(receiver, data.draw(st.integers(0, count - 1)))

    @rule(data=st.data(), receiver=st.sampled_from(["alice", "bob"]))
    def deliver_undelivered(self, data: st.DataObject, receiver: str) -> None:
        """A message not read yet, in any order."""
        sender = "alice" if receiver == "bob" else "bob"
        waiting = [n for n in range(len(self.plaintexts[sender])) if n not in self.read[receiver]]
        if waiting:
            self.deliver_to(receiver, data.draw(st.sampled_from(waiting)))

    @rule(data=st.data(), receiver=st.sampled_from(["alice", "bob"]))
    def deliver_newest(self, data: st.DataObject, receiver: str) -> None:
        sender = "alice" if receiver == "bob" else "bob"
        count = len(self.plaintexts[sender])
        if count:
            self.deliver_to(receiver, count - 1 - data.draw(st.integers(0, min(2, count - 1))))

    @invariant()
    def same_message_counts(self) -> None:
        for side in ("alice", "bob"):
            assert {len(self.bodies[conv][side]) for conv in CONVERSATIONS} == {len(self.plaintexts[side])}


def test_olm_delivery_state_machine(harness: Harness) -> None:
    OlmDelivery.harness = harness
    run_state_machine_as_test(
        OlmDelivery,
        settings=settings(
            max_examples=80,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
    # The schedules reach both outcomes: reads (in and out of order) and refusals (duplicates, dropped keys).
    assert OUTCOMES["ok"] > 100 and OUTCOMES["MissingMessageKeyError"] > 10, OUTCOMES
    assert OUTCOMES["MacError"] > 0, OUTCOMES  # a message whose chain was dropped
