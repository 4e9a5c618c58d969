"""A state-machine test of the linking handshake on the server side (linking.md §6.3, §10.3).

Hypothesis drives companions (start, close, answer a typed code's offer) and two primaries (inspect,
offer on a typed code, approve, decline, a grant the store refused) against a :class:`LinkRegistry`
on a fake clock, checking every answer against a small model: a ref is granted at most once, never
after it expired or its page closed, and only by the primary that claimed it; a typed code takes one
offer, ever, and its page answers it once. Every session also survives the round trip through the
JSON a Redis store keeps.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from lockstep.link.bycode import new_code_id
from lockstep.server.errors import ApiError
from lockstep.server.link_sessions import (
    CLAIM_MS,
    CompanionContext,
    LinkRegistry,
    LinkSession,
    RefState,
)

PRIMARIES = ("phone-a", "phone-b")


class LinkingMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")
    refs = Bundle("refs")

    @initialize()
    def setup(self) -> None:
        self.registry = LinkRegistry()
        self.now = 1_000_000
        self.model: dict[
            bytes, dict[str, Any]
        ] = {}  # ref -> {state, expires, claim_by, claim_until, session}
        self.granted: list[bytes] = []
        self.started: list[LinkSession] = []
        self.offers: list[bytes] = []

    def _live(self, ref: bytes) -> bool:
        entry = self.model[ref]
        if entry["session"].closed or entry["state"] in ("granted", "declined", "expired"):
            return False
        if entry["state"] == "claimed":
            return self.now < entry["claim_until"]
        return self.now < entry["expires"]

    @rule(target=sessions)
    def start(self) -> LinkSession:
        context = CompanionContext("Chrome 156 on Linux", "browser", "ua", "127.0.0.1")
        session = self.registry.start(context, self.now)
        self.started.append(session)
        return session

    @rule(target=sessions)
    def start_code(self) -> LinkSession:
        context = CompanionContext("Lockstep terminal", "terminal", "ua", "127.0.0.1")
        while not self.registry.code_free(code_id := new_code_id()):
            pass
        session = self.registry.start(context, self.now, code_id)
        self.started.append(session)
        return session

    @rule(target=refs, session=sessions)
    def issue(self, session: LinkSession) -> bytes:
        previous = session.current
        issued = self.registry.issue_next(session, self.now)
        if issued is None:
            assert session.finished or len(session.refs) == len(session.schedule)
            return b""
        if previous is not None and self.model[previous.ref]["state"] in ("issued", "claimed"):
            self.model[previous.ref]["state"] = "expired"
        self.model[issued.ref] = {
            "state": "issued",
            "expires": self.now + session.schedule[issued.index],
            "session": session,
            "offered": False,
            "answered": False,
        }
        return issued.ref

    @rule(ms=st.integers(min_value=0, max_value=150_000))
    def wait(self, ms: int) -> None:
        self.now += ms

    @rule(session=sessions)
    def close(self, session: LinkSession) -> None:
        self.registry.close(session)

    @rule(ref=refs, primary=st.sampled_from(PRIMARIES))
    def inspect(self, ref: bytes, primary: str) -> None:
        if not ref:
            return
        entry = self.model[ref]
        expect_ok = self._live(ref) and (entry["state"] != "claimed" or entry["claim_by"] == primary)
        try:
            self.registry.claim(ref, primary, self.now)
        except ApiError as error:
            assert not expect_ok, error.code
            return
        assert expect_ok
        entry.update(
            state="claimed", claim_by=primary, claim_until=max(entry["expires"], self.now + CLAIM_MS)
        )

    @rule(session=sessions, primary=st.sampled_from(PRIMARIES))
    def offer(self, session: LinkSession, primary: str) -> None:
        if session.code_id is None:
            return
        ref = session.current.ref if session.current is not None else None
        entry = self.model.get(ref) if ref is not None else None
        expect_ok = (
            ref is not None
            and entry is not None
            and not entry["offered"]
            and self._live(ref)
            and (entry["state"] != "claimed" or entry["claim_by"] == primary)
        )
        try:
            issued = self.registry.offer(session.code_id, primary, self.now)
        except ApiError as error:
            assert not expect_ok, error.code
            return
        assert expect_ok and entry is not None
        assert issued.ref not in self.offers, "a typed code took a second offer"
        self.offers.append(issued.ref)
        entry.update(
            state="claimed",
            claim_by=primary,
            claim_until=max(entry["expires"], self.now + CLAIM_MS),
            offered=True,
        )

    @rule(session=sessions)
    def answer(self, session: LinkSession) -> None:
        ref = session.current.ref if session.current is not None else None
        entry = self.model.get(ref) if ref is not None else None
        expect_ok = (
            ref is not None
            and entry is not None
            and entry["offered"]
            and not entry["answered"]
            and self._live(ref)
        )
        try:
            self.registry.answer(session, self.now)
        except ApiError as error:
            assert not expect_ok, error.code
            return
        assert expect_ok and entry is not None
        entry["answered"] = True

    @rule(ref=refs, primary=st.sampled_from(PRIMARIES), grant=st.booleans())
    def resolve(self, ref: bytes, primary: str, grant: bool) -> None:
        if not ref:
            return
        entry = self.model[ref]
        expect_ok = self._live(ref) and (entry["state"] != "claimed" or entry["claim_by"] == primary)
        outcome = RefState.GRANTED if grant else RefState.DECLINED
        try:
            self.registry.resolve(ref, primary, self.now, outcome)
        except ApiError as error:
            assert not expect_ok, error.code
            assert error.code in ("ref_used", "ref_expired", "ref_unknown")
            return
        assert expect_ok
        entry["state"] = "granted" if grant else "declined"
        if grant:
            self.granted.append(ref)
            entry["granted_by"] = primary

    @rule(ref=refs)
    def store_refuses_grant(self, ref: bytes) -> None:
        """The device list moved on meanwhile: the grant goes back to the claim of who approved."""
        if not ref or self.model[ref]["state"] != "granted":
            return
        entry = self.model[ref]
        self.registry.reopen(ref, entry["granted_by"])
        if entry["session"].closed:
            return
        self.granted.remove(ref)
        entry.update(
            state="claimed",
            claim_by=entry["granted_by"],
            claim_until=max(entry.get("claim_until", 0), entry["expires"]),
        )

    @invariant()
    def sessions_survive_their_json(self) -> None:
        for session in getattr(self, "started", []):
            assert LinkSession.from_json(session.to_json()).to_json() == session.to_json()

    @invariant()
    def a_ref_is_granted_at_most_once(self) -> None:
        if hasattr(self, "granted"):
            assert len(self.granted) == len(set(self.granted))

    @invariant()
    def a_session_grants_at_most_once(self) -> None:
        if hasattr(self, "granted"):
            sessions = [id(self.model[ref]["session"]) for ref in self.granted]
            assert len(sessions) == len(set(sessions))


TestLinkingHandshake = LinkingMachine.TestCase
