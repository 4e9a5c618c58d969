"""The adjtimex binding, exercised read-only: the real clock is never changed by tests."""

from __future__ import annotations

import ctypes
import sys

import pytest

from lockstep.ntp.aio import adjust

linux_64 = pytest.mark.skipif(
    sys.platform != "linux" or ctypes.sizeof(ctypes.c_long) != 8,
    reason="struct timex layout checked for 64-bit Linux",
)


@linux_64
def test_struct_timex_matches_the_kernel_abi() -> None:
    assert ctypes.sizeof(adjust._Timex) == 208  # sizeof(struct timex) on LP64 Linux
    assert adjust._Timex.time_sec.offset == 72  # struct timeval time


@linux_64
def test_read_only_query_returns_plausible_kernel_state() -> None:
    offset, frequency, tick = adjust.read_state()
    assert 9000 <= tick <= 11000  # µs per USER_HZ tick (100 Hz): proves the fields line up
    assert abs(frequency) <= 500e-6  # the kernel clamps frequency to ±500 ppm
    assert abs(offset) < 1.0
