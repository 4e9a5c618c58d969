"""Glare: two accounts dial each other at the same moment (docs/protocol/messaging.md §14.9). Each device
runs a :class:`CallBook`; every send is queued for every device of the peer account and every other
device of the sender, each device's queue in order (as the server keeps it) but the queues read in any
order Hypothesis picks. Whatever the order, one call goes on — the one with the lower call id — and the
other gives way on every device, leaving no entry."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from calls_samples import sdp
from lockstep.calls.book import CallBook, glare_winner
from lockstep.calls.machine import Action, AnswerAtOnce, CallState, Ended, Outcome, Party, Send
from lockstep.calls.signals import Media, to_body

ALICE, BOB = "alice-account", "bob-account"
NOW = 1_000_000
call_ids = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=22, max_size=22
)


@dataclass
class Devices:
    """Both accounts' devices, each with its book and its queue of (sender, signal body)."""

    parties: list[Party]
    books: dict[Party, CallBook] = field(default_factory=dict)
    queues: dict[Party, deque[tuple[Party, dict[str, object]]]] = field(default_factory=dict)
    ended: dict[Party, list[Ended]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for party in self.parties:
            self.books[party] = CallBook(party)
            self.queues[party] = deque()
            self.ended[party] = []

    def carry_out(self, party: Party, call_id: str, actions: list[Action]) -> None:
        """What an adapter does: sends go to every other device, a glare answers the winning call."""
        book = self.books[party]
        for action in actions:
            if isinstance(action, Send):
                for other in self.parties:
                    if other != party:
                        self.queues[other].append((party, to_body(action.signal)))
            elif isinstance(action, Ended):
                self.ended[party].append(action)
            elif isinstance(action, AnswerAtOnce):
                ours = book.calls[action.replacing]
                self.carry_out(party, ours.call_id, ours.give_way(NOW))
                self.carry_out(party, call_id, book.calls[call_id].answer(sdp(), NOW))

    def dial(self, party: Party, call_id: str) -> None:
        peer = BOB if party.account_id == ALICE else ALICE
        _call, actions = self.books[party].dial(call_id, Media.AUDIO, sdp(), peer, NOW)
        self.carry_out(party, call_id, actions)

    def deliver(self, party: Party) -> None:
        sender, body = self.queues[party].popleft()
        conversation = f"direct:{ALICE}:{BOB}"
        call, actions = self.books[party].arrived(body, sender, conversation, NOW, NOW)
        if call is not None:
            self.carry_out(party, call.call_id, actions)

    def state(self, party: Party, call_id: str) -> CallState | None:
        call = self.books[party].calls.get(call_id)
        return call.state if call is not None else None


@settings(max_examples=300, deadline=None)
@given(
    ids=st.lists(call_ids, min_size=2, max_size=2, unique=True),
    alice_devices=st.integers(1, 3),
    bob_devices=st.integers(1, 3),
    order=st.lists(st.integers(0, 5), max_size=200),
)
def test_whatever_the_delivery_order_the_lower_call_id_goes_on_and_the_other_leaves_nothing(
    ids: list[str], alice_devices: int, bob_devices: int, order: list[int]
) -> None:
    alices = [Party(ALICE, f"alice-{n}") for n in range(alice_devices)]
    bobs = [Party(BOB, f"bob-{n}") for n in range(bob_devices)]
    devices = Devices([*alices, *bobs])
    alice_call, bob_call = ids
    devices.dial(alices[0], alice_call)  # both dial before either hears of the other's call
    devices.dial(bobs[0], bob_call)
    picks = iter(order)
    for _ in range(10_000):
        waiting = [p for p in devices.parties if devices.queues[p]]
        if not waiting:
            break
        devices.deliver(waiting[next(picks, 0) % len(waiting)])
    assert not any(devices.queues.values())

    winner = glare_winner(alice_call, bob_call)
    loser = bob_call if winner == alice_call else alice_call
    winning_dialler, losing_dialler = (alices[0], bobs[0]) if winner == alice_call else (bobs[0], alices[0])
    # The winner's dialler and the loser's dialler are in the one call (the loser's answered it) ...
    assert devices.state(winning_dialler, winner) is CallState.CONNECTING
    assert devices.state(losing_dialler, winner) is CallState.CONNECTING
    assert devices.books[winning_dialler].calls[winner].answerer == losing_dialler
    # ... every other device shows it elsewhere (nobody is left ringing) ...
    for party in devices.parties:
        if party not in (winning_dialler, losing_dialler):
            assert devices.state(party, winner) is CallState.ELSEWHERE, party
    # ... and the losing call is over wherever it was known, and leaves no entry anywhere.
    for party in devices.parties:
        assert devices.state(party, loser) in (None, CallState.ENDED), party
        for ended in devices.ended[party]:
            assert ended.record.call_id == loser and ended.record.outcome is Outcome.REPLACED
            assert not ended.record.leaves_entry
    assert devices.books[losing_dialler].calls[loser].record is not None


def test_an_offer_from_the_account_we_are_dialling_is_not_answered_busy() -> None:
    """Before glare handling both sides answered the other's offer busy and both calls ended."""
    devices = Devices([Party(ALICE, "alice"), Party(BOB, "bob")])
    devices.dial(devices.parties[0], "a" * 22)
    devices.dial(devices.parties[1], "b" * 22)
    while any(devices.queues.values()):
        for party in devices.parties:
            if devices.queues[party]:
                devices.deliver(party)
    assert devices.state(devices.parties[0], "a" * 22) is CallState.CONNECTING
    assert devices.state(devices.parties[1], "a" * 22) is CallState.CONNECTING
    sent = [body["type"] for queue in devices.queues.values() for _, body in queue]
    assert "busy" not in sent


def test_a_device_in_a_call_still_answers_a_third_account_busy() -> None:
    """Glare is only between the two accounts dialling each other; anyone else still hears busy."""
    alice, carol = Party(ALICE, "alice"), Party("carol-account", "carol")
    book = CallBook(alice)
    book.dial("a" * 22, Media.AUDIO, sdp(), BOB, NOW)
    offer = {"call_id": "c" * 22, "type": "offer", "media": "audio", "sdp": sdp()}
    conversation = f"direct:{ALICE}:carol-account"
    call, actions = book.arrived(offer, carol, conversation, NOW, NOW)
    assert call is not None and call.state is CallState.ENDED
    assert [type(a).__name__ for a in actions] == ["Send", "Ended"]
    assert isinstance(actions[0], Send) and to_body(actions[0].signal)["type"] == "busy"
