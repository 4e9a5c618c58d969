"""The clock filter (RFC 5905 §10, A.5.2)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from lockstep.ntp import ClockFilter
from lockstep.ntp.constants import MAXDISP, PHI


def test_lowest_delay_sample_wins() -> None:
    f = ClockFilter(popcorn_gate=None)
    f.add_sample(0.010, 0.050, 0.0, time=1.0)
    f.add_sample(0.002, 0.010, 0.0, time=2.0)  # lowest delay
    f.add_sample(0.030, 0.080, 0.0, time=3.0)
    assert f.offset == 0.002
    assert f.delay == 0.010


def test_jitter_is_rms_of_offsets_around_best() -> None:
    f = ClockFilter(popcorn_gate=None)
    f.add_sample(0.0, 0.010, 0.0, time=1.0)
    f.add_sample(0.003, 0.020, 0.0, time=2.0)
    f.add_sample(-0.004, 0.030, 0.0, time=3.0)
    assert math.isclose(f.jitter, math.sqrt((0.003**2 + 0.004**2) / 2))


def test_old_samples_age_at_phi_and_are_not_reused() -> None:
    f = ClockFilter(popcorn_gate=None)
    f.add_sample(0.001, 0.010, 0.0, time=0.0)
    assert f.add_sample(0.005, 0.020, 0.0, time=100.0) is False  # best is still the old one
    assert f.samples[1].dispersion == 100 * PHI
    assert f.offset == 0.001


def test_empty_filter_has_maximal_dispersion() -> None:
    f = ClockFilter()
    assert f.dispersion == MAXDISP
    assert f.distance_dispersion(10.0) == MAXDISP


def test_popcorn_spike_is_held_back_once() -> None:
    f = ClockFilter()
    for i in range(4):
        f.add_sample(0.001 * (i % 2), 0.010, 0.0, time=float(i))
    assert f.add_sample(0.5, 0.001, 0.0, time=10.0) is False  # a spike: not used
    assert f.offset < 0.01
    assert f.add_sample(0.5, 0.001, 0.0, time=11.0) is True  # persistent: accepted
    assert f.offset == 0.5


@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(0, 1), st.floats(0, 0.1)), min_size=1, max_size=30))
def test_output_is_one_of_the_last_eight_samples(samples: list[tuple[float, float, float]]) -> None:
    f = ClockFilter(popcorn_gate=None)
    for i, (offset, delay, dispersion) in enumerate(samples):
        f.add_sample(offset, delay, dispersion, time=float(i))
    window = samples[-8:]
    assert (f.offset, f.delay) in [(o, d) for o, d, _ in samples]
    assert f.delay <= max(d for _, d, _ in samples)
    assert f.jitter >= f.precision
    assert min(d for _, d, _ in window) <= f.delay or f.time is not None
