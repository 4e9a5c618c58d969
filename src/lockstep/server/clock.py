"""Server time in milliseconds since the Unix epoch: the one clock every device corrects itself to."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def system_clock() -> int:
    return time.time_ns() // 1_000_000


def precise_ms(clock: Clock) -> float:
    """A reading of ``clock`` in milliseconds, with the system clock's sub-millisecond digits when
    ``clock`` is the system clock: time.sync's on-wire math (RFC 5905 §8) is only as good as its
    timestamps. Any other clock (a test's fake one) is read as it is."""
    return time.time_ns() / 1_000_000 if clock is system_clock else float(clock())
