"""Lockstep's NTPv4 implementation (RFC 5905): a pure, sans-I/O core.

Nothing in this package (outside :mod:`lockstep.ntp.aio`) opens a socket, reads a clock or
imports asyncio: time is always a parameter. Modules:

* :mod:`~lockstep.ntp.timestamps` — exact 32.32 / 16.16 fixed point and era arithmetic (§6)
* :mod:`~lockstep.ntp.wire` — the packet codec (§7.3, RFC 7822 extension fields)
* :mod:`~lockstep.ntp.onwire` — offset and delay of one exchange (§8)
* :mod:`~lockstep.ntp.filter` — the clock filter (§10, A.5.2)
* :mod:`~lockstep.ntp.selection` — selection, cluster, combine (§11.2, A.5.5)
* :mod:`~lockstep.ntp.association` — peer and poll processes of one source (§9, §13)
* :mod:`~lockstep.ntp.client` — system process and clock discipline (§11-12, A.5.5.6)
* :mod:`~lockstep.ntp.server` — the server reply path with RFC 8633 rate limiting
* :mod:`~lockstep.ntp.errors` — the error hierarchy

Public API for time sync over another transport (Lockstep's WebSocket)::

    from lockstep.ntp import ClockFilter, on_wire_seconds

    clock_filter = ClockFilter()
    sample = on_wire_seconds(t1, t2, t3, t4)      # t1/t4 client clock, t2/t3 server clock
    clock_filter.add_sample(sample.offset, sample.delay, dispersion=0.0, time=t4)
    clock_filter.offset, clock_filter.jitter      # best offset (server - client) and its jitter
"""

from lockstep.ntp.errors import LocalProtocolError, MalformedPacket, NtpError, RemoteProtocolError
from lockstep.ntp.filter import ClockFilter, FilterSample
from lockstep.ntp.onwire import Exchange, ExchangeSeconds, on_wire, on_wire_seconds

__all__ = [
    "ClockFilter",
    "Exchange",
    "ExchangeSeconds",
    "FilterSample",
    "LocalProtocolError",
    "MalformedPacket",
    "NtpError",
    "RemoteProtocolError",
    "on_wire",
    "on_wire_seconds",
]
