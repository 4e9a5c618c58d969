"""One client association: the peer process and poll process of RFC 5905 (§9, §13, A.5.1, A.5.7).

An :class:`Association` builds requests and checks replies; it never touches a socket or a clock.
Time is a parameter (a full NTP time, see :mod:`lockstep.ntp.timestamps`).

Requests follow RFC 9109 and draft-ietf-ntp-data-minimization: every field is zero except the
version, the mode and a random transmit timestamp, so the request reveals nothing about our clock
and a reply is accepted only when its origin timestamp echoes that random value (§8 "bogus"
check). The real send time T1 is kept locally.

Interleaved client/server mode (RFC 9769 §2, chronyd's ``xleave``): once a server marks its
receive timestamps (an odd T2, as chronyd and Lockstep do), the next request also carries, as its
origin, that receive timestamp and, as its receive field, when we got the reply. A server that
keeps the real send time of its replies then answers with origin = that receive field and
transmit = the kernel's send time of the previous reply, and the sample is the previous
exchange's (T1, T2, T3, T4) with that accurate T3. A server that keeps answering in basic mode
(three times in a row) is asked in basic mode from then on. This reveals our receive time of the
previous reply to the server (a basic request reveals nothing): ``interleave=False`` keeps an
association in basic mode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from lockstep.ntp.constants import (
    BURST_COUNT,
    BURST_INTERVAL,
    DEFAULT_MAXPOLL,
    DEFAULT_MINPOLL,
    MAXDISP,
    MAXPOLL,
    MAXSTRAT,
    MINDISP,
    MINPOLL,
    PHI,
    VERSION,
)
from lockstep.ntp.errors import LocalProtocolError, MalformedPacket
from lockstep.ntp.events import (
    DropReason,
    KeyExchangeNeeded,
    KissReceived,
    PacketDropped,
    SampleAccepted,
    SourceDemobilized,
)
from lockstep.ntp.filter import ClockFilter
from lockstep.ntp.nts.client import NtsClientSession, NtsNak, NtsReplyRejected
from lockstep.ntp.onwire import on_wire
from lockstep.ntp.timestamps import (
    ONE_SECOND,
    duration_between,
    from_seconds,
    short_to_seconds,
    to_seconds,
    to_timestamp,
)
from lockstep.ntp.trend import OffsetTrend
from lockstep.ntp.wire import KissCode, LeapIndicator, Mode, Packet

Event = PacketDropped | SampleAccepted | KissReceived | SourceDemobilized


class RandomSource(Protocol):
    """Where an association's random numbers come from (tests pass a seeded ``random.Random``)."""

    def getrandbits(self, k: int, /) -> int: ...


class OsRandom:
    """The default :class:`RandomSource`: the operating system's generator (``os.urandom``),
    which the NTS cores draw from too; origin timestamps must be unpredictable (RFC 9109)."""

    def getrandbits(self, k: int, /) -> int:
        return int.from_bytes(os.urandom((k + 7) // 8), "big") >> (-k % 8)


class AssociationState(Enum):
    """Life cycle of an association."""

    ACTIVE = "active"
    DEMOBILIZED = "demobilized"


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the last valid reply said about the server (RFC 5905 §9.1 packet variables)."""

    leap: LeapIndicator
    version: int
    stratum: int
    poll: int
    precision: int
    root_delay: float
    root_dispersion: float
    reference_id: int
    reference_timestamp: int


#: Kiss codes with a protocol meaning for a client (RFC 5905 §7.4 a and b).
_ACTED_ON_KISSES = frozenset({KissCode.DENY, KissCode.RSTR, KissCode.RATE})

_REQUEST_PREFIX = bytes([(VERSION << 3) | Mode.CLIENT]) + bytes(39)  # RFC 9109: all else zero
_INTERLEAVED_PREFIX = bytes([(VERSION << 3) | Mode.CLIENT]) + bytes(23)  # then origin, receive
_BASIC_ANSWERS_BEFORE_GIVING_UP = 3  # basic replies in a row to interleaved requests


@dataclass(frozen=True, slots=True)
class _Exchange:
    """What interleaved mode needs of the last exchange that produced a reply."""

    sent: int  # T1, full time
    server_received: int  # T2, the reply's receive timestamp (wire value)
    received: int  # T4, full time


class Association:
    """A client association with one server (modes 3/4)."""

    def __init__(
        self,
        name: str,
        *,
        now: int,
        reference_id: int = 0,
        iburst: bool = True,
        minpoll: int = DEFAULT_MINPOLL,
        maxpoll: int = DEFAULT_MAXPOLL,
        precision: int = -20,
        rng: RandomSource | None = None,
        interleave: bool = True,
    ) -> None:
        if not MINPOLL <= minpoll <= maxpoll <= MAXPOLL:
            raise LocalProtocolError(
                f"need {MINPOLL} <= minpoll ({minpoll}) <= maxpoll ({maxpoll}) <= {MAXPOLL}"
            )
        self.name = name
        self.reference_id = reference_id  # what we put as refid when this is our system peer
        # Our own address on this source's socket as a reference id (A.5.5.2's p->dstaddr): a
        # server announcing it is synchronised to us. Set by the adapter once it knows it.
        self.local_reference_id: int | None = None
        self.minpoll = minpoll
        self.maxpoll = maxpoll
        self.hpoll = minpoll  # host poll exponent, set by the system process
        self.precision = precision
        self.state = AssociationState.ACTIVE
        self.reach = 0  # 8-bit reachability shift register (§13)
        self.burst = BURST_COUNT if iburst else 0
        self.filter = ClockFilter(precision=2.0**precision)
        #: Every accepted sample also goes into a regression: frequency and offset now.
        self.trend = OffsetTrend()
        self.server: ServerInfo | None = None
        self.next_poll = now  # first request goes out at once
        self.polls = 0
        self.counters: dict[str, int] = {}
        self._rng: RandomSource = rng if rng is not None else OsRandom()
        self._origin: int | None = None  # the random transmit timestamp we are waiting to see
        self._sent_at = 0  # T1, our real send time (full NTP time)
        self._last_timestamps: tuple[int, int] | None = None  # T2, T3 of the last reply: duplicates
        #: RFC 8915: with a session, requests carry NTS fields and only authenticated replies
        #: (or an NTS NAK echoing our unique identifier) are accepted.
        self.nts: NtsClientSession | None = None
        self._key_exchange_asked = False  # KeyExchangeNeeded went out; waiting for rekey()
        self.last_receive: int | None = None  # full time of the last valid reply
        self.interleave = interleave  # ask for interleaved mode (plain NTP only; see module doc)
        self._previous: _Exchange | None = None  # the last exchange that got a reply
        self._asked: _Exchange | None = None  # what the outstanding interleaved request names
        self._basic_answers = 0  # basic replies in a row to interleaved requests

    # -- poll process (§13, A.5.7) ------------------------------------------------------------

    @property
    def poll_interval(self) -> float:
        """Seconds between requests: the iburst spacing, else 2**poll."""
        return BURST_INTERVAL if self.burst > 0 else float(1 << self.poll)

    @property
    def poll(self) -> int:
        return max(self.minpoll, min(self.maxpoll, self.hpoll))

    def poll_due(self, now: int) -> bytes | KeyExchangeNeeded | None:
        """If a poll is due at ``now``: the request's bytes, and the next poll is scheduled.

        An NTS association without a cookie sends nothing (RFC 8915 §5.7): the first such poll
        returns :class:`KeyExchangeNeeded` for the adapter, and polls wait for :meth:`rekey`.
        """
        if self.state is not AssociationState.ACTIVE or now < self.next_poll:
            return None
        if self.nts is not None and self.nts.needs_ke:
            self._count("waiting for NTS-KE")
            self.next_poll = now + from_seconds(self.poll_interval)
            if self._key_exchange_asked:
                return None
            self._key_exchange_asked = True
            return KeyExchangeNeeded(self.name)
        self.polls += 1
        if self._origin is not None:
            self._count("timeout")
        self.reach = (self.reach << 1) & 0xFF
        if self.reach & 0x07 == 0 and self.filter.time is not None:
            # Three polls unanswered: shift a dummy sample in so the dispersion grows (A.5.7.1).
            self.filter.add_sample(0.0, MAXDISP, MAXDISP, to_seconds(now))
        if self.burst > 0:
            self.burst -= 1
        origin = self._rng.getrandbits(64)
        self._origin = origin
        self._sent_at = now
        interval = self.poll_interval
        if self.burst == 0 and interval >= 16:
            # Spread polls a little (±1/32 of the interval) so clients do not synchronise.
            spread = self._rng.getrandbits(16) / 65536.0 - 0.5
            interval += interval * spread / 16
        self.next_poll = now + from_seconds(interval)
        previous = self._previous
        if self.interleave and self.nts is None and previous is not None and previous.server_received & 1:
            # RFC 9769 §2: name the server's receive timestamp of its last reply, and say when
            # that reply arrived; the random transmit timestamp still identifies this request.
            self._asked = previous
            return (
                _INTERLEAVED_PREFIX
                + previous.server_received.to_bytes(8, "big")
                + to_timestamp(previous.received).to_bytes(8, "big")
                + origin.to_bytes(8, "big")
            )
        self._asked = None
        request = _REQUEST_PREFIX + origin.to_bytes(8, "big")
        return request if self.nts is None else self.nts.protect(request)

    def transmitted(self, sent: int) -> bool:
        """The adapter learnt (from the kernel) when the outstanding request really left: use
        that as T1 instead of the clock reading taken before sending it, if plausible (not
        before that reading, at most a second after). Returns whether it was taken."""
        if self._origin is None or not 0 <= sent - self._sent_at <= ONE_SECOND:
            return False
        self._sent_at = sent
        return True

    def rekey(self, c2s: bytes, s2c: bytes, cookies: Sequence[bytes], aead: int, now: int) -> None:
        """Take the keys and cookies of the NTS-KE that :class:`KeyExchangeNeeded` asked for, and
        poll at once."""
        if self.nts is None:
            raise LocalProtocolError(f"{self.name} is not an NTS association")
        self.nts.rekey(c2s, s2c, cookies, aead)
        self._key_exchange_asked = False
        self.next_poll = now

    # -- peer process (§8, §9, A.5.1) ---------------------------------------------------------

    def receive(self, data: bytes, now: int) -> Event | None:
        """Check one datagram from the server; return what happened, or None (nothing to say)."""
        if self.state is not AssociationState.ACTIVE:
            return self._drop(DropReason.DEMOBILIZED)
        try:
            packet = Packet.decode(data)
        except MalformedPacket as error:
            return self._drop(DropReason.MALFORMED, str(error))
        if packet.mode is not Mode.SERVER:
            return self._drop(DropReason.UNEXPECTED_MODE, packet.mode.name)
        if not 1 <= packet.version <= 4:
            return self._drop(DropReason.VERSION, str(packet.version))
        nak = False
        if self.nts is not None:
            try:
                nak = isinstance(self.nts.check(data, packet), NtsNak)
            except NtsReplyRejected as error:
                return self._drop(DropReason.NTS, str(error))
        if self._origin is None:
            return self._drop(DropReason.NOT_OUTSTANDING)
        asked = self._asked
        # An interleaved reply echoes the receive field of our request (our T4 of the previous
        # reply) instead of its transmit timestamp (RFC 9769 §2).
        interleaved = asked is not None and packet.origin_timestamp == to_timestamp(asked.received)
        if packet.origin_timestamp != self._origin and not interleaved:
            return self._drop(DropReason.BOGUS)
        # From here the reply is authentic to the extent an unauthenticated reply can be.
        self._origin = None
        if nak and self.nts is not None:
            # RFC 8915 §5.7: the server cannot open our cookie. With the jar emptied, the poll
            # due at once asks the adapter for NTS-KE.
            self.nts.accept_nak()
            self.next_poll = now
            self._count("kiss NTSN")
            return KissReceived(self.name, "NTSN")
        if packet.kiss_code in _ACTED_ON_KISSES:
            return self._kiss(packet)
        # Any other stratum-0 reply is an unsynchronised server's (chronyd and ntpd send stratum
        # 0, ntpd with "INIT" or "STEP"): §7.3 maps stratum 0 to MAXSTRAT, and §7.4 gives other
        # kiss codes no protocol meaning.
        stratum = MAXSTRAT if packet.stratum == 0 else packet.stratum
        # A duplicate repeats both server timestamps (§8; an interleaved reply may repeat the
        # previous reply's T3 when the server has no better send time for it).
        timestamps = (packet.receive_timestamp, packet.transmit_timestamp)
        if timestamps == self._last_timestamps:
            return self._drop(DropReason.DUPLICATE)
        self._last_timestamps = timestamps
        self.reach |= 1
        self.last_receive = now
        self.server = ServerInfo(
            leap=packet.leap,
            version=packet.version,
            stratum=stratum,
            poll=packet.poll,
            precision=packet.precision,
            root_delay=short_to_seconds(packet.root_delay),
            root_dispersion=short_to_seconds(packet.root_dispersion),
            reference_id=packet.reference_id,
            reference_timestamp=packet.reference_timestamp,
        )
        # The header checks of A.5.1.1 packet() (§9.2 Figure 22, tests 6 and 7).
        if packet.leap is LeapIndicator.UNSYNCHRONIZED or stratum >= MAXSTRAT:
            return self._drop(DropReason.UNSYNCHRONISED)
        if packet.receive_timestamp == 0 or packet.transmit_timestamp == 0:
            return self._drop(DropReason.TIMESTAMPS_MISSING)
        # A.5.1.1 "invalid header values": a root distance of MAXDISP or more. A source beyond
        # MAXDIST is sampled but not fit for selection (A.5.5.2 fit(), NtpClient.candidates),
        # so its samples are there the moment its distance falls.
        if self.server.root_delay / 2 + self.server.root_dispersion >= MAXDISP:
            return self._drop(DropReason.ROOT_DISTANCE)
        reference = packet.reference_timestamp
        # An interleaved reply's T3 is an earlier reply's: its T2 is when it was answered.
        answered = packet.receive_timestamp if interleaved else packet.transmit_timestamp
        if reference and duration_between(reference, answered) > 0:
            # A server cannot have set its clock after it sent the reply (a zero reference
            # time, "never set", carries no such claim).
            return self._drop(DropReason.REFERENCE_AFTER_TRANSMIT)
        if asked is not None:
            self._basic_answers = 0 if interleaved else self._basic_answers + 1
            if self._basic_answers >= _BASIC_ANSWERS_BEFORE_GIVING_UP:
                self.interleave = False  # the server does not do it: basic mode from now on
        if interleaved:
            assert asked is not None
            # The previous exchange, with the real send time of the previous reply as T3.
            first, second, last = asked.sent, asked.server_received, asked.received
        else:
            first, second, last = self._sent_at, packet.receive_timestamp, now
        self._previous = _Exchange(self._sent_at, packet.receive_timestamp, now)
        exchange = on_wire(to_timestamp(first), second, packet.transmit_timestamp, to_timestamp(last))
        offset = to_seconds(exchange.offset)
        delay = max(to_seconds(exchange.delay), 2.0**self.precision)
        # Sample dispersion: both precisions plus PHI from T1 to now (§8; for an interleaved
        # sample that also covers the time since the exchange it measures).
        dispersion = 2.0**packet.precision + 2.0**self.precision + PHI * to_seconds(now - first)
        self._count("accepted interleaved" if interleaved else "accepted")
        self.filter.add_sample(offset, delay, dispersion, to_seconds(now))
        # The offset holds at the middle of the exchange it measures (for an interleaved sample,
        # the previous one: a poll interval ago, 100 us at 50 ppm and 2 s).
        self.trend.add(to_seconds(first) + to_seconds(last - first) / 2, offset, delay)
        return SampleAccepted(self.name, offset, delay, dispersion, interleaved)

    def _kiss(self, packet: Packet) -> Event:
        code = packet.kiss_code
        text = packet.reference_id.to_bytes(4, "big").decode("ascii", errors="replace")
        self._count(f"kiss {text}")
        if code in (KissCode.DENY, KissCode.RSTR):
            # The server forbids us: stop for good (§7.4).
            self.state = AssociationState.DEMOBILIZED
            return SourceDemobilized(self.name, f"kiss-o'-death {text}")
        # RATE: slow down, at least double the interval and respect the server's poll (RFC 8633).
        self.burst = 0
        self.minpoll = min(self.maxpoll, max(self.poll + 1, packet.poll))
        self.hpoll = max(self.hpoll, self.minpoll)
        self.next_poll = self._sent_at + (ONE_SECOND << self.poll)
        return KissReceived(self.name, text)

    # -- statistics ---------------------------------------------------------------------------

    def root_distance(self, now: int) -> float:
        """Lambda, the root synchronisation distance of this source (A.5.5.2 ``root_dist``)."""
        if self.server is None or self.filter.time is None:
            return MAXDISP
        return (
            max(MINDISP, self.server.root_delay + self.filter.delay) / 2
            + self.server.root_dispersion
            + self.filter.distance_dispersion(to_seconds(now))
            + self.filter.jitter
        )

    def _drop(self, reason: DropReason, detail: str = "") -> PacketDropped:
        self._count(f"dropped: {reason}")
        return PacketDropped(reason, detail, self.name)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1
