"""The offset trend (frequency estimate) and the client's offset carried to now."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.ntp.client import NtpClient
from lockstep.ntp.errors import LocalProtocolError
from lockstep.ntp.trend import OffsetTrend
from ntp.ntp_simulator import Path, Simulation, local_server


@given(
    offset=st.floats(-1.0, 1.0),
    frequency=st.floats(-500e-6, 500e-6),
    interval=st.floats(1.0, 1024.0),
    count=st.integers(4, 70),
)
def test_exact_linear_samples_give_their_offset_and_frequency(
    offset: float, frequency: float, interval: float, count: int
) -> None:
    trend = OffsetTrend()
    for i in range(count):
        trend.add(1000.0 + i * interval, offset + frequency * i * interval, 0.02)
    fit = trend.fit
    assert fit is not None
    later = 1000.0 + count * interval
    assert fit.frequency == pytest.approx(frequency, abs=1e-9)
    assert fit.offset_at(later) == pytest.approx(offset + frequency * count * interval, abs=1e-6)


def test_queued_samples_weigh_less_than_fast_ones() -> None:
    """Half the samples waited 20 ms in a queue one way (a 10 ms offset error): the fit stays
    near the fast half, where an unweighted mean would sit 5 ms off."""
    trend = OffsetTrend()
    for i in range(32):
        slow = i % 2 == 1
        trend.add(float(i), 0.010 if slow else 0.0, 0.040 if slow else 0.020)
    fit = trend.fit
    assert fit is not None
    assert abs(fit.offset_at(32.0)) < 0.0002


def test_a_clock_that_jumps_is_followed_once_the_residuals_show_it() -> None:
    """A source whose offset jumps 5 ms (same delay): the runs test drops the old samples, so
    the estimate gets there within a dozen samples instead of after a whole 64-sample window."""
    trend = OffsetTrend()
    rng = random.Random(5)
    for i in range(64):
        trend.add(float(i), rng.gauss(0.0, 1e-5), 0.020)
    for i in range(64, 80):
        trend.add(float(i), 0.005 + rng.gauss(0.0, 1e-5), 0.020)
    fit = trend.fit
    assert fit is not None
    assert fit.offset_at(80.0) == pytest.approx(0.005, abs=0.0005)
    assert len(trend.samples) < 40


def test_few_samples_give_no_fit_and_old_samples_are_ignored() -> None:
    trend = OffsetTrend()
    for i in range(3):
        assert trend.add(float(i), 0.001, 0.01) is None
    assert trend.add(3.0, 0.001, 0.01) is not None
    trend.add(1.0, 5.0, 0.01)  # older than the newest: an exchange measured twice
    assert len(trend.samples) == 4
    trend.reset()
    assert trend.fit is None and trend.samples == ()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="window"):
        OffsetTrend(window=3)
    with pytest.raises(LocalProtocolError, match="noise floor"):
        OffsetTrend(noise_floor=0.0)


def test_a_drifting_clock_is_reported_as_it_is_now_not_as_it_was_polls_ago() -> None:
    """Our clock runs 50 ppm fast and the monitor (no discipline) polls every 16 s over a path
    with queueing jitter, heavier on the way back. RFC 5905's filter serves the lowest-delay of
    the last eight samples, up to 128 s old (6.4 ms at 50 ppm); the offset carried to now with
    the trend's frequency stays within a fraction of a millisecond of the truth."""
    client = NtpClient(discipline=False)
    sim = Simulation(client, seed=11, client_frequency_error=50e-6)
    sim.add_server(
        local_server("s", to_server=Path(0.010, jitter=0.002, loss=0.05), to_client=Path(0.010, jitter=0.008))
    )
    sim.run(300.0)  # warm-up: the filter and the trend fill
    errors = []
    for _ in range(120):
        sim.run(5.0)
        estimate = client.offset_at(sim.client_clock())
        assert estimate is not None and client.system is not None
        errors.append(estimate - -sim.client_error)  # offset = true time - our clock
    rms = math.sqrt(sum(e * e for e in errors) / len(errors))
    assert client.system.frequency == pytest.approx(-50e-6, abs=5e-6)
    assert rms < 0.0005, f"RMS error {rms * 1e3:.3f} ms"
    assert max(abs(e) for e in errors) < 0.0015
