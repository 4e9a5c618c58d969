"""The on-wire protocol's offset and delay (RFC 5905 §8), exact for NTP timestamps.

Given the four timestamps of one exchange::

    T1  client transmit (origin)      T2  server receive
    T3  server transmit               T4  client receive

    offset  theta = ((T2 - T1) + (T3 - T4)) / 2
    delay   delta = (T4 - T1) - (T3 - T2)

:func:`on_wire` takes 64-bit wire timestamps and returns exact durations in 2**-32 s, using the
era-free 64-bit difference arithmetic of RFC 5905 §6 (so an exchange across the 2036 rollover is
computed correctly). :func:`on_wire_seconds` is the same math on float seconds, for the WebSocket
time sync where browsers report milliseconds.

Example (WebSocket time sync, times in seconds)::

    from lockstep.ntp import on_wire_seconds, ClockFilter
    sample = on_wire_seconds(t1, t2, t3, t4)
    clock_filter.add_sample(sample.offset, sample.delay, dispersion=0.0, time=t4)
    server_time_estimate = local_time + clock_filter.offset
"""

from __future__ import annotations

from dataclasses import dataclass

from lockstep.ntp.timestamps import duration_between


@dataclass(frozen=True, slots=True)
class Exchange:
    """Offset (theta) and round-trip delay (delta) of one exchange, in 2**-32 s units."""

    offset: int
    delay: int


@dataclass(frozen=True, slots=True)
class ExchangeSeconds:
    """Offset (theta) and round-trip delay (delta) of one exchange, in seconds."""

    offset: float
    delay: float


def on_wire(t1: int, t2: int, t3: int, t4: int) -> Exchange:
    """Offset and delay from four 64-bit wire timestamps (RFC 5905 §8).

    The offset is rounded toward negative infinity by half a unit (2**-33 s) at most; the delay is
    exact. A negative delay (possible when the server's clock runs fast relative to ours during
    the exchange) is returned as is; callers clamp it to the precision, as §8 says.
    """
    forward = duration_between(t2, t1)
    backward = duration_between(t3, t4)
    return Exchange(offset=(forward + backward) >> 1, delay=forward - backward)


def on_wire_seconds(t1: float, t2: float, t3: float, t4: float) -> ExchangeSeconds:
    """Offset and delay from four timestamps in seconds (any common epoch) (RFC 5905 §8)."""
    forward = t2 - t1
    backward = t3 - t4
    return ExchangeSeconds(offset=(forward + backward) / 2, delay=forward - backward)
