"""Server time for clients: the NTP on-wire exchange over the app's WebSocket (``time.sync``).

Each exchange gives one (offset, delay) sample by RFC 5905 §8; the samples go through the same clock
filter as Lockstep's NTP client (:class:`lockstep.ntp.ClockFilter`, RFC 5905 §10), whose best
(lowest-delay) sample is the offset kept. Certificates, device lists and "code made N s ago" then use
server time, so a phone whose clock is wrong still agrees with the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lockstep.client.connection import ServerConnection
from lockstep.ntp import ClockFilter, on_wire_seconds

EXCHANGES = 4
CLOCK_WARNING_S = 5.0


def _local_seconds() -> float:
    return time.time_ns() / 1e9


@dataclass(frozen=True, slots=True)
class ServerClock:
    """This device's estimate of server time."""

    offset_s: float
    """Server time minus local time."""
    error_s: float
    """A conservative bound: half the best round trip plus the jitter."""

    def now_ms(self) -> int:
        return round((_local_seconds() + self.offset_s) * 1000)

    @property
    def far_off(self) -> bool:
        return abs(self.offset_s) > CLOCK_WARNING_S

    def describe(self) -> str:
        direction = "behind" if self.offset_s > 0 else "ahead of"
        return f"this device's clock is {abs(self.offset_s):.1f} s {direction} the server's"


async def measure(connection: ServerConnection, exchanges: int = EXCHANGES) -> ServerClock:
    clock_filter = ClockFilter(precision=1e-6, popcorn_gate=None)
    for _ in range(exchanges):
        t1 = _local_seconds()
        reply = await connection.request("time.sync", t1=t1 * 1000)
        t4 = _local_seconds()
        sample = on_wire_seconds(t1, reply["t2"] / 1000, reply["t3"] / 1000, t4)
        clock_filter.add_sample(sample.offset, max(sample.delay, 0.0), dispersion=0.0, time=t4)
    return ServerClock(clock_filter.offset, clock_filter.delay / 2 + clock_filter.jitter)
