"""The client's system process: mitigation and clock discipline (RFC 5905 §11-12, A.5.5).

:class:`NtpClient` owns one :class:`~lockstep.ntp.association.Association` per source and, after
each accepted sample, runs selection, cluster and combine (:mod:`lockstep.ntp.selection`) to pick a
system peer and a combined offset. With ``discipline=True`` it also runs the clock discipline of
A.5.5.6 and emits :class:`ClockStepped` / :class:`ClockSlewed` for the caller to apply; with the
default ``discipline=False`` it only estimates the offset (what ``lockstep ntp monitor`` shows).

Sans-I/O shape: ``next_timer()``, ``handle_timer(now)`` → actions (a datagram to send, or an
NTS-KE to run for a source whose cookies are gone), ``receive(source, data, now)`` → events,
``rekey(source, ...)`` → the result of an NTS-KE handed back. ``now`` is a full NTP time
(``timestamps.from_unix_ns``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from lockstep.ntp.association import Association, AssociationState, Event, RandomSource
from lockstep.ntp.constants import (
    DEFAULT_MAXPOLL,
    DEFAULT_MINPOLL,
    LIMIT,
    MAXDIST,
    MAXFREQ,
    MAXSTRAT,
    MINDISP,
    PANICT,
    PGATE,
    PHI,
    STEPT,
    WATCH,
)
from lockstep.ntp.errors import LocalProtocolError
from lockstep.ntp.events import (
    ClockSlewed,
    ClockStepped,
    ClockUpdated,
    KeyExchangeNeeded,
    PanicThresholdExceeded,
    SampleAccepted,
    SystemPeerChanged,
)
from lockstep.ntp.nts.client import NtsClientSession
from lockstep.ntp.selection import Candidate, cluster, combine, select_truechimers
from lockstep.ntp.timestamps import to_seconds
from lockstep.ntp.trend import Fit
from lockstep.ntp.wire import LeapIndicator, reference_id_for_address

SystemEvent = Event | SystemPeerChanged | ClockUpdated | ClockStepped | ClockSlewed | PanicThresholdExceeded
_IPV6_LOOPBACK_REFERENCE_ID = reference_id_for_address("::1")


class DisciplineState(Enum):
    """States of the clock discipline (RFC 5905 A.5.5.6)."""

    NSET = "clock never set"
    FSET = "frequency set"
    SPIK = "spike detected"
    FREQ = "measuring frequency"
    SYNC = "synchronised"


class SourceMark(Enum):
    """The state mark of a source, as ``chronyc sources`` shows it."""

    SYSTEM_PEER = "*"
    COMBINED = "+"
    NOT_COMBINED = "-"
    FALSETICKER = "x"
    UNUSABLE = "?"


@dataclass(frozen=True, slots=True)
class Transmit:
    """A datagram for the adapter to send to ``source``."""

    source: str
    data: bytes


#: What :meth:`NtpClient.handle_timer` asks the adapter to do.
Action = Transmit | KeyExchangeNeeded


@dataclass(frozen=True, slots=True)
class SourceReport:
    """One row of the monitor table."""

    name: str
    mark: SourceMark
    stratum: int | None
    poll: int
    reach: int
    last_receive_age: float | None  # seconds since the last valid reply
    last_offset: float | None
    offset: float | None
    delay: float | None
    jitter: float | None
    root_distance: float


@dataclass(frozen=True, slots=True)
class SystemVariables:
    """The system variables a server hands on to its clients (RFC 5905 §11.1)."""

    leap: LeapIndicator
    stratum: int
    reference_id: int
    reference_time: int  # full NTP time of the last update
    root_delay: float
    root_dispersion: float
    offset: float
    jitter: float
    #: The system peer's frequency against our clock (s/s) from its offset trend
    #: (:mod:`lockstep.ntp.trend`); 0 until it has enough samples, and 0 with discipline (the
    #: clock is steered to it). ``offset`` holds at ``reference_time`` and drifts by this.
    frequency: float = 0.0


class NtpClient:
    """Sources, mitigation and (optionally) discipline: the whole client side of RFC 5905."""

    def __init__(
        self,
        *,
        discipline: bool = False,
        precision: int = -20,
        rng: RandomSource | None = None,
    ) -> None:
        self.discipline = discipline
        self.precision = precision
        self._rng = rng
        self.associations: dict[str, Association] = {}
        self.system_peer: str | None = None
        self.system: SystemVariables | None = None
        self.state = DisciplineState.NSET
        self.frequency = 0.0  # s/s correction the discipline has asked for
        self.hpoll = DEFAULT_MINPOLL
        self._poll_count = 0
        self._last_update: int | None = None  # full time of the last discipline update
        self._last_sample: dict[str, float] = {}
        self._marks: dict[str, SourceMark] = {}
        self.updates = 0
        self.steps = 0

    # -- sources ------------------------------------------------------------------------------

    def add_source(
        self,
        name: str,
        *,
        now: int,
        reference_id: int = 0,
        iburst: bool = True,
        minpoll: int = DEFAULT_MINPOLL,
        maxpoll: int = DEFAULT_MAXPOLL,
        nts: NtsClientSession | None = None,
        interleave: bool = True,
    ) -> Association:
        """A new source; with ``nts`` (what NTS-KE gave), its requests are NTS-protected; with
        ``interleave`` it asks for interleaved mode when the server looks able (RFC 9769)."""
        if name in self.associations:
            raise LocalProtocolError(f"source {name!r} is already configured")
        association = Association(
            name,
            now=now,
            reference_id=reference_id,
            iburst=iburst,
            minpoll=minpoll,
            maxpoll=maxpoll,
            precision=self.precision,
            rng=self._rng,
            interleave=interleave,
        )
        if not self.associations:
            self.hpoll = minpoll  # the system poll starts at the first source's minpoll
        association.hpoll = self.hpoll
        association.nts = nts
        self.associations[name] = association
        return association

    def rekey(
        self, source: str, c2s: bytes, s2c: bytes, cookies: Sequence[bytes], aead: int, now: int
    ) -> None:
        """Hand ``source`` the result of the NTS-KE its :class:`KeyExchangeNeeded` asked for."""
        self._association(source).rekey(c2s, s2c, cookies, aead, now)

    def transmitted(self, source: str, sent: int) -> None:
        """``source``'s outstanding request left at ``sent`` (the kernel's transmit timestamp)."""
        self._association(source).transmitted(sent)

    def _association(self, source: str) -> Association:
        association = self.associations.get(source)
        if association is None:
            raise LocalProtocolError(f"unknown source {source!r}")
        return association

    # -- timers ---------------------------------------------------------------------------------

    def next_timer(self) -> int | None:
        """Full NTP time of the next request due, or None when every source is demobilized."""
        due = [a.next_poll for a in self.associations.values() if a.state is AssociationState.ACTIVE]
        return min(due) if due else None

    def handle_timer(self, now: int) -> list[Action]:
        """What is due at ``now``: requests to send, and NTS-KE for sources out of cookies."""
        out: list[Action] = []
        for association in self.associations.values():
            due = association.poll_due(now)
            if isinstance(due, bytes):
                out.append(Transmit(association.name, due))
            elif due is not None:
                out.append(due)
        return out

    # -- packets ----------------------------------------------------------------------------------

    def receive(self, source: str, data: bytes, now: int) -> list[SystemEvent]:
        """Feed one datagram that came from ``source``; return what happened."""
        association = self._association(source)
        event = association.receive(data, now)
        events: list[SystemEvent] = [] if event is None else [event]
        if isinstance(event, SampleAccepted):
            self._last_sample[source] = event.offset
            events.extend(self._clock_select(association, now))
        return events

    # -- mitigation (§11.2, A.5.5.1) ----------------------------------------------------------------

    def candidates(self, now: int) -> list[Candidate]:
        """Sources passing the fitness checks of A.5.5.2 ``fit``."""
        out = []
        for a in self.associations.values():
            if a.state is not AssociationState.ACTIVE or a.reach == 0 or a.server is None:
                continue
            if a.filter.time is None or a.server.stratum >= MAXSTRAT:
                continue
            if a.server.leap is LeapIndicator.UNSYNCHRONIZED:
                continue
            distance = a.root_distance(now)
            if distance > MAXDIST + PHI * (1 << a.poll):
                continue
            if self._loop_error(a):
                continue
            offset = self._offset_now(a, now)
            out.append(Candidate(a.name, a.server.stratum, offset, a.filter.jitter, distance))
        return out

    def _offset_now(self, a: Association, now: int) -> float:
        """The source's offset at ``now``: without discipline, its trend extrapolated (or, with
        too few samples for a frequency yet, the clock filter's, which may be eight polls old).
        With discipline the clock filter's, as RFC 5905 has it: the PLL/FLL is then the
        frequency estimator, and a trend fitted over samples from before its last frequency
        correction would extrapolate a slope already corrected, and the loop would overshoot."""
        fit = self._fit(a)
        return a.filter.offset if fit is None else fit.offset_at(to_seconds(now))

    def _fit(self, a: Association) -> Fit | None:
        return None if self.discipline else a.trend.fit

    def _loop_error(self, a: Association) -> bool:
        """A.5.5.2 ``fit``'s loop check: the source is synchronised to us (its reference id is
        our address on its socket) or to our system peer (its reference id is ours). Reference
        ids are addresses without ports, so, as ntpd does, a loopback reference id (any of
        127.0.0.0/8 or ::1's hash: servers on this host) proves nothing and passes; stratum 1
        carries a clock name, not an address."""
        assert a.server is not None
        announced = a.server.reference_id
        if a.server.stratum < 2 or announced == _IPV6_LOOPBACK_REFERENCE_ID or announced >> 24 == 127:
            return False
        if a.local_reference_id is not None and announced == a.local_reference_id:
            return True
        return self.system is not None and announced == self.system.reference_id

    def _clock_select(self, updated: Association, now: int) -> list[SystemEvent]:
        events: list[SystemEvent] = []
        if any(
            a.state is AssociationState.ACTIVE and a.filter.time is None and a.polls < 3
            for a in self.associations.values()
        ):
            # Start-up: wait until every source had a chance to answer, so a lone fast reply
            # (perhaps a falseticker's) is never selected before the others can outvote it.
            return events
        candidates = self.candidates(now)
        reachable = sum(
            1 for a in self.associations.values() if a.state is AssociationState.ACTIVE and a.reach != 0
        )
        # Deviation from RFC 5905 (NSANE = 1): selection needs a majority of the reachable
        # sources to be fit, so a fit falseticker cannot win while truechimers are still
        # building up their filters.
        intersection = select_truechimers(candidates) if 2 * len(candidates) > reachable else None
        self._marks = {c.name: SourceMark.FALSETICKER for c in candidates}
        if intersection is None:
            if self.system_peer is not None:
                self.system_peer = None
                events.append(SystemPeerChanged(None))
            return events
        survivors = list(cluster(intersection.truechimers))
        for c in intersection.truechimers:
            self._marks[c.name] = SourceMark.NOT_COMBINED
        # Keep the current system peer while it survives at the best stratum (A.5.5.1).
        best = survivors[0]
        current = next((c for c in survivors if c.name == self.system_peer), None)
        if current is not None and current.stratum == best.stratum:
            best = current
        survivors.remove(best)
        survivors.insert(0, best)
        for c in survivors:
            self._marks[c.name] = SourceMark.COMBINED
        self._marks[best.name] = SourceMark.SYSTEM_PEER
        if best.name != self.system_peer:
            self.system_peer = best.name
            events.append(SystemPeerChanged(best.name))
        elif updated.name != best.name:
            return events  # only updates of the system peer move the clock (A.5.5.1)
        combined = combine(survivors)
        peer = self.associations[best.name]
        assert peer.server is not None
        # §11.2.3 Figure 25, with the increment over the peer's root dispersion floored at
        # MINDISP, so the root dispersion grows at every hop (no timing loops between peers).
        aged_dispersion = peer.filter.distance_dispersion(to_seconds(now))
        increment = aged_dispersion + peer.filter.jitter + abs(combined.offset)
        self.system = SystemVariables(
            leap=peer.server.leap,
            stratum=min(MAXSTRAT, peer.server.stratum + 1),
            reference_id=peer.reference_id,
            reference_time=now,
            root_delay=peer.server.root_delay + peer.filter.delay,
            root_dispersion=peer.server.root_dispersion + max(MINDISP, increment),
            offset=combined.offset,
            jitter=combined.jitter,
            frequency=0.0 if (fit := self._fit(peer)) is None else fit.frequency,
        )
        self.updates += 1
        events.append(ClockUpdated(combined.offset, combined.jitter, best.name))
        events.extend(self._local_clock(combined.offset, combined.jitter, now))
        return events

    # -- discipline (§12, A.5.5.6) --------------------------------------------------------------------

    def _local_clock(self, offset: float, jitter: float, now: int) -> list[SystemEvent]:
        mu = 0.0 if self._last_update is None else to_seconds(now - self._last_update)
        self._adjust_poll(offset, jitter)
        if not self.discipline:
            self._last_update = now
            return []
        if abs(offset) > PANICT and self.state is not DisciplineState.NSET:
            return [PanicThresholdExceeded(offset)]
        if abs(offset) > STEPT:
            if self.state is DisciplineState.SYNC:
                self.state = DisciplineState.SPIK  # a spike: wait for it to persist
                return []
            if self.state in (DisciplineState.SPIK, DisciplineState.FREQ) and mu < WATCH:
                return []
            return self._step(offset, now)
        frequency_change = 0.0
        if self.state in (DisciplineState.SYNC, DisciplineState.SPIK) and mu > 0:
            # Type-II PLL frequency update (A.5.5.6): offset * mu / (4 * PLL time constant ** 2).
            tau = float(1 << self.hpoll) * 4
            frequency_change = offset * mu / (tau * tau)
            if mu > 256:  # FLL contribution for long intervals
                frequency_change += offset / mu / 4
        self.frequency = max(-MAXFREQ, min(MAXFREQ, self.frequency + frequency_change))
        self.state = DisciplineState.SYNC
        self._last_update = now
        self._zero_offsets(offset)
        return [ClockSlewed(offset, self.frequency)]

    def _step(self, offset: float, now: int) -> list[SystemEvent]:
        self.steps += 1
        self.state = DisciplineState.FSET
        self._last_update = now
        # After a step every filter holds stale offsets: clear them (A.5.5.1 "clear(ALL)").
        for association in self.associations.values():
            association.filter.reset()
            association.trend.reset()
        self.system_peer = None
        self.system = None
        self.hpoll = min(a.minpoll for a in self.associations.values())
        return [ClockStepped(offset), SystemPeerChanged(None)]

    def _zero_offsets(self, offset: float) -> None:
        # The caller corrects the clock by ``offset``: shift the retained samples to match, so a
        # later selection does not see the same error twice.
        for association in self.associations.values():
            association.filter.offset -= offset
            association.trend.shift(offset)

    def _adjust_poll(self, offset: float, jitter: float) -> None:
        """Poll-interval adaptation of A.5.5.6: lengthen while offsets stay within PGATE jitters."""
        if abs(offset) < PGATE * jitter:
            self._poll_count += self.hpoll
            if self._poll_count > LIMIT:
                self._poll_count = LIMIT
                if self.hpoll < max(a.maxpoll for a in self.associations.values()):
                    self._poll_count = 0
                    self.hpoll += 1
        else:
            self._poll_count -= self.hpoll << 1
            if self._poll_count < -LIMIT:
                self._poll_count = -LIMIT
                if self.hpoll > min(a.minpoll for a in self.associations.values()):
                    self._poll_count = 0
                    self.hpoll -= 1
        for association in self.associations.values():
            association.hpoll = self.hpoll

    # -- reporting ------------------------------------------------------------------------------------

    def sources(self, now: int) -> list[SourceReport]:
        """The rows of a ``chronyc sources``-like table."""
        rows = []
        for a in self.associations.values():
            mark = self._marks.get(a.name, SourceMark.UNUSABLE)
            if a.reach == 0 or a.state is not AssociationState.ACTIVE:
                mark = SourceMark.UNUSABLE
            has_sample = a.filter.time is not None
            rows.append(
                SourceReport(
                    name=a.name,
                    mark=mark,
                    stratum=a.server.stratum if a.server else None,
                    poll=a.poll,
                    reach=a.reach,
                    last_receive_age=(None if a.last_receive is None else to_seconds(now - a.last_receive)),
                    last_offset=self._last_sample.get(a.name),
                    offset=a.filter.offset if has_sample else None,
                    delay=a.filter.delay if has_sample else None,
                    jitter=a.filter.jitter if has_sample else None,
                    root_distance=a.root_distance(now),
                )
            )
        return rows

    def offset_at(self, now: int) -> float | None:
        """The system offset carried to ``now`` with the system peer's frequency (chronyc
        ``tracking``'s "System time" is likewise for the moment it is asked)."""
        if self.system is None:
            return None
        return self.system.offset + self.system.frequency * to_seconds(now - self.system.reference_time)

    def error_estimate(self, now: int) -> float | None:
        """A bound on the combined offset's error: system jitter plus the peer's root distance."""
        if self.system is None or self.system_peer is None:
            return None
        peer = self.associations[self.system_peer]
        return math.hypot(self.system.jitter, peer.filter.jitter) + peer.root_distance(now) / 2
