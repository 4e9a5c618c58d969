"""Era arithmetic and fixed point (RFC 5905 §6)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lockstep.ntp import timestamps as ts

ERA1_START = 1 << 64  # 2036-02-07 06:28:16 UTC
ROLLOVER_UNIX_S = 2_085_978_496


def test_unix_epoch_is_2208988800_ntp_seconds() -> None:
    assert ts.from_unix_ns(0) == 2_208_988_800 << 32


def test_era_one_starts_2036_02_07() -> None:
    assert ts.from_unix_ns(ROLLOVER_UNIX_S * 10**9) == ERA1_START
    assert ts.era(ERA1_START) == 1
    assert ts.era(ERA1_START - 1) == 0
    assert ts.to_timestamp(ERA1_START) == 0


def test_timestamp_just_after_rollover_resolves_into_era_one() -> None:
    pivot = ERA1_START - 10 * ts.ONE_SECOND  # our clock: 10 s before the rollover
    wire = ts.to_timestamp(ERA1_START + 5 * ts.ONE_SECOND)  # small wire value
    assert ts.from_timestamp(wire, pivot) == ERA1_START + 5 * ts.ONE_SECOND


def test_difference_across_rollover_is_small_and_signed() -> None:
    before = ts.to_timestamp(ERA1_START - ts.ONE_SECOND)
    after = ts.to_timestamp(ERA1_START + ts.ONE_SECOND)
    assert ts.duration_between(after, before) == 2 * ts.ONE_SECOND
    assert ts.duration_between(before, after) == -2 * ts.ONE_SECOND


def test_short_format() -> None:
    assert ts.short_from_seconds(1.5) == 0x0001_8000
    assert ts.short_to_seconds(0x0000_8000) == 0.5
    assert ts.short_from_seconds(1e9) == 0xFFFF_FFFF
    assert ts.short_from_seconds(-1) == 0
    assert ts.short_from_duration(1) == 1  # rounds up: never under-reports dispersion


@given(st.integers(min_value=-(10**19), max_value=10**19))
def test_unix_ns_round_trip(unix_ns: int) -> None:
    assert ts.to_unix_ns(ts.from_unix_ns(unix_ns)) == unix_ns


@given(
    st.integers(min_value=0, max_value=5 * (1 << 64)),
    st.integers(min_value=-(1 << 61), max_value=(1 << 61)),
)
def test_from_timestamp_recovers_any_time_within_68_years_of_pivot(time: int, skew: int) -> None:
    pivot = time + skew
    assert ts.from_timestamp(ts.to_timestamp(time), pivot) == time


@given(st.integers(0, ts.TIMESTAMP_MASK), st.integers(-(1 << 62), 1 << 62))
def test_duration_between_inverts_addition(start: int, duration: int) -> None:
    later = (start + duration) & ts.TIMESTAMP_MASK
    assert ts.duration_between(later, start) == duration
