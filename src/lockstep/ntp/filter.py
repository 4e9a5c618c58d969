"""The clock filter algorithm (RFC 5905 §10, Appendix A.5.2).

A :class:`ClockFilter` keeps the last eight (offset, delay, dispersion, time) samples of one
source. Each new sample ages the others' dispersion at PHI (15 ppm); the sample with the lowest
delay is taken as the best, because the smallest round trip bounds the offset error most tightly.
The filter reports that sample's offset and delay, the weighted filter dispersion (epsilon) and the
jitter (psi): the RMS of the other samples' offsets from the best one.

This is also the public API for Lockstep's WebSocket time sync (any unit works as long as it is
consistent; Lockstep uses seconds)::

    from lockstep.ntp import ClockFilter, on_wire_seconds

    clock_filter = ClockFilter()
    for t1, t2, t3, t4 in exchanges:  # t1/t4 client clock, t2/t3 server clock
        sample = on_wire_seconds(t1, t2, t3, t4)
        clock_filter.add_sample(sample.offset, sample.delay, dispersion=0.0, time=t4)
    server_now = client_now + clock_filter.offset  # best estimate
    error = clock_filter.delay / 2 + clock_filter.jitter  # a conservative error bound

Statistics are floats, as in RFC 5905 Appendix A; timestamps elsewhere stay exact integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lockstep.ntp.constants import MAXDISP, NSTAGE, PHI, SGATE
from lockstep.ntp.errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class FilterSample:
    """One stage of the filter: a tuple (theta, delta, epsilon, t) of RFC 5905 §10."""

    offset: float
    delay: float
    dispersion: float
    time: float


_EMPTY = FilterSample(0.0, MAXDISP, MAXDISP, 0.0)


class ClockFilter:
    """The eight-stage shift register of RFC 5905 §10 with its selection of the best sample.

    ``precision`` (seconds) is the floor of the jitter. ``popcorn_gate`` is the spike suppressor
    (SGATE): a best sample whose offset jumps by more than that many jitters from the last one is
    held back once, as in A.5.2; pass ``None`` to disable it.
    """

    def __init__(
        self,
        precision: float = 2.0**-20,
        *,
        stages: int = NSTAGE,
        popcorn_gate: float | None = SGATE,
    ) -> None:
        if stages < 1:
            raise LocalProtocolError("a clock filter needs at least one stage")
        self.precision = precision
        self.popcorn_gate = popcorn_gate
        self._stage_count = stages
        self._clear()

    def _clear(self) -> None:
        self._stages: list[FilterSample] = [_EMPTY] * self._stage_count
        self._last_sample_time: float | None = None
        self.offset = 0.0
        self.delay = MAXDISP
        self.dispersion = MAXDISP
        self.jitter = self.precision
        self.time: float | None = None  # time of the sample the outputs come from
        self.spikes = 0

    @property
    def samples(self) -> tuple[FilterSample, ...]:
        """The stages, newest first."""
        return tuple(self._stages)

    def reset(self) -> None:
        """Forget every sample (RFC 5905 A.5.5.1 clears the filters after a clock step)."""
        self._clear()

    def add_sample(self, offset: float, delay: float, dispersion: float, time: float) -> bool:
        """Shift in one sample; return True when the outputs now come from a newer sample.

        ``dispersion`` is the sample's own error (RFC 5905 §8: precisions plus PHI times the
        round trip); ``time`` is when it was taken, on the caller's clock.
        """
        if delay < 0:
            delay = 0.0
        aging = 0.0 if self._last_sample_time is None else PHI * (time - self._last_sample_time)
        self._last_sample_time = time
        self._stages = [
            FilterSample(offset, delay, dispersion, time),
            *(
                FilterSample(s.offset, s.delay, min(MAXDISP, s.dispersion + aging), s.time)
                for s in self._stages[:-1]
            ),
        ]
        ordered = sorted(self._stages, key=lambda s: (s.delay, -s.time))
        valid = [s for s in ordered if s.dispersion < MAXDISP]
        # Filter dispersion epsilon: sum of stage dispersions weighted 1/2, 1/4, ... (A.5.2).
        self.dispersion = sum(s.dispersion / 2.0 ** (i + 1) for i, s in enumerate(ordered))
        if not valid:
            return False
        best = valid[0]
        if len(valid) > 1:
            squares = sum((s.offset - best.offset) ** 2 for s in valid[1:])
            jitter = math.sqrt(squares / (len(valid) - 1))
        else:
            jitter = 0.0
        previous_jitter = self.jitter
        self.jitter = max(jitter, self.precision)
        if self.time is not None and best.time <= self.time:
            return False  # never reuse an old sample (A.5.2)
        if (
            self.popcorn_gate is not None
            and self.time is not None
            and abs(best.offset - self.offset) > self.popcorn_gate * previous_jitter
            and self.spikes == 0
            and len(valid) > 2
        ):
            self.spikes += 1  # popcorn spike: hold it back once
            return False
        self.spikes = 0
        self.offset = best.offset
        self.delay = best.delay
        self.time = best.time
        return True

    def distance_dispersion(self, now: float) -> float:
        """Filter dispersion aged to ``now`` at PHI (part of the root distance, A.5.5.2)."""
        if self.time is None:
            return MAXDISP
        return min(MAXDISP, self.dispersion + PHI * max(0.0, now - self.time))
