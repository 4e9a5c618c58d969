"""One call across every device of two accounts (docs/protocol/messaging.md §14.3-14.4): the caller's
devices and the callee's devices each run a :class:`Call`, and every signal one sends reaches every
device of the peer account and every other device of its own, in order, as the messenger sends it."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calls_samples import sdp
from lockstep.calls.errors import CallStateError
from lockstep.calls.machine import (
    RING_GRACE_MS,
    RING_MS,
    TRANSITIONS,
    Action,
    Call,
    CallState,
    Ended,
    Ignored,
    Outcome,
    Party,
    RemoteDescription,
    Send,
)
from lockstep.calls.signals import Busy, Candidate, Hangup, HangupReason, Media, Offer

CALL_ID = "k" * 22
ALICE, BOB = "alice-account", "bob-account"


@dataclass
class Network:
    """Devices of two accounts; a sent signal is queued for the peer's devices and the sender's others."""

    devices: list[Party]
    calls: dict[Party, Call] = field(default_factory=dict)
    ended: dict[Party, Ended] = field(default_factory=dict)
    ignored: list[tuple[Party, str]] = field(default_factory=list)
    remote: dict[Party, list[RemoteDescription]] = field(default_factory=dict)
    now: int = 1_000_000
    busy: set[Party] = field(default_factory=set)
    queue: deque[tuple[Party, Party, Send]] = field(default_factory=deque)

    def run(self, sender: Party, actions: list[Action]) -> None:
        """Carry out ``sender``'s actions, then deliver what is queued, first queued first (the server
        queues one send for every target device in one transaction)."""
        self._carry_out(sender, actions)
        while self.queue:
            self.deliver(*self.queue.popleft())

    def _carry_out(self, sender: Party, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Ended):
                assert sender not in self.ended, "a call ends once per device"
                self.ended[sender] = action
            elif isinstance(action, Ignored):
                self.ignored.append((sender, action.reason))
            elif isinstance(action, RemoteDescription):
                self.remote.setdefault(sender, []).append(action)
            elif isinstance(action, Send):
                self.queue.extend((d, sender, action) for d in self.devices if d != sender)

    def deliver(self, device: Party, sender: Party, send: Send) -> None:
        peer = BOB if device.account_id == ALICE else ALICE
        call = self.calls.get(device)
        if call is None:
            assert isinstance(send.signal, Offer), "the offer is the first signal every device gets"
            call, actions = Call.from_offer(
                send.signal, sender, device, peer, self.now, self.now, busy=device in self.busy
            )
            self.calls[device] = call
        else:
            actions = call.receive(send.signal, sender, self.now)
        self._carry_out(device, actions)

    def dial(self, device: Party, media: Media = Media.AUDIO) -> Call:
        call, actions = Call.dial(CALL_ID, media, sdp(media.value), device, BOB, self.now)
        self.calls[device] = call
        self.run(device, actions)
        return call

    def act(self, device: Party, name: str, *args: object) -> None:
        self.run(device, getattr(self.calls[device], name)(*args, self.now))

    def tick(self, ms: int) -> None:
        self.now += ms
        for device, call in list(self.calls.items()):
            self.run(device, call.handle_timer(self.now))

    def states(self) -> dict[str, CallState]:
        return {d.device_id: c.state for d, c in self.calls.items()}

    def summary(self, device: Party) -> str:
        return self.ended[device].record.summary()


alice_laptop, alice_phone = Party(ALICE, "alice-laptop"), Party(ALICE, "alice-phone")
bob_phone, bob_laptop, bob_tablet = (
    Party(BOB, "bob-phone"),
    Party(BOB, "bob-laptop"),
    Party(BOB, "bob-tablet"),
)
EVERYONE = [alice_laptop, alice_phone, bob_phone, bob_laptop, bob_tablet]


def test_every_callee_device_rings_and_the_callers_other_device_shows_the_call_elsewhere() -> None:
    net = Network(EVERYONE)
    net.dial(alice_laptop)
    assert net.states() == {
        "alice-laptop": CallState.RINGING_OUT,
        "alice-phone": CallState.ELSEWHERE,
        "bob-phone": CallState.RINGING_IN,
        "bob-laptop": CallState.RINGING_IN,
        "bob-tablet": CallState.RINGING_IN,
    }


def test_the_first_answer_wins_and_the_other_devices_stop_ringing() -> None:
    net = Network(EVERYONE)
    net.dial(alice_laptop)
    net.act(bob_laptop, "answer", sdp())
    assert net.states()["bob-phone"] is CallState.ELSEWHERE
    assert net.states()["bob-tablet"] is CallState.ELSEWHERE
    assert net.states()["alice-laptop"] is CallState.CONNECTING
    assert [r.kind for r in net.remote[alice_laptop]] == ["answer"]
    # a second answer from another device (it raced) is ignored by the caller
    late = Call.from_offer(
        Offer(CALL_ID, Media.AUDIO, sdp()),
        alice_laptop,
        Party(BOB, "bob-old"),
        ALICE,
        net.now,
        net.now,
        False,
    )[0]
    net.run(Party(BOB, "bob-old"), late.answer(sdp(), net.now))
    assert net.states()["alice-laptop"] is CallState.CONNECTING
    assert any("not in this call" in reason for _, reason in net.ignored)
    net.act(alice_laptop, "media_connected")
    net.act(bob_laptop, "media_connected")
    net.tick(180_000)
    net.act(alice_laptop, "hang_up")
    assert set(net.ended) == set(EVERYONE)
    assert {d.device_id: net.summary(d) for d in EVERYONE} == dict.fromkeys(
        ["alice-laptop", "alice-phone", "bob-phone", "bob-laptop", "bob-tablet"], "voice call, 3 min"
    )
    assert [d.device_id for d in EVERYONE if net.ended[d].record.here] == ["alice-laptop", "bob-laptop"]


def test_decline_on_one_device_declines_everywhere() -> None:
    net = Network(EVERYONE)
    net.dial(alice_laptop, Media.VIDEO)
    net.act(bob_tablet, "decline")
    assert set(net.ended) == set(EVERYONE)
    assert {net.summary(d) for d in EVERYONE} == {"video call, declined"}


def test_no_answer_for_45_seconds_is_a_missed_call() -> None:
    net = Network(EVERYONE)
    net.dial(alice_laptop)
    net.tick(RING_MS - 1)
    assert not net.ended
    net.tick(1)
    assert net.summary(alice_laptop) == "voice call, no answer"
    assert net.summary(alice_phone) == "voice call, no answer"
    assert {net.summary(d) for d in (bob_phone, bob_laptop, bob_tablet)} == {"missed voice call"}


def test_a_callee_whose_hang_up_was_lost_stops_ringing_after_the_grace() -> None:
    net = Network([alice_laptop, bob_phone])
    net.dial(alice_laptop)
    net.devices = [bob_phone]  # the caller vanishes: nothing more reaches the callee
    net.tick(RING_MS + RING_GRACE_MS)
    assert net.summary(bob_phone) == "missed voice call"


def test_an_offer_that_waited_in_the_queue_past_the_ringing_time_does_not_ring() -> None:
    offer = Offer(CALL_ID, Media.AUDIO, sdp())
    call, actions = Call.from_offer(
        offer, alice_laptop, bob_phone, ALICE, now=60_000, sent_at=10_000, busy=False
    )
    assert call.state is CallState.ENDED
    assert [a.record.summary() for a in actions if isinstance(a, Ended)] == ["missed voice call"]


def test_a_callee_already_in_a_call_answers_busy() -> None:
    net = Network(EVERYONE, busy={bob_phone})
    net.dial(alice_laptop)
    assert net.summary(alice_laptop) == "voice call, busy"
    assert {net.summary(d) for d in (bob_laptop, bob_tablet)} == {"voice call, busy"}


def test_cancel_before_answer_is_a_missed_call_for_the_callee() -> None:
    net = Network(EVERYONE)
    net.dial(alice_laptop)
    net.act(alice_laptop, "hang_up")
    assert net.summary(alice_laptop) == "cancelled voice call"
    assert net.summary(bob_tablet) == "missed voice call"


def test_media_that_never_connects_fails_both_sides_with_a_hang_up() -> None:
    net = Network([alice_laptop, bob_phone])
    net.dial(alice_laptop)
    net.act(bob_phone, "answer", sdp())
    net.tick(30_000)
    assert net.summary(alice_laptop) == "voice call failed"
    assert net.summary(bob_phone) == "voice call failed"


def test_reconnecting_and_renegotiation_between_the_two_devices_in_the_call() -> None:
    net = Network([alice_laptop, alice_phone, bob_phone])
    net.dial(alice_laptop)
    net.act(bob_phone, "answer", sdp())
    for device in (alice_laptop, bob_phone):
        net.act(device, "media_connected")
    net.act(alice_laptop, "media_interrupted")
    assert net.states()["alice-laptop"] is CallState.RECONNECTING
    net.act(alice_laptop, "renegotiate", sdp("video"), Media.VIDEO)  # an ICE restart, now with video
    assert net.remote[bob_phone][-1].kind == "offer"
    assert net.calls[bob_phone].media is Media.VIDEO
    net.act(bob_phone, "answer", sdp("video"))
    assert [r.kind for r in net.remote[alice_laptop]] == ["answer", "answer"]
    net.act(alice_laptop, "media_connected")
    assert net.states()["alice-laptop"] is CallState.CONNECTED
    net.run(bob_phone, net.calls[bob_phone].local_candidates((Candidate("", "0", 0),)))
    net.act(bob_phone, "hang_up")
    assert net.summary(alice_phone) == "video call, 0 s"


def test_signals_from_outsiders_or_for_the_wrong_moment_are_ignored_with_a_reason() -> None:
    call, _ = Call.dial(CALL_ID, Media.AUDIO, sdp(), alice_laptop, BOB, 0)
    assert call.receive(Hangup(CALL_ID, HangupReason.ENDED), alice_phone, 1) == [
        Ignored("a signal from another device of ours while dialling")
    ]
    assert call.receive(Busy(CALL_ID), bob_phone, 2)[0].record.outcome is Outcome.BUSY  # type: ignore[union-attr]
    assert isinstance(call.receive(Busy(CALL_ID), bob_phone, 3)[0], Ignored)
    with pytest.raises(CallStateError):
        call.answer(sdp(), 4)
    with pytest.raises(CallStateError):
        call.hang_up(4)


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(EVERYONE),
        st.sampled_from(
            ["answer", "decline", "hang_up", "media_connected", "media_interrupted", "media_failed", "tick"]
        ),
    ),
    max_size=25,
)


@settings(max_examples=300)
@given(EVENTS)
def test_any_sequence_of_presses_keeps_the_devices_consistent(events: list[tuple[Party, str]]) -> None:
    """Whatever people press in whatever order: states only move along TRANSITIONS, at most one device of
    the callee ever takes part in the media, and once the caller's call ended every device's did."""
    net = Network(EVERYONE)
    net.dial(alice_laptop)
    for device, name in events:
        if name == "tick":
            net.tick(20_000)
            continue
        call = net.calls[device]
        before = (call.state, list(call.history))
        try:
            net.act(device, name, sdp()) if name == "answer" else net.act(device, name)
        except CallStateError:  # a press the state does not allow changes nothing
            assert (call.state, call.history) == before
    for call in net.calls.values():
        path = [*call.history, call.state]
        assert all(b in TRANSITIONS[a] for a, b in itertools.pairwise(path))
    in_media = [d for d, c in net.calls.items() if d.account_id == BOB and c.answerer == d]
    assert len(in_media) <= 1
    if net.calls[alice_laptop].state is CallState.ENDED:
        assert set(net.ended) == set(EVERYONE)
