"""The server side (modes 3 → 4, RFC 5905 §9.2 "fast_xmit"), hardened per RFC 8633.

:meth:`NtpServer.respond` is the whole hot path: bytes in, bytes or a drop reason out, with the
receive time as a parameter. It

* answers NTPv1-v4 client requests (mode 3) and nothing else: mode 6 (control) and mode 7
  (private) are never served, so there is no amplification; modes 1/2/4/5 are dropped;
* never replies with more bytes than it received (replies are 48 bytes; requests are at least 48);
* copies the request's transmit timestamp into the origin field and echoes its version and poll;
* writes era-correct timestamps (the 64-bit value of the full time, RFC 5905 §6), so it keeps
  serving correctly past 2036-02-07;
* rate-limits each client address (a leaky bucket per address) and answers abusers with a
  Kiss-o'-Death RATE at most once per ``kod_interval``, dropping the rest (RFC 8633 §4.4);
* answers addresses in a deny list with Kiss-o'-Death DENY (equally rate-limited);
  both policies live in :mod:`lockstep.ntp.limiter`;
* serves interleaved mode (RFC 9769) to clients that ask for it: the real send time of their
  previous reply, which the adapter learns from the kernel (:mod:`lockstep.ntp.interleave`).

Dropped datagrams are counted by reason in :attr:`NtpServer.dropped` and never raise.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final

from lockstep.ntp.client import SystemVariables
from lockstep.ntp.constants import MAXSTRAT, PHI
from lockstep.ntp.events import DropReason, PacketDropped
from lockstep.ntp.interleave import TransmitTimes, interleave_capable
from lockstep.ntp.limiter import ClientLimiter, Network, RateLimit
from lockstep.ntp.nts.server import NtsNakSent, NtsServer, carries_nts
from lockstep.ntp.timestamps import (
    from_seconds,
    short_from_seconds,
    to_seconds,
    to_timestamp,
)
from lockstep.ntp.wire import HEADER_LENGTH, Datagram, KissCode, LeapIndicator, Mode, Trailer, scan_trailer

__all__ = ["Datagram", "NtpServer", "RateLimit", "ServerCounters", "ServerState"]

_WIRE: Final = 0xFFFFFFFFFFFFFFFF  # a full time's 64-bit timestamp (RFC 5905 §6)
_PREFIX: Final = struct.Struct(">BBbbIIIQ")  # everything before the origin timestamp
_TIMESTAMPS: Final = struct.Struct(">QQ")  # receive and transmit timestamps


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the server says about its own synchronisation (RFC 5905 §11.1 system variables)."""

    leap: LeapIndicator
    stratum: int
    precision: int  # log2 seconds
    root_delay: float  # seconds
    root_dispersion: float  # seconds, at ``reference_time``
    reference_id: int
    reference_time: int  # full NTP time; 0 when never synchronised
    follows_clock: bool = False  # a local clock: the reference time is always "now"

    @classmethod
    def unsynchronized(cls, precision: int = -20) -> ServerState:
        return cls(LeapIndicator.UNSYNCHRONIZED, MAXSTRAT, precision, 0.0, 0.0, 0, 0)

    @classmethod
    def local(cls, stratum: int, now: int, precision: int = -20) -> ServerState:
        """A free-running local clock at ``stratum`` (like chrony's ``local stratum N``).

        The reference id is 127.127.1.1, the traditional local-clock address (chrony announces
        the same), and the reference time follows the clock.
        """
        return cls(LeapIndicator.NO_WARNING, stratum, precision, 0.0, 0.0, 0x7F7F0101, now, True)

    @classmethod
    def from_system(cls, system: SystemVariables, precision: int) -> ServerState:
        """What a server synchronised by our own client announces: the client's system variables
        (RFC 5905 §11.1), its reference time moved by the offset it serves corrected by (see
        :meth:`NtpServer.follow`)."""
        return cls(
            system.leap,
            system.stratum,
            precision,
            system.root_delay,
            system.root_dispersion,
            system.reference_id,
            system.reference_time + from_seconds(system.offset),
        )


@dataclass(slots=True)
class ServerCounters:
    """What the server did with the datagrams it was given."""

    replied: int = 0
    kiss_sent: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    kisses: dict[str, int] = field(default_factory=dict)  # kiss_sent by code (RATE, DENY, NTSN)

    def count_kiss(self, code: str) -> None:
        self.kiss_sent += 1
        self.kisses[code] = self.kisses.get(code, 0) + 1

    @property
    def received(self) -> int:
        # Every datagram is answered, kissed or dropped.
        return self.replied + self.kiss_sent + sum(self.dropped.values())


_DROP_SHORT = PacketDropped(DropReason.SHORT)
_DROP_VERSION = PacketDropped(DropReason.VERSION)
_DROP_CONTROL = PacketDropped(DropReason.CONTROL)
_DROP_MODE = PacketDropped(DropReason.NOT_A_REQUEST)
_DROP_RATE = PacketDropped(DropReason.RATE_LIMITED)
_DROP_DENIED = PacketDropped(DropReason.DENIED)
_DROP_TRAILER = PacketDropped(DropReason.MALFORMED_EXTENSIONS)


class NtpServer:
    """A stateless-per-packet NTP server core with per-client rate limiting."""

    def __init__(
        self,
        state: ServerState,
        *,
        rate_limit: RateLimit | None = None,
        deny: Sequence[Network] = (),
        clock_offset: int = 0,
        nts: NtsServer | None = None,
    ) -> None:
        self.nts = nts  # RFC 8915: requests with NTS fields get protected replies or NTSN
        self.limiter = ClientLimiter(rate_limit, deny)
        self.transmit_times = TransmitTimes()  # interleaved mode: when our replies really left
        self.counters = ServerCounters()
        self.clock_offset = clock_offset  # added to ``now``: lets a server serve corrected time
        self._templates: dict[int, bytes] = {}
        self._template_second = -1
        self._first_tables: dict[int, bytes] = {}  # reply first byte by request first byte, per leap
        self.state = state
        self.set_state(state)

    @property
    def dropped(self) -> dict[str, int]:
        return self.counters.dropped

    @property
    def rate_limit(self) -> RateLimit | None:
        return self.limiter.rate_limit

    @property
    def deny(self) -> tuple[Network, ...]:
        return self.limiter.deny

    def set_state(self, state: ServerState) -> None:
        """Change what the server announces (e.g. after its own client synchronised)."""
        self.state = state
        self._template_second = -1

    def follow(self, system: SystemVariables | None, fallback: ServerState) -> None:
        """Serve what our own client found: its system variables (RFC 5905 §11.1) and, since the
        system clock is not adjusted, the time corrected by its combined offset; or, with no
        ``system`` (no system peer), ``fallback`` and the uncorrected clock."""
        if system is None:
            self.set_state(fallback)
            self.clock_offset = 0
            return
        self.set_state(ServerState.from_system(system, fallback.precision))
        self.clock_offset = from_seconds(system.offset)

    def _prefix(self, now: int, version: int, poll: int) -> bytes:
        """Header bytes 0..23 for a reply; they depend on the state, the request's version and
        poll, and (through root dispersion and a local clock's reference time) on the second.

        Everything is computed at the start of ``now``'s second (root dispersion is aged one
        second more, to cover the whole second), so a template is the same whichever request
        of that second builds it: batched and per-datagram answers agree byte for byte."""
        key = (version << 8) | (poll & 0xFF)
        prefix = self._templates.get(key)
        if prefix is None:
            state = self.state
            reference_time = state.reference_time
            second = (now >> 32) << 32
            if state.follows_clock:
                reference_time = second
                dispersion = state.root_dispersion
            elif reference_time:
                age = max(0.0, to_seconds(second - state.reference_time))
                dispersion = state.root_dispersion + PHI * (age + 1.0)
            else:
                dispersion = state.root_dispersion
            prefix = _PREFIX.pack(
                (state.leap << 6) | (version << 3) | Mode.SERVER,
                state.stratum if state.stratum < MAXSTRAT else 0,  # §7.3: 16 goes out as 0 (A.5.3)
                max(-128, min(127, poll)),
                state.precision,
                short_from_seconds(state.root_delay),
                short_from_seconds(dispersion),
                state.reference_id,
                to_timestamp(reference_time),
            )
            self._templates[key] = prefix
        return prefix

    def batch_template(self, now: int) -> tuple[bytes, bytes]:
        """What a batched adapter needs to answer plain 48-byte requests received at ``now``
        without calling :meth:`respond` per datagram.

        Returns the first 24 reply bytes (the :meth:`respond` header for version 4, poll 0 at
        ``now + clock_offset``) and a 256-byte table mapping a request's first byte to the
        reply's first byte (leap, the request's version, mode 4), or to 0 for a request
        :meth:`respond` would drop (mode other than 3, version outside 1..4). The adapter then
        writes, per request of exactly 48 bytes: the table's byte, the prefix's bytes 1, 3..23,
        the request's poll byte (``respond`` echoes it unchanged), its transmit timestamp as
        the origin, and T2/T3 as era timestamps of ``time + clock_offset``; and it adds the
        replies to :attr:`counters`. The result is byte for byte what :meth:`respond` returns.

        With a deny list or rate limit the adapter first passes the batch's client keys and
        arrival times to ``limiter.admit_batch`` and answers each request it refuses with
        :meth:`refuse` instead (a kiss, or nothing).
        """
        now += self.clock_offset
        if now >> 32 != self._template_second:
            self._template_second = now >> 32
            self._templates = {}
        prefix = self._templates.get(4 << 8)
        if prefix is None:
            prefix = self._prefix(now, 4, 0)
        leap = int(self.state.leap)
        table = self._first_tables.get(leap)
        if table is None:
            table = self._first_tables[leap] = bytes(
                ((leap << 6) | (first & 0x38) | Mode.SERVER)
                if first & 0x07 == 3 and 0x08 <= first & 0x38 <= 0x20
                else 0
                for first in range(256)
            )
        return prefix, table

    def respond(
        self, data: Datagram, client: Hashable, now: int, transmit_time: int | None = None
    ) -> bytes | PacketDropped:
        """Answer one datagram received at ``now`` (full NTP time) from ``client``.

        ``now`` becomes the receive timestamp T2 and ``transmit_time`` (default: ``now``) the
        transmit timestamp T3 (RFC 5905 §8); adapters pass the kernel's arrival time and a clock
        reading taken just before the reply is queued.

        ``client`` identifies the sender for rate limiting and the deny list: the source IP
        address as text, packed bytes or an int (see :mod:`lockstep.ntp.limiter`), not the port:
        a client changing ports is still one client. Returns the reply bytes, or a
        :class:`PacketDropped` saying why there is none.
        """
        first = data[0] if len(data) >= HEADER_LENGTH else 0
        # Fast check: mode 3 and version 1..4 (bits 0x08..0x20); the reasons are sorted out below.
        if first & 0x07 != 3 or not 0x08 <= first & 0x38 <= 0x20:
            if len(data) < HEADER_LENGTH:
                return self._drop(_DROP_SHORT)
            mode = first & 7
            if mode != 3:
                return self._drop(_DROP_CONTROL if mode >= Mode.CONTROL else _DROP_MODE)
            return self._drop(_DROP_VERSION)
        nts: Trailer | None = None  # the extension fields of an NTS request
        if len(data) > HEADER_LENGTH:
            # RFC 7822: fields and a MAC, or nothing we answer (chrony drops these too). Then
            # RFC 8915 §5.7: a request carrying NTS fields gets protected time, a NAK or nothing.
            trailer = scan_trailer(data)
            if trailer is None:
                return self._drop(_DROP_TRAILER)
            if self.nts is not None and carries_nts(data):
                nts = trailer
        limiter = self.limiter
        if limiter.deny and limiter.is_denied(client):
            return self._kiss(data, client, now, KissCode.DENY, _DROP_DENIED, nts)
        if limiter.rate_limit is not None and not limiter.admit(client, now):
            return self._kiss(data, client, now, KissCode.RATE, _DROP_RATE, nts)
        offset = self.clock_offset
        now += offset
        if now >> 32 != self._template_second:  # templates are rebuilt once per second
            self._template_second = now >> 32
            self._templates = {}
        poll = data[2]
        prefix = self._templates.get(((first & 0x38) << 5) | poll)
        if prefix is None:
            prefix = self._prefix(now, (first >> 3) & 7, poll if poll < 128 else poll - 256)
        # Origin = the request's transmit timestamp, then T2 (receive) and T3 (transmit), §8.
        # T2 is odd and T3 even, as chronyd makes them, so that a request whose origin is odd
        # may name one of our receive timestamps (interleaved mode, lockstep.ntp.interleave);
        # T3 stays after T2.
        received = now | 1
        sent = max((now if transmit_time is None else transmit_time + offset) & ~1, received + 1)
        origin = data[40:48]
        if data[31] & 1 and interleave_capable(data):
            previous = self.transmit_times.take(client, int.from_bytes(data[24:32], "big"))
            if previous is not None:  # RFC 9769 §2: the time our previous reply really left
                origin = data[32:40]
            self.transmit_times.remember(client, received & _WIRE, sent)
            if previous is not None:
                sent = previous & ~1
        reply = prefix + origin + _TIMESTAMPS.pack(received & _WIRE, sent & _WIRE)
        if nts is not None:
            return self._respond_nts(bytes(data), nts, reply, now)
        self.counters.replied += 1
        return reply

    def root_distance(self, now: int) -> float:
        """The root distance announced at ``now`` (system clock, full NTP time): root delay / 2
        plus root dispersion aged at PHI since the reference time (RFC 5905 §11.2.3's LAMBDA)."""
        state = self.state
        dispersion = state.root_dispersion
        if state.reference_time and not state.follows_clock:
            dispersion += PHI * max(0.0, to_seconds(now + self.clock_offset - state.reference_time))
        return state.root_delay / 2 + dispersion

    def transmitted(self, client: Hashable, receive_timestamp: int, transmit_time: int) -> None:
        """The adapter learnt from the kernel that our reply to ``client`` that carried
        ``receive_timestamp`` (wire value) left at ``transmit_time`` (full NTP time of the
        system clock): serve that time to the client's next interleaved request."""
        self.transmit_times.transmitted(client, receive_timestamp, transmit_time + self.clock_offset)

    def refuse(self, data: Datagram, client: Hashable, now: int, code: KissCode) -> bytes | PacketDropped:
        """What :meth:`respond` answers a plain request from ``client`` received at ``now`` that
        the deny list (``code`` DENY) or the rate limit (RATE) refused: a kiss, or a drop."""
        reason = _DROP_DENIED if code is KissCode.DENY else _DROP_RATE
        return self._kiss(data, client, now, code, reason, None)

    def _respond_nts(self, data: bytes, trailer: Trailer, reply: bytes, now: int) -> bytes | PacketDropped:
        """RFC 8915 §5.7: protect the reply, NAK a cookie we cannot open, or drop the request."""
        assert self.nts is not None
        protected = self.nts.respond(data, trailer, reply, now - self.clock_offset)
        if isinstance(protected, NtsNakSent):
            self.counters.count_kiss(KissCode.NTSN.text)
            return protected.data
        if isinstance(protected, PacketDropped):
            return self._drop(protected)
        self.counters.replied += 1
        return protected

    def _kiss(
        self,
        data: Datagram,
        client: Hashable,
        now: int,
        code: KissCode,
        reason: PacketDropped,
        nts: Trailer | None,
    ) -> bytes | PacketDropped:
        """A Kiss-o'-Death, at most one per ``kod_interval`` per client; otherwise a drop.

        ``nts``: the extension fields when the request is an NTS request."""
        if not self.limiter.kiss_due(client, now):
            return self._drop(reason)
        first = (LeapIndicator.UNSYNCHRONIZED << 6) | (data[0] & 0x38) | Mode.SERVER
        # RFC 5905 §7.4: stratum 0, the code in the reference id; origin echoes the request so
        # the client can authenticate it (RFC 8633 §4.4); other timestamps stay zero.
        poll = max(data[2] if data[2] < 128 else data[2] - 256, 10)
        header = _PREFIX.pack(first, 0, poll, self.state.precision, 0, 0, code, 0)
        kiss = header + bytes(data[40:48]) + bytes(16)
        if nts is not None:
            # RFC 8915 §5.7: NTS clients ignore unauthenticated kisses other than NTSN, so an
            # NTS request gets its kiss authenticated (with a replacement cookie), a NAK, or
            # nothing when it is not a well-formed NTS request.
            assert self.nts is not None
            protected = self.nts.respond(bytes(data), nts, kiss, now)
            if isinstance(protected, PacketDropped):
                return self._drop(protected)
            if isinstance(protected, NtsNakSent):
                code, kiss = KissCode.NTSN, protected.data
            else:
                kiss = protected
        self.limiter.record_kiss(client, now)
        self.counters.count_kiss(code.text)
        return kiss

    def _drop(self, reason: PacketDropped) -> PacketDropped:
        dropped = self.counters.dropped
        key = reason.reason.value  # counted by reason; NtsServer's counters keep the details
        dropped[key] = dropped.get(key, 0) + 1
        return reason
