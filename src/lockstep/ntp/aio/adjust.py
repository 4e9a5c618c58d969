"""Applying the discipline's decisions to the system clock (Linux): step and adjtimex slew.

Only ``lockstep ntp monitor --adjust`` uses this, and only when the process may set the clock
(CAP_SYS_TIME). Tests never call it on the real clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

from lockstep.ntp.errors import NtpError

ADJ_FREQUENCY = 0x0002
ADJ_OFFSET_SINGLESHOT = 0x8001  # adjtime()-style slew of an offset in microseconds


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (Linux, LP64): modes .. tai, then 11 reserved ints.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("reserved", ctypes.c_int * 11),
    ]


class ClockAdjustError(NtpError):
    """The clock could not be adjusted (usually: no CAP_SYS_TIME)."""


def _adjtimex(timex: _Timex) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.adjtimex(ctypes.byref(timex)) < 0:
        errno = ctypes.get_errno()
        raise ClockAdjustError(f"adjtimex failed: {os.strerror(errno)}")


def may_adjust() -> bool:
    """Whether this process can set the clock (root or CAP_SYS_TIME, approximated by euid 0)."""
    return os.geteuid() == 0


def step(offset: float) -> None:
    """Step CLOCK_REALTIME by ``offset`` seconds."""
    try:
        time.clock_settime_ns(
            time.CLOCK_REALTIME, time.clock_gettime_ns(time.CLOCK_REALTIME) + round(offset * 1e9)
        )
    except OSError as error:
        raise ClockAdjustError(f"cannot step the clock: {error}") from error


def slew(offset: float, frequency: float) -> None:
    """Slew out ``offset`` seconds (kernel single-shot) and set the frequency (s/s)."""
    timex = _Timex()
    timex.modes = ADJ_OFFSET_SINGLESHOT
    timex.offset = round(offset * 1e6)
    _adjtimex(timex)
    timex = _Timex()
    timex.modes = ADJ_FREQUENCY
    timex.freq = round(frequency * 1e6 * 65536)
    _adjtimex(timex)


def read_state() -> tuple[float, float, int]:
    """The kernel clock's current (pending offset s, frequency s/s, tick µs); changes nothing."""
    timex = _Timex()  # modes = 0: a read-only query
    _adjtimex(timex)
    # Without STA_NANO the offset is in µs; freq is ppm with a 16-bit fraction.
    return timex.offset * 1e-6, timex.freq / 65536 * 1e-6, timex.tick
