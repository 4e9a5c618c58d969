"""Exact NTP time: 64-bit timestamps, 32-bit short format, and era arithmetic (RFC 5905 §6).

Everything here is an ``int``:

* a **full time** counts units of 2**-32 s since the prime epoch 1900-01-01 00:00:00 UTC (era 0).
  It is unbounded: era 1 starts on 2036-02-07 06:28:16 UTC at ``1 << 64``. This is RFC 5905's
  "date format" (128 bits) restricted to the 32.32 resolution of the timestamp format.
* a **timestamp** is the 64-bit wire value (32 bits of seconds, 32 bits of fraction): the full time
  modulo 2**64. It carries no era; :func:`from_timestamp` recovers it from a pivot (our own clock),
  as RFC 5905 §6 prescribes, choosing the era that puts the value within 68 years of the pivot.
* a **short** is the 32-bit unsigned 16.16 format used for root delay and root dispersion.
* a **duration** is a signed count of 2**-32 s. Differences of two timestamps use 64-bit two's
  complement arithmetic, valid for spans below 68 years (RFC 5905 §6).

Floats appear only in the ``*_to_seconds`` helpers, for display and for the statistics of the
clock filter (which RFC 5905 Appendix A computes in double precision too).
"""

from __future__ import annotations

from typing import Final

FRACTION_BITS: Final = 32
ONE_SECOND: Final = 1 << FRACTION_BITS  # one second, as a duration
ERA_SPAN: Final = 1 << 64  # one era, as a duration (2**32 s, about 136 years)
TIMESTAMP_MASK: Final = ERA_SPAN - 1
SHORT_ONE_SECOND: Final = 1 << 16
SHORT_MASK: Final = (1 << 32) - 1

#: Seconds from the NTP prime epoch (1900) to the Unix epoch (1970): 70 years with 17 leap days.
UNIX_EPOCH_SECONDS: Final = 2_208_988_800
_UNIX_EPOCH: Final = UNIX_EPOCH_SECONDS << FRACTION_BITS
_NS_PER_S: Final = 1_000_000_000


def from_unix_ns(unix_ns: int) -> int:
    """Full NTP time for a Unix time in integer nanoseconds (rounded to the nearest 2**-32 s)."""
    return _UNIX_EPOCH + ((unix_ns << FRACTION_BITS) + _NS_PER_S // 2) // _NS_PER_S


def to_unix_ns(time: int) -> int:
    """Unix time in integer nanoseconds for a full NTP time (rounded to the nearest ns)."""
    return ((time - _UNIX_EPOCH) * _NS_PER_S + ONE_SECOND // 2) >> FRACTION_BITS


def to_timestamp(time: int) -> int:
    """The 64-bit wire timestamp of a full time: its offset within its era (RFC 5905 §6)."""
    return time & TIMESTAMP_MASK


def era(time: int) -> int:
    """The era number of a full time (0 until 2036-02-07, 1 after; negative before 1900)."""
    return time >> 64


def from_timestamp(timestamp: int, pivot: int) -> int:
    """The full time nearest to ``pivot`` whose wire timestamp is ``timestamp`` (RFC 5905 §6).

    The pivot is usually our own clock. Any timestamp within 68 years of the pivot resolves to
    the right era, which is what lets a client and server straddle the 2036 rollover.
    """
    if not 0 <= timestamp <= TIMESTAMP_MASK:
        raise ValueError(f"timestamp out of 64-bit range: {timestamp}")
    return pivot + duration_between(timestamp, to_timestamp(pivot))


def duration_between(later: int, earlier: int) -> int:
    """``later - earlier`` for two 64-bit timestamps, as a signed 64-bit duration (RFC 5905 §6)."""
    difference = (later - earlier) & TIMESTAMP_MASK
    return difference - ERA_SPAN if difference >= ERA_SPAN >> 1 else difference


def to_seconds(duration: int) -> float:
    """A duration (or full time) in seconds, for display and statistics."""
    return duration / ONE_SECOND


def from_seconds(seconds: float) -> int:
    """A duration in 2**-32 s units from seconds (rounded to nearest)."""
    return round(seconds * ONE_SECOND)


def short_to_seconds(short: int) -> float:
    """Seconds for a 16.16 unsigned short-format value (root delay, root dispersion)."""
    return short / SHORT_ONE_SECOND


def short_from_seconds(seconds: float) -> int:
    """The 16.16 short format for a non-negative number of seconds, saturating at its maximum."""
    if seconds <= 0:
        return 0
    return min(SHORT_MASK, round(seconds * SHORT_ONE_SECOND))


def short_from_duration(duration: int) -> int:
    """The 16.16 short format for a non-negative duration in 2**-32 s, rounded up, saturating."""
    if duration <= 0:
        return 0
    return min(SHORT_MASK, -(-duration >> 16))
