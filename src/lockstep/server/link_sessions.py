"""Link sessions and their refs (docs/protocol/linking.md §6): the rules, pure, time passed in.

A session belongs to one companion socket and hands out refs on a fixed schedule. A ref is issued,
then claimed by the primary that inspected it (which pauses rotation while the person decides), then
granted, declined or expired. Finished refs are remembered for a while so a late primary learns exactly
why its ref no longer works.

This module is the only place these rules live. Where sessions are kept is ``link_store.py``'s
business: in this process, or in Redis as :meth:`LinkSession.to_json` state that each operation loads
into a :class:`LinkRegistry`, changes by these same methods and writes back.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Any

from lockstep.server.errors import ApiError, ErrorCode

# WhatsApp's rhythm: the first code lives 60 s, five more live 20 s each, then the user reloads.
SCHEDULE_MS = (60_000, 20_000, 20_000, 20_000, 20_000, 20_000)
# A typed code (§10) is one ref that lives 3 minutes: typing takes longer than scanning.
CODE_SCHEDULE_MS = (180_000,)
CLAIM_MS = 120_000
REMEMBER_MS = 600_000
REF_SIZE = 32


class RefState(enum.Enum):
    ISSUED = "issued"
    CLAIMED = "claimed"
    GRANTED = "granted"
    DECLINED = "declined"
    EXPIRED = "expired"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class CompanionContext:
    """What the server saw of the companion when its session started."""

    description: str
    client: str
    user_agent: str
    address: str


@dataclass(slots=True)
class IssuedRef:
    ref: bytes
    session: LinkSession
    index: int
    issued_at: int
    expires_at: int
    state: RefState = RefState.ISSUED
    claimed_by: str | None = None
    claim_expires_at: int = 0
    offered: bool = False
    """A typed code's ref: a primary's CPace offer came (and burned the code, §10.3)."""
    answered: bool = False
    """A typed code's ref: the companion answered that offer."""

    @property
    def last(self) -> bool:
        return self.index == len(self.session.schedule) - 1

    def live(self, now: int) -> bool:
        if self.state is RefState.ISSUED:
            return now < self.expires_at
        return self.state is RefState.CLAIMED and now < self.claim_expires_at


@dataclass(slots=True)
class LinkSession:
    session_id: str
    """Random, never shown to anyone: names the session's state and its companion's event channel."""
    context: CompanionContext
    started_at: int
    refs: list[IssuedRef] = field(default_factory=list)
    closed: bool = False
    code_id: str | None = None
    """Set for a typed-code session (§10): the code's first characters, which route the primary's offer."""

    @property
    def schedule(self) -> tuple[int, ...]:
        return SCHEDULE_MS if self.code_id is None else CODE_SCHEDULE_MS

    @property
    def current(self) -> IssuedRef | None:
        return self.refs[-1] if self.refs else None

    @property
    def finished(self) -> bool:
        current = self.current
        return self.closed or (current is not None and current.state in (RefState.GRANTED, RefState.DECLINED))

    def to_json(self) -> dict[str, Any]:
        """The whole session as plain data, for a store outside this process."""
        return {
            "session_id": self.session_id,
            "context": {
                "description": self.context.description,
                "client": self.context.client,
                "user_agent": self.context.user_agent,
                "address": self.context.address,
            },
            "started_at": self.started_at,
            "closed": self.closed,
            "code_id": self.code_id,
            "refs": [
                {
                    "ref": issued.ref.hex(),
                    "index": issued.index,
                    "issued_at": issued.issued_at,
                    "expires_at": issued.expires_at,
                    "state": issued.state.value,
                    "claimed_by": issued.claimed_by,
                    "claim_expires_at": issued.claim_expires_at,
                    "offered": issued.offered,
                    "answered": issued.answered,
                }
                for issued in self.refs
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinkSession:
        """The session :meth:`to_json` wrote (state this server stored itself, not client input)."""
        session = cls(data["session_id"], CompanionContext(**data["context"]), data["started_at"])
        session.closed = data["closed"]
        session.code_id = data.get("code_id")
        session.refs = [
            IssuedRef(
                bytes.fromhex(ref["ref"]),
                session,
                ref["index"],
                ref["issued_at"],
                ref["expires_at"],
                RefState(ref["state"]),
                ref["claimed_by"],
                ref["claim_expires_at"],
                ref.get("offered", False),
                ref.get("answered", False),
            )
            for ref in data["refs"]
        ]
        return session


class LinkRegistry:
    """Every live and recently finished ref, by its bytes."""

    def __init__(self) -> None:
        self._refs: dict[bytes, IssuedRef] = {}
        self._sessions: dict[str, LinkSession] = {}
        self._codes: dict[str, LinkSession] = {}

    def start(self, context: CompanionContext, now: int, code_id: str | None = None) -> LinkSession:
        """A new session; with ``code_id`` (free, see :meth:`code_free`) a typed-code session."""
        self.prune(now)
        session = LinkSession(secrets.token_urlsafe(16), context, now, code_id=code_id)
        self._sessions[session.session_id] = session
        if code_id is not None:
            self._codes[code_id] = session
        return session

    def code_free(self, code_id: str) -> bool:
        """No session used ``code_id`` in the last REMEMBER_MS (so a late offer is never misrouted)."""
        return code_id not in self._codes

    def adopt(self, session: LinkSession) -> None:
        """Take over a session loaded from elsewhere, with its refs."""
        self._sessions[session.session_id] = session
        if session.code_id is not None:
            self._codes[session.code_id] = session
        for issued in session.refs:
            self._refs[issued.ref] = issued

    def session(self, session_id: str) -> LinkSession | None:
        return self._sessions.get(session_id)

    def issue_next(self, session: LinkSession, now: int) -> IssuedRef | None:
        """The session's next ref, or None when the schedule is used up or the session is over."""
        if session.finished or len(session.refs) >= len(session.schedule):
            return None
        previous = session.current
        if previous is not None and previous.state in (RefState.ISSUED, RefState.CLAIMED):
            previous.state = RefState.EXPIRED
        index = len(session.refs)
        expires_at = now + session.schedule[index]
        issued = IssuedRef(secrets.token_bytes(REF_SIZE), session, index, now, expires_at)
        session.refs.append(issued)
        self._refs[issued.ref] = issued
        return issued

    def next_deadline(self, session: LinkSession) -> int | None:
        """When the session's current ref stops being live (expiry, or the end of a claim)."""
        current = session.current
        if current is None or session.finished:
            return None
        if current.state is RefState.CLAIMED:
            return current.claim_expires_at
        return current.expires_at

    def lookup(self, ref: bytes, now: int) -> IssuedRef:
        """A ref a primary may act on, or the precise reason it may not."""
        issued = self._refs.get(ref)
        if issued is None or now - issued.issued_at > REMEMBER_MS:
            raise ApiError(
                ErrorCode.REF_UNKNOWN, "no such code: it may be older than ten minutes, or mistyped"
            )
        if issued.state in (RefState.GRANTED, RefState.DECLINED):
            raise ApiError(
                ErrorCode.REF_USED, "this code was already used; ask for a new one on the computer"
            )
        if issued.state is RefState.CLOSED:
            raise ApiError(ErrorCode.REF_EXPIRED, "the page that showed this code was closed")
        if not issued.live(now):
            issued.state = RefState.EXPIRED
            raise ApiError(
                ErrorCode.REF_EXPIRED, "this code has expired; scan the code on the computer again"
            )
        return issued

    def claim(self, ref: bytes, device_id: str, now: int) -> IssuedRef:
        """The inspecting primary claims the ref: rotation pauses while the person decides."""
        issued = self.lookup(ref, now)
        if issued.state is RefState.CLAIMED and issued.claimed_by != device_id:
            raise ApiError(ErrorCode.REF_USED, "another device is already linking with this code")
        issued.state = RefState.CLAIMED
        issued.claimed_by = device_id
        issued.claim_expires_at = max(issued.expires_at, now + CLAIM_MS)
        return issued

    def resolve(self, ref: bytes, device_id: str, now: int, outcome: RefState) -> IssuedRef:
        """Grant or decline: only by the primary holding the claim (or any primary, unclaimed)."""
        issued = self.lookup(ref, now)
        if issued.state is RefState.CLAIMED and issued.claimed_by != device_id:
            raise ApiError(ErrorCode.REF_USED, "another device is already linking with this code")
        issued.state = outcome
        return issued

    def offer(self, code_id: str, device_id: str, now: int) -> IssuedRef:
        """A primary's CPace offer for a typed code (§10.3): it claims the code's ref, like an
        inspect, and burns the code: a second offer, by anyone, is refused. One online guess per code."""
        session = self._codes.get(code_id)
        issued = None if session is None else session.current
        if issued is None:
            raise ApiError(ErrorCode.REF_UNKNOWN, "no such code: it may have been mistyped, or be older")
        if issued.offered:
            raise ApiError(
                ErrorCode.REF_USED, "this code was already tried once; get a new code on the computer"
            )
        issued = self.claim(issued.ref, device_id, now)
        issued.offered = True
        return issued

    def answer(self, session: LinkSession, now: int) -> IssuedRef:
        """The companion's answer to the offer on its code, once; the ref must still be claimed."""
        issued = session.current
        if session.code_id is None or issued is None or not issued.offered or issued.answered:
            raise ApiError(ErrorCode.FORBIDDEN, "no offer on this page's code is waiting for an answer")
        issued = self.lookup(issued.ref, now)
        issued.answered = True
        return issued

    def reopen(self, ref: bytes, device_id: str) -> None:
        """A grant the store then refused (the device list moved on) goes back to being claimed by
        the primary that tried, so it can refresh its list and approve again."""
        issued = self._refs.get(ref)
        if issued is None or issued.state is not RefState.GRANTED or issued.session.closed:
            return
        issued.state = RefState.CLAIMED
        issued.claimed_by = device_id
        issued.claim_expires_at = max(issued.claim_expires_at, issued.expires_at)

    def close(self, session: LinkSession) -> bool:
        """The companion's page went away; True if the session had not finished (abandoned)."""
        abandoned = not session.finished
        session.closed = True
        for issued in session.refs:
            if issued.state in (RefState.ISSUED, RefState.CLAIMED):
                issued.state = RefState.CLOSED
        return abandoned

    def prune(self, now: int) -> None:
        old = [ref for ref, issued in self._refs.items() if now - issued.issued_at > REMEMBER_MS]
        for ref in old:
            del self._refs[ref]
        done = [
            session_id
            for session_id, session in self._sessions.items()
            if now - (session.refs[-1].issued_at if session.refs else session.started_at) > REMEMBER_MS
        ]
        for session_id in done:
            code_id = self._sessions.pop(session_id).code_id
            if code_id is not None:
                self._codes.pop(code_id, None)
