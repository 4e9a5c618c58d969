"""One call on one device: a sans-I/O state machine (docs/protocol/messaging.md §14.3-14.4).

The adapter (aiortc in ``lockstep.client.calls``, WebRTC in ``web/src/calls``) feeds it what happened —
a signal that arrived, a button, the media connecting or breaking, the time — and carries out the
actions it returns: :class:`Send` a signal to the peer account (which reaches every device of the
peer and every other device of ours), apply a :class:`RemoteDescription` or :class:`RemoteCandidates`
to the peer connection, show the :class:`Ended` record. Time is a parameter (milliseconds of server
time); :meth:`Call.timer` says when :meth:`Call.handle_timer` is due.

Every state change goes through :data:`TRANSITIONS`, so nothing else can move a call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from lockstep.calls.errors import CallStateError
from lockstep.calls.signals import (
    Answer,
    Busy,
    Candidate,
    Candidates,
    Decline,
    Hangup,
    HangupReason,
    Media,
    Offer,
    Signal,
)

RING_MS = 45_000
"""How long a call rings before it is a missed call (the caller sends ``hangup`` ``no-answer``)."""
RING_GRACE_MS = 5_000
"""A callee stops ringing this much after the caller's timer, should the caller's hang-up be lost."""
CONNECT_MS = 30_000
"""How long media may take to connect after an answer, or to come back after it broke (ICE restart)."""


class Role(enum.StrEnum):
    CALLER = "caller"
    """This device dialled."""
    CALLEE = "callee"
    """This device was called (it rings)."""
    OBSERVER = "observer"
    """Another device of this account dialled: it shows "in a call on another device"."""


class CallState(enum.StrEnum):
    RINGING_OUT = "ringing-out"
    RINGING_IN = "ringing-in"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ELSEWHERE = "elsewhere"
    """Another device of this account has the call (the caller's other devices, and the callee's
    other devices once one answered)."""
    ENDED = "ended"


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    """Answered, then hung up by either side."""
    MISSED = "missed"
    """Rang here and nobody answered on any device (the caller cancelled or gave up)."""
    CANCELLED = "cancelled"
    """This account dialled and hung up before an answer."""
    NO_ANSWER = "no-answer"
    """This account dialled and nobody answered within :data:`RING_MS`."""
    DECLINED = "declined"
    """The callee declined (on any of its devices)."""
    BUSY = "busy"
    """A device of the callee was already in a call."""
    FAILED = "failed"
    """The media could not connect, or broke for good."""
    REPLACED = "replaced"
    """Both accounts dialled each other at once and this call gave way to the other (glare, §14.9):
    it leaves no entry, the call that went on does."""


TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.RINGING_OUT: frozenset({CallState.CONNECTING, CallState.ENDED}),
    CallState.RINGING_IN: frozenset({CallState.CONNECTING, CallState.ELSEWHERE, CallState.ENDED}),
    CallState.CONNECTING: frozenset({CallState.CONNECTED, CallState.ENDED}),
    CallState.CONNECTED: frozenset({CallState.RECONNECTING, CallState.ENDED}),
    CallState.RECONNECTING: frozenset({CallState.CONNECTED, CallState.ENDED}),
    CallState.ELSEWHERE: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}
"""Every state change a call can make (h11's style: one table, nothing else assigns a state)."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What a call leaves in the conversation, on every device that knew of it."""

    call_id: str
    media: Media
    outgoing: bool
    """Dialled by this account (from this device or another of ours)."""
    outcome: Outcome
    duration_ms: int
    """From the answer to the hang-up; 0 for a call never answered."""
    here: bool
    """Whether this device took part in the media (False: another device of this account did)."""

    @property
    def leaves_entry(self) -> bool:
        """Whether the conversation shows it (a call that gave way to its twin does not, §14.9)."""
        return self.outcome is not Outcome.REPLACED

    def summary(self) -> str:
        """The conversation entry: "missed voice call", "video call, 3 min"."""
        what = f"{self.media.value if self.media is Media.VIDEO else 'voice'} call"
        if self.outcome is Outcome.COMPLETED:
            seconds = round(self.duration_ms / 1000)
            length = f"{seconds} s" if seconds < 60 else f"{round(seconds / 60)} min"
            return f"{what}, {length}"
        return {
            Outcome.MISSED: f"missed {what}",
            Outcome.CANCELLED: f"cancelled {what}",
            Outcome.NO_ANSWER: f"{what}, no answer",
            Outcome.DECLINED: f"{what}, declined",
            Outcome.BUSY: f"{what}, busy",
            Outcome.FAILED: f"{what} failed",
            Outcome.REPLACED: f"{what}, replaced by the other side's call",
        }[self.outcome]


# --- actions for the adapter --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Send ``signal`` in a ``call`` envelope to the peer account (and our other devices)."""

    signal: Signal


@dataclass(frozen=True, slots=True)
class RemoteDescription:
    """Apply the peer's session description (``kind`` "offer" or "answer") to the peer connection;
    after an offer (a renegotiation: ICE restart, voice to video) answer it with :meth:`Call.answer`."""

    kind: str
    sdp: str
    media: Media


@dataclass(frozen=True, slots=True)
class RemoteCandidates:
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Ended:
    """The call is over here: stop ringing, close the media, show ``record``."""

    record: CallRecord


@dataclass(frozen=True, slots=True)
class AnswerAtOnce:
    """Answer this ringing call now, as if its Answer were pressed: this device was dialling the same
    peer, whose call won the glare (§14.9); ``replacing`` (the call id of ours) must first give way
    with :meth:`Call.give_way`."""

    replacing: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A signal that did not fit the call (wrong sender, wrong state): dropped, with the reason."""

    reason: str


Action = Send | RemoteDescription | RemoteCandidates | Ended | AnswerAtOnce | Ignored


@dataclass(frozen=True, slots=True)
class Party:
    """A device, by account and device id."""

    account_id: str
    device_id: str


@dataclass(slots=True)
class Call:
    """One call as one device sees it. Build with :meth:`dial` or :meth:`from_offer`."""

    call_id: str
    role: Role
    media: Media
    me: Party
    peer_account: str
    """The other account in the call."""
    caller: Party
    """The device that dialled."""
    state: CallState
    state_since: int
    remote_sdp: str = ""
    """The offer a ringing callee answers (its ``sdp``)."""
    answerer: Party | None = None
    """The device that answered, once one did."""
    answered_at: int | None = None
    record: CallRecord | None = None
    """How it ended, once it has."""
    history: list[CallState] = field(default_factory=list)

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def dial(
        cls, call_id: str, media: Media, sdp: str, me: Party, peer_account: str, now: int
    ) -> tuple[Call, list[Action]]:
        """This device calls ``peer_account`` with the local offer ``sdp``."""
        call = cls(call_id, Role.CALLER, media, me, peer_account, me, CallState.RINGING_OUT, now)
        return call, [Send(Offer(call_id, media, sdp))]

    @classmethod
    def from_offer(
        cls, offer: Offer, sender: Party, me: Party, peer_account: str, now: int, sent_at: int, busy: bool
    ) -> tuple[Call, list[Action]]:
        """An offer arrived (``sent_at``: its envelope's time). From another device of ours it is
        observed; to a device already in a call it is answered ``busy``; one that is older than the
        ringing time (a device that was offline) is a missed call at once, and nothing is sent."""
        if sender.account_id == me.account_id:
            call = cls(
                offer.call_id, Role.OBSERVER, offer.media, me, peer_account, sender, CallState.ELSEWHERE, now
            )
            return call, []
        call = cls(
            offer.call_id, Role.CALLEE, offer.media, me, sender.account_id, sender, CallState.RINGING_IN, now
        )
        call.remote_sdp = offer.sdp
        if busy:
            return call, [Send(Busy(offer.call_id)), *call._end(Outcome.BUSY, now)]
        if now - sent_at >= RING_MS:
            return call, call._end(Outcome.MISSED, now)
        return call, []

    # --- what this device's person or media did -----------------------------------------------------
    def answer(self, sdp: str, now: int) -> list[Action]:
        """Answer the ringing call (or the peer's renegotiation offer) with the local ``sdp``."""
        if self.state is CallState.RINGING_IN:
            self.answerer, self.answered_at = self.me, now
            self._move(CallState.CONNECTING, now)
        elif self.state not in (CallState.CONNECTING, CallState.CONNECTED, CallState.RECONNECTING):
            raise CallStateError(f"cannot answer a call that is {self.state}")
        return [Send(Answer(self.call_id, sdp))]

    def renegotiate(self, sdp: str, media: Media, now: int) -> list[Action]:
        """Send a new offer in an answered call: an ICE restart, or a switch between voice and video."""
        if self.state not in (CallState.CONNECTING, CallState.CONNECTED, CallState.RECONNECTING):
            raise CallStateError(f"cannot renegotiate a call that is {self.state}")
        self.media = media
        return [Send(Offer(self.call_id, media, sdp))]

    def decline(self, now: int) -> list[Action]:
        if self.state is not CallState.RINGING_IN:
            raise CallStateError(f"cannot decline a call that is {self.state}")
        return [Send(Decline(self.call_id)), *self._end(Outcome.DECLINED, now)]

    def give_way(self, now: int) -> list[Action]:
        """Our call lost the glare to the peer's (§14.9): end it, telling every device it is replaced."""
        if self.state is not CallState.RINGING_OUT:
            raise CallStateError(f"cannot give way in a call that is {self.state}")
        return [Send(Hangup(self.call_id, HangupReason.REPLACED)), *self._end(Outcome.REPLACED, now)]

    def hang_up(self, now: int) -> list[Action]:
        """End the call from here: cancel while ringing out, decline while ringing in, hang up after."""
        if self.state is CallState.RINGING_IN:
            return self.decline(now)
        if self.state is CallState.RINGING_OUT:
            return [Send(Hangup(self.call_id, HangupReason.CANCELLED)), *self._end(Outcome.CANCELLED, now)]
        if self.state in (CallState.CONNECTING, CallState.CONNECTED, CallState.RECONNECTING):
            return [Send(Hangup(self.call_id, HangupReason.ENDED)), *self._end(Outcome.COMPLETED, now)]
        raise CallStateError(f"cannot hang up a call that is {self.state}")

    def local_candidates(self, candidates: tuple[Candidate, ...]) -> list[Action]:
        """Trickle ICE: send candidates gathered after the description went out."""
        if self.state in (CallState.ENDED, CallState.ELSEWHERE, CallState.RINGING_IN) or not candidates:
            return []
        return [Send(Candidates(self.call_id, candidates))]

    def media_connected(self, now: int) -> list[Action]:
        if self.state in (CallState.CONNECTING, CallState.RECONNECTING):
            self._move(CallState.CONNECTED, now)
        return []

    def media_interrupted(self, now: int) -> list[Action]:
        """The connection dropped (ICE ``disconnected``): reconnecting, for up to :data:`CONNECT_MS`."""
        if self.state is CallState.CONNECTED:
            self._move(CallState.RECONNECTING, now)
        return []

    def media_failed(self, now: int) -> list[Action]:
        if self.state in (CallState.CONNECTING, CallState.CONNECTED, CallState.RECONNECTING):
            return [Send(Hangup(self.call_id, HangupReason.FAILED)), *self._end(Outcome.FAILED, now)]
        return []

    def fail(self, now: int) -> list[Action]:
        """Give up from here for a reason outside the media — a signal from the peer that could not be
        decrypted, say: the peer hears ``hangup`` ``failed``; a ringing device just stops."""
        if self.state is CallState.RINGING_OUT:
            return [Send(Hangup(self.call_id, HangupReason.FAILED)), *self._end(Outcome.FAILED, now)]
        if self.state is CallState.RINGING_IN:
            return self._end(Outcome.FAILED, now)
        return self.media_failed(now)

    # --- time ---------------------------------------------------------------------------------------
    def timer(self) -> int | None:
        """When :meth:`handle_timer` is next due, or None."""
        if self.state is CallState.RINGING_OUT:
            return self.state_since + RING_MS
        if self.state is CallState.RINGING_IN:
            return self.state_since + RING_MS + RING_GRACE_MS
        if self.state in (CallState.CONNECTING, CallState.RECONNECTING):
            return self.state_since + CONNECT_MS
        return None

    def handle_timer(self, now: int) -> list[Action]:
        due = self.timer()
        if due is None or now < due:
            return []
        if self.state is CallState.RINGING_OUT:
            return [Send(Hangup(self.call_id, HangupReason.NO_ANSWER)), *self._end(Outcome.NO_ANSWER, now)]
        if self.state is CallState.RINGING_IN:
            return self._end(Outcome.MISSED, now)
        return self.media_failed(now)

    # --- signals from the peer or from our other devices ---------------------------------------------
    def receive(self, signal: Signal, sender: Party, now: int) -> list[Action]:
        """A signal for this call, from ``sender`` (the server's routing, checked against the envelope)."""
        if signal.call_id != self.call_id:
            raise CallStateError("a signal for another call")
        if self.state is CallState.ENDED:
            return [Ignored(f"{type(signal).__name__.lower()} for a call that has ended")]
        if sender == self.me:
            return [Ignored("a signal from this device itself")]
        from_peer = sender.account_id == self.peer_account
        if self.state is CallState.RINGING_OUT:
            return self._ringing_out(signal, sender, from_peer, now)
        if self.state is CallState.RINGING_IN:
            return self._ringing_in(signal, sender, from_peer, now)
        if self.state is CallState.ELSEWHERE:
            return self._elsewhere(signal, sender, from_peer, now)
        return self._in_call(signal, sender, now)

    def _ringing_out(self, signal: Signal, sender: Party, from_peer: bool, now: int) -> list[Action]:
        if not from_peer:
            return [Ignored("a signal from another device of ours while dialling")]
        if isinstance(signal, Answer):
            self.answerer, self.answered_at = sender, now
            self._move(CallState.CONNECTING, now)
            return [RemoteDescription("answer", signal.sdp, self.media)]
        if isinstance(signal, Busy):
            return self._end(Outcome.BUSY, now)
        if isinstance(signal, Decline):
            return self._end(Outcome.DECLINED, now)
        return [Ignored(f"{type(signal).__name__.lower()} before the call was answered")]

    def _ringing_in(self, signal: Signal, sender: Party, from_peer: bool, now: int) -> list[Action]:
        if sender == self.caller and isinstance(signal, Hangup):
            outcome = {HangupReason.FAILED: Outcome.FAILED, HangupReason.REPLACED: Outcome.REPLACED}
            return self._end(outcome.get(signal.reason, Outcome.MISSED), now)
        if not from_peer:  # another device of ours answered, declined or was busy
            if isinstance(signal, Answer):
                self.answerer, self.answered_at = sender, now
                self._move(CallState.ELSEWHERE, now)
                return []
            if isinstance(signal, Decline):
                return self._end(Outcome.DECLINED, now)
            if isinstance(signal, Busy):
                return self._end(Outcome.BUSY, now)
        return [Ignored(f"{type(signal).__name__.lower()} while ringing")]

    def _elsewhere(self, signal: Signal, sender: Party, from_peer: bool, now: int) -> list[Action]:
        """Follow the call between another device of ours and the peer, to record how it ended."""
        if isinstance(signal, Answer) and self.answerer is None:
            self.answerer, self.answered_at = sender, now
        elif isinstance(signal, Offer):  # a renegotiation: voice to video or back
            self.media = signal.media
        elif isinstance(signal, Hangup):
            if self.answerer is not None:
                return self._end(Outcome.COMPLETED, now)
            return self._end(
                {
                    HangupReason.NO_ANSWER: Outcome.NO_ANSWER,
                    HangupReason.FAILED: Outcome.FAILED,
                    HangupReason.REPLACED: Outcome.REPLACED,
                }.get(signal.reason, Outcome.CANCELLED if self.role is Role.OBSERVER else Outcome.MISSED),
                now,
            )
        elif isinstance(signal, Busy) and self.answerer is None:
            return self._end(Outcome.BUSY, now)
        elif isinstance(signal, Decline) and self.answerer is None:
            return self._end(Outcome.DECLINED, now)
        return []

    def _in_call(self, signal: Signal, sender: Party, now: int) -> list[Action]:
        peer_device = self.answerer if self.role is Role.CALLER else self.caller
        if sender != peer_device:
            return [Ignored("a signal from a device that is not in this call")]
        if isinstance(signal, Candidates):
            return [RemoteCandidates(signal.candidates)]
        if isinstance(signal, Offer):
            self.media = signal.media
            return [RemoteDescription("offer", signal.sdp, signal.media)]
        if isinstance(signal, Answer):
            return [RemoteDescription("answer", signal.sdp, self.media)]
        if isinstance(signal, Hangup):
            failed = signal.reason is HangupReason.FAILED
            return self._end(Outcome.FAILED if failed else Outcome.COMPLETED, now)
        return [Ignored(f"{type(signal).__name__.lower()} in an answered call")]

    # --- the one place states change -------------------------------------------------------------
    def _move(self, state: CallState, now: int) -> None:
        if state not in TRANSITIONS[self.state]:
            raise CallStateError(f"a call cannot go from {self.state} to {state}")
        self.history.append(self.state)
        self.state, self.state_since = state, now

    def _end(self, outcome: Outcome, now: int) -> list[Action]:
        answered = self.answered_at is not None and outcome is Outcome.COMPLETED
        self._move(CallState.ENDED, now)
        record = CallRecord(
            self.call_id,
            self.media,
            self.role is not Role.CALLEE,
            outcome,
            now - self.answered_at if answered and self.answered_at is not None else 0,
            self.role is Role.CALLER or self.answerer == self.me,
        )
        self.record = record
        return [Ended(record)]
