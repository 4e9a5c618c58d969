"""Offset and frequency of a source's clock against ours: a weighted regression over its samples.

RFC 5905's clock filter (:mod:`lockstep.ntp.filter`) serves the lowest-delay of the last eight
samples, which may be eight polls old; it has no notion of frequency, which its clock discipline
(A.5.5.6) learns only by steering the clock. A client that does not steer (``lockstep ntp monitor``
without ``--adjust``) or that reports between polls needs the offset *now*: :class:`OffsetTrend`
fits ``offset = a + b * (t - t_mean)`` by weighted least squares over the last ``window`` samples
(``b`` is the frequency, s/s) and extrapolates, as chronyd's regression does.

Weights: a sample's offset error is bounded by half its delay in excess of the best round trip
(the on-wire error is at most half the round trip, §8, and the best sample's share of queueing is
the floor we can see), so a sample weighs ``1 / (excess / 2 + noise_floor)**2``: samples that
waited in a queue count for little, and a step in path delay (a route change) moves the estimate
only as its samples come to dominate.

Like chronyd, the fit is checked with a runs test on the signs of its residuals: a model that fits
gives residuals of random sign; too few runs mean the clock's offset or frequency changed within
the window, and the oldest half of the samples is dropped (repeatedly) until the rest fit.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass

from lockstep.ntp.errors import LocalProtocolError

#: Samples kept: chronyd keeps up to 64 too (at poll 1, two minutes).
DEFAULT_WINDOW = 64
#: The error we assume for the best sample, seconds: sets how much more a low-delay sample weighs.
DEFAULT_NOISE_FLOOR = 1e-4
#: Fewer samples than this give no frequency (the filter's offset is used meanwhile).
MIN_SAMPLES = 4
#: Windows this short are never trimmed by the runs test (too few residuals to judge).
_MIN_RUNS_TEST = 8
#: A residual takes part in the runs test beyond this many times its sample's error bound.
_SIGNIFICANT = 2.0
#: Runs below the expected count by more than this many standard deviations fail the test.
_RUNS_SIGMAS = 2.0


@dataclass(frozen=True, slots=True)
class TrendSample:
    time: float  # seconds on the caller's clock, when the offset was measured
    offset: float
    delay: float


@dataclass(frozen=True, slots=True)
class Fit:
    """``offset(t) = offset + frequency * (t - time)``."""

    time: float
    offset: float
    frequency: float  # s/s; positive when the source's clock gains on ours
    samples: int

    def offset_at(self, time: float) -> float:
        return self.offset + self.frequency * (time - self.time)


class OffsetTrend:
    """The last ``window`` samples of one source and the regression through them."""

    def __init__(self, *, window: int = DEFAULT_WINDOW, noise_floor: float = DEFAULT_NOISE_FLOOR) -> None:
        if window < MIN_SAMPLES:
            raise LocalProtocolError(f"a trend needs a window of at least {MIN_SAMPLES} samples")
        if not noise_floor > 0:
            raise LocalProtocolError("the noise floor must be positive")
        self.noise_floor = noise_floor
        self._samples: deque[TrendSample] = deque(maxlen=window)
        self._fit: Fit | None = None

    @property
    def samples(self) -> tuple[TrendSample, ...]:
        return tuple(self._samples)

    @property
    def fit(self) -> Fit | None:
        """The current regression, or None with fewer than :data:`MIN_SAMPLES` samples."""
        return self._fit

    def add(self, time: float, offset: float, delay: float) -> Fit | None:
        """One more sample; return the new fit. A sample older than the newest kept is ignored
        (an interleaved reply can measure an exchange already measured)."""
        if self._samples and time < self._samples[-1].time:
            return self._fit
        self._samples.append(TrendSample(time, offset, max(0.0, delay)))
        self._refit()
        return self._fit

    def reset(self) -> None:
        """Forget every sample (after a clock step)."""
        self._samples.clear()
        self._fit = None

    def shift(self, correction: float) -> None:
        """The caller corrected its clock by ``correction``: every kept offset is that much less."""
        kept = [TrendSample(s.time, s.offset - correction, s.delay) for s in self._samples]
        self._samples.clear()
        self._samples.extend(kept)
        self._refit()

    def _refit(self) -> None:
        samples = list(self._samples)
        if len(samples) < MIN_SAMPLES:
            self._fit = None
            return
        fit, residuals = self._regress(samples)
        while len(samples) >= _MIN_RUNS_TEST and not _random_signs(self._significant(samples, residuals)):
            # The model does not fit the whole window: the clock changed; keep the newer half.
            del samples[: len(samples) // 2]
            for _ in range(len(self._samples) - len(samples)):
                self._samples.popleft()
            fit, residuals = self._regress(samples)
        self._fit = fit

    def _significant(self, samples: list[TrendSample], residuals: list[float]) -> list[float]:
        """The residuals larger than their sample's own error bound (``_SIGNIFICANT`` times
        half its excess delay plus the noise floor), others as 0: a sample that waited in a
        queue may sit far off the line without saying anything about the clock (a route change
        raises the delay and moves the offset together), so only the others take part in the
        runs test."""
        best = min(s.delay for s in samples)
        return [
            r if abs(r) > _SIGNIFICANT * ((s.delay - best) / 2 + self.noise_floor) else 0.0
            for s, r in zip(samples, residuals, strict=True)
        ]

    def _regress(self, samples: list[TrendSample]) -> tuple[Fit, list[float]]:
        best = min(s.delay for s in samples)
        weights = [1.0 / ((s.delay - best) / 2 + self.noise_floor) ** 2 for s in samples]
        total = sum(weights)
        mean_time = sum(w * s.time for w, s in zip(weights, samples, strict=True)) / total
        mean_offset = sum(w * s.offset for w, s in zip(weights, samples, strict=True)) / total
        spread = sum(w * (s.time - mean_time) ** 2 for w, s in zip(weights, samples, strict=True))
        frequency = 0.0
        if spread > 0:
            covariance = sum(
                w * (s.time - mean_time) * (s.offset - mean_offset)
                for w, s in zip(weights, samples, strict=True)
            )
            frequency = covariance / spread
        fit = Fit(mean_time, mean_offset, frequency, len(samples))
        return fit, [s.offset - fit.offset_at(s.time) for s in samples]


def _random_signs(residuals: list[float]) -> bool:
    """Wald-Wolfowitz runs test: are the residuals' signs as mixed as chance makes them?"""
    signs = [r > 0 for r in residuals if r != 0]
    if len(signs) < 2:
        return True  # an exact fit
    above = sum(signs)
    below = len(signs) - above
    if above == 0 or below == 0:
        return False
    n = len(signs)
    expected = 2.0 * above * below / n + 1.0
    variance = (expected - 1.0) * (expected - 2.0) / (n - 1)
    runs = 1 + sum(1 for a, b in itertools.pairwise(signs) if a != b)
    return runs >= expected - _RUNS_SIGMAS * math.sqrt(max(variance, 0.0))
