"""Events the sans-I/O cores report: small frozen values with past-tense or noun names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PacketDropped:
    """A datagram was discarded; ``reason`` says why (counted by the core that dropped it)."""

    reason: str
    source: str | None = None


@dataclass(frozen=True, slots=True)
class SampleAccepted:
    """A valid reply produced a clock filter sample (RFC 5905 §8, §10)."""

    source: str
    offset: float
    delay: float
    dispersion: float


@dataclass(frozen=True, slots=True)
class KissReceived:
    """A Kiss-o'-Death arrived and was honoured (RFC 5905 §7.4, RFC 8633 §4.4)."""

    source: str
    code: str


@dataclass(frozen=True, slots=True)
class SourceDemobilized:
    """An association stopped polling for good (DENY or RSTR kiss)."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class SystemPeerChanged:
    """The source the system synchronises to changed (None: no consensus / no usable source)."""

    source: str | None


@dataclass(frozen=True, slots=True)
class ClockUpdated:
    """The mitigation algorithms produced a new system offset (RFC 5905 §11.2.3)."""

    offset: float
    jitter: float
    system_peer: str


@dataclass(frozen=True, slots=True)
class ClockStepped:
    """The discipline asks to step the clock by ``offset`` seconds (A.5.5.6, |offset| > STEPT)."""

    offset: float


@dataclass(frozen=True, slots=True)
class ClockSlewed:
    """The discipline asks to slew out ``offset`` and set the frequency correction (s/s)."""

    offset: float
    frequency: float


@dataclass(frozen=True, slots=True)
class PanicThresholdExceeded:
    """An offset beyond PANICT (1000 s) after the first update: nothing was done (A.5.5.6)."""

    offset: float
