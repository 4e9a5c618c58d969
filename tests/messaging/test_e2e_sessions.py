"""Olm session choice under reordering, duplication and simultaneous session starts (Hypothesis).

Two devices talk through a network that delivers any in-flight message next, or delivers one twice.
Receivers drop duplicates by message id before decrypting (as the client does). Whatever the schedule,
every message is read exactly once with its exact plaintext, and both sides keep a working session.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lockstep.e2e.dedup import SeenMessages
from lockstep.e2e.errors import DecryptionError, LocalE2EError, NoSession
from lockstep.e2e.keys import OneTimeKey
from lockstep.e2e.olm import OlmCiphertext, OlmDevice, OlmType

MAX_IN_FLIGHT = 12


class Peer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.device = OlmDevice.create()
        self.published: list[OneTimeKey] = self.device.new_one_time_keys(20)
        self.seen = SeenMessages()
        self.read: list[str] = []

    def claim(self) -> bytes:
        key = self.published.pop(0)
        key.verify(self.device.signing_key)
        return key.key


class OlmPair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.peers = {"a": Peer("a"), "b": Peer("b")}
        self.ids = itertools.count()
        self.in_flight: list[tuple[str, str, OlmCiphertext, bytes]] = []
        self.sent: dict[str, list[str]] = {"a": [], "b": []}
        self.last_read: dict[str, OlmCiphertext] = {}

    @precondition(lambda self: len(self.in_flight) < MAX_IN_FLIGHT)
    @rule(sender=st.sampled_from("ab"))
    def send(self, sender: str) -> None:
        receiver = "b" if sender == "a" else "a"
        me, peer = self.peers[sender], self.peers[receiver]
        message_id = f"m{next(self.ids)}"
        plaintext = f"{message_id} from {sender}".encode()
        one_time_key = None if me.device.has_session(peer.device.identity_key) else peer.claim()
        ciphertext = me.device.encrypt(peer.device.identity_key, plaintext, one_time_key)
        self.in_flight.append((receiver, message_id, ciphertext, plaintext))
        self.sent[sender].append(message_id)

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0), duplicate=st.booleans())
    def deliver(self, pick: int, duplicate: bool) -> None:
        index = pick % len(self.in_flight)
        receiver, message_id, ciphertext, plaintext = self.in_flight[index]
        if not duplicate:
            del self.in_flight[index]
        me = self.peers[receiver]
        sender = self.peers["b" if receiver == "a" else "a"]
        if message_id in me.seen:
            return  # a duplicate, dropped before decrypting
        assert me.device.decrypt(sender.device.identity_key, ciphertext) == plaintext
        me.seen.add(message_id)
        me.read.append(message_id)
        self.last_read[receiver] = ciphertext

    @rule(receiver=st.sampled_from("ab"))
    def replay_is_refused(self, receiver: str) -> None:
        """Decrypting an already-read ciphertext again (bypassing dedup) fails; it never re-reads."""
        me = self.peers[receiver]
        sender = self.peers["b" if receiver == "a" else "a"]
        if receiver in self.last_read:
            with pytest.raises(DecryptionError):
                me.device.decrypt(sender.device.identity_key, self.last_read[receiver])

    @invariant()
    def exactly_once(self) -> None:
        for name, peer in self.peers.items():
            assert len(peer.read) == len(set(peer.read))
            other = "b" if name == "a" else "a"
            assert set(peer.read) <= set(self.sent[other])

    def teardown(self) -> None:
        # Deliver everything left: nothing is lost, whatever the order was.
        while self.in_flight:
            self.deliver(0, False)
        for name, peer in self.peers.items():
            other = "b" if name == "a" else "a"
            assert sorted(peer.read) == sorted(self.sent[other])


TestOlmPair = OlmPair.TestCase
TestOlmPair.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_pre_key_messages_until_the_peer_answers_then_normal() -> None:
    a, b = Peer("a"), Peer("b")
    first = a.device.encrypt(b.device.identity_key, b"1", b.claim())
    second = a.device.encrypt(b.device.identity_key, b"2")
    assert first.type is second.type is OlmType.PRE_KEY
    assert b.device.decrypt(a.device.identity_key, second) == b"2"  # out of order
    assert b.device.decrypt(a.device.identity_key, first) == b"1"
    reply = b.device.encrypt(a.device.identity_key, b"3")
    assert reply.type is OlmType.NORMAL
    assert a.device.decrypt(b.device.identity_key, reply) == b"3"
    assert a.device.encrypt(b.device.identity_key, b"4").type is OlmType.NORMAL


def test_without_a_session_or_key_encrypting_is_refused_and_unknown_messages_have_no_session() -> None:
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    with pytest.raises(LocalE2EError):
        a.device.encrypt(b.device.identity_key, b"x")
    message = a.device.encrypt(b.device.identity_key, b"x", b.claim())
    with pytest.raises(NoSession):
        c.device.decrypt(a.device.identity_key, message)  # not for c: c has no such one-time key


def test_pickles_round_trip_and_keep_working() -> None:
    a, b = Peer("a"), Peer("b")
    key = b"p" * 32
    b.device.decrypt(a.device.identity_key, a.device.encrypt(b.device.identity_key, b"1", b.claim()))
    a.device = OlmDevice.from_pickle(a.device.pickle(key), key)
    b.device = OlmDevice.from_pickle(b.device.pickle(key), key)
    assert b.device.decrypt(a.device.identity_key, a.device.encrypt(b.device.identity_key, b"2")) == b"2"
