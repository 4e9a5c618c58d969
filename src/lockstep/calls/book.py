"""Every call one device knows of, by call id: where each arriving signal goes (messaging.md §14.3).

A signal for a call the device has not heard of starts one only if it is an ``offer``; anything else is
ignored with a reason. A device that is dialling or in a call answers a new call's offer ``busy`` —
except an offer from the very account it is dialling (glare, §14.9): of the two calls the one with the
lower call id goes on, on every device of both accounts, with no one deciding for the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lockstep.calls.machine import Action, AnswerAtOnce, Call, CallState, Ignored, Party, Role
from lockstep.calls.signals import Media, Offer, parse

BUSY_STATES = frozenset(
    {CallState.RINGING_OUT, CallState.CONNECTING, CallState.CONNECTED, CallState.RECONNECTING}
)


def peer_of(conversation: str, me: str) -> str | None:
    """The other account of a ``direct:a:b`` conversation (None for a note to oneself or a group)."""
    parts = conversation.split(":")
    if len(parts) != 3 or parts[0] != "direct" or me not in parts[1:]:
        return None
    other = parts[2] if parts[1] == me else parts[1]
    return None if other == me else other


@dataclass
class CallBook:
    me: Party
    calls: dict[str, Call] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return any(call.state in BUSY_STATES for call in self.calls.values())

    def dial(
        self, call_id: str, media: Media, sdp: str, peer_account: str, now: int
    ) -> tuple[Call, list[Action]]:
        call, actions = Call.dial(call_id, media, sdp, self.me, peer_account, now)
        self.calls[call_id] = call
        return call, actions

    def arrived(
        self, body: object, sender: Party, conversation: str, sent_at: int, now: int
    ) -> tuple[Call | None, list[Action]]:
        """A ``call`` envelope's body from ``sender`` (checked routing) in ``conversation``, written at
        ``sent_at``. Raises :class:`~lockstep.calls.errors.SignalError` for a malformed body."""
        signal = parse(body)
        peer_account = peer_of(conversation, self.me.account_id)
        if peer_account is None or sender.account_id not in (peer_account, self.me.account_id):
            return None, [Ignored("a call signal outside a direct conversation with its sender")]
        call = self.calls.get(signal.call_id)
        if call is not None:
            return call, call.receive(signal, sender, now)
        if not isinstance(signal, Offer):
            return None, [Ignored(f"{type(signal).__name__.lower()} for a call this device never saw")]
        rival = self._rival(signal, sender) if sender.account_id == peer_account else None
        if rival is not None and glare_winner(rival.call_id, signal.call_id) == rival.call_id:
            return None, [Ignored("an offer that lost the glare to our own call to the same account")]
        busy = any(c.state in BUSY_STATES for c in self.calls.values() if c is not rival)
        call, actions = Call.from_offer(signal, sender, self.me, peer_account, now, sent_at, busy=busy)
        self.calls[signal.call_id] = call
        if rival is not None and rival.role is Role.CALLER and call.state is CallState.RINGING_IN:
            actions.append(AnswerAtOnce(rival.call_id))
        return call, actions

    def _rival(self, offer: Offer, sender: Party) -> Call | None:
        """Our account's call to the sender's account that nobody answered yet, if there is one: this
        device dialling (``ringing-out``), or another device of ours (an unanswered ``elsewhere``)."""
        return next(
            (
                c
                for c in self.calls.values()
                if c.peer_account == sender.account_id
                and c.call_id != offer.call_id
                and (
                    (c.role is Role.CALLER and c.state is CallState.RINGING_OUT)
                    or (c.role is Role.OBSERVER and c.state is CallState.ELSEWHERE and c.answerer is None)
                )
            ),
            None,
        )


def glare_winner(ours: str, theirs: str) -> str:
    """Of two calls two accounts dialled to each other at once, the one that goes on: the lower call id
    (compared character by character; call ids are ASCII), which both sides compute alike (§14.9)."""
    return min(ours, theirs)
