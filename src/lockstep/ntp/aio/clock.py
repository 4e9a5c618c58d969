"""The system clock, read as exact NTP time (the core never reads a clock itself)."""

from __future__ import annotations

import math
import time

from lockstep.ntp.timestamps import from_unix_ns


def now() -> int:
    """The system clock (CLOCK_REALTIME) as a full NTP time."""
    return from_unix_ns(time.time_ns())


def measure_precision(samples: int = 200) -> int:
    """log2 of the smallest step between two clock readings, as RFC 5905 §7.3 "precision" asks.

    Clamped to [-30, -6]; a clock read costing ~40 ns gives about -24.
    """
    smallest = 1 << 62
    previous = time.time_ns()
    for _ in range(samples):
        current = time.time_ns()
        if current > previous:
            smallest = min(smallest, current - previous)
        previous = current
    if smallest == 1 << 62:
        return -20
    return max(-30, min(-6, math.ceil(math.log2(smallest * 1e-9))))
