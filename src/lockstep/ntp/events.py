"""Events the sans-I/O cores report: small frozen values with past-tense or noun names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DropReason(StrEnum):
    """Why a core discarded a datagram: one member per check. The value is what counters and
    logs show; :attr:`PacketDropped.detail` may add the specifics (a codec error, the mode)."""

    # The server core (RFC 5905 §9.2, RFC 7822, RFC 8633).
    SHORT = "shorter than an NTP header"
    VERSION = "unsupported version"
    CONTROL = "mode 6/7 (control/private) is not served"
    NOT_A_REQUEST = "not a client request"
    MALFORMED_EXTENSIONS = "malformed extension fields"
    RATE_LIMITED = "rate limited"
    DENIED = "denied"
    # An association (RFC 5905 §8, A.5.1.1).
    DEMOBILIZED = "association demobilized"
    MALFORMED = "malformed"
    UNEXPECTED_MODE = "unexpected mode"
    NOT_OUTSTANDING = "no request outstanding (duplicate or late)"
    BOGUS = "origin timestamp does not match our request (bogus)"
    DUPLICATE = "duplicate transmit timestamp"
    UNSYNCHRONISED = "server unsynchronised"
    TIMESTAMPS_MISSING = "server timestamps missing"
    ROOT_DISTANCE = "server root distance exceeds MAXDISP"
    REFERENCE_AFTER_TRANSMIT = "server reference time is later than its transmit time"
    # Either side: an NTS check failed (RFC 8915 §5.7); the detail says which.
    NTS = "NTS"


@dataclass(frozen=True, slots=True)
class PacketDropped:
    """A datagram was discarded for ``reason`` (counted by the core that dropped it)."""

    reason: DropReason
    detail: str = ""
    source: str | None = None

    @property
    def message(self) -> str:
        """The reason with its detail, as logs and error messages show it."""
        return f"{self.reason}: {self.detail}" if self.detail else str(self.reason)


@dataclass(frozen=True, slots=True)
class KeyExchangeNeeded:
    """An NTS association has no cookie left (run out, or an NTS NAK emptied its jar): the
    adapter must run NTS-KE again for ``source`` (RFC 8915 §5.7) and hand the result to the
    association, which then polls at once. Like ntpd-rs's ``Reset`` action: the core decides."""

    source: str


@dataclass(frozen=True, slots=True)
class SampleAccepted:
    """A valid reply produced a clock filter sample (RFC 5905 §8, §10)."""

    source: str
    offset: float
    delay: float
    dispersion: float
    interleaved: bool = False  # measured on the previous exchange, from an interleaved reply (RFC 9769)


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
