"""Call signals: what travels end to end inside a ``call`` envelope (docs/protocol/messaging.md §14.2).

Every signal is the ``body`` of a message envelope of kind ``call``, sent over Olm like a text
message, so the server relays ciphertext only and cannot read the SDP or swap the DTLS fingerprint
that authenticates the media keys (RFC 8827 §6.5)::

    {"call_id": "<16-64 base64url>", "type": "offer", "media": "audio" | "video", "sdp": "v=0…"}
    {"call_id": "…", "type": "answer", "sdp": "v=0…"}
    {"call_id": "…", "type": "candidates", "candidates": [{"candidate": "candidate:…", "mid": "0",
                                                            "m_line_index": 0}]}
    {"call_id": "…", "type": "hangup", "reason": "ended" | "cancelled" | "no-answer" | "failed" | "replaced"}
    {"call_id": "…", "type": "busy"}
    {"call_id": "…", "type": "decline"}

:func:`parse` accepts exactly these shapes and raises :class:`SignalError` with the reason for
anything else; a description must look like a WebRTC session description (RFC 8866 lines, an
``m=`` section, ICE credentials and a DTLS fingerprint) and a candidate must follow RFC 8839 §5.1.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from lockstep.calls.errors import SignalError

CALL_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: Long enough for Chromium's video offer with every candidate gathered; one copy per device must fit
#: in one request frame (messaging.md §7.2), so larger descriptions are refused.
MAX_SDP = 20_000
MAX_CANDIDATES = 32
MAX_CANDIDATE = 512


class SignalType(enum.StrEnum):
    OFFER = "offer"
    ANSWER = "answer"
    CANDIDATES = "candidates"
    HANGUP = "hangup"
    BUSY = "busy"
    DECLINE = "decline"


class Media(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class HangupReason(enum.StrEnum):
    ENDED = "ended"
    """One side ended a call that had been answered."""
    CANCELLED = "cancelled"
    """The caller gave up before anyone answered."""
    NO_ANSWER = "no-answer"
    """The caller's ringing timer ran out (§14.4): a missed call."""
    FAILED = "failed"
    """The media could not connect or broke for good."""
    REPLACED = "replaced"
    """The caller gave way to the peer's call to it, dialled at the same moment (glare, §14.9)."""


# --- RFC 8866 §5 (SDP lines) and RFC 8839 §5.1 (candidate attribute) -------------------------------
_SDP_LINE = re.compile(r"[a-z]=[^\x00\r\n]*")
_FINGERPRINT = re.compile(r"a=fingerprint:[A-Za-z0-9-]{1,16} [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){15,63}")
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]{1,32}")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,64}")
_FQDN = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*")
_CANDIDATE_TYPES = {"host", "srflx", "prflx", "relay"}
_MID = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,32}")


def check_sdp(sdp: object) -> str:
    """A session description a WebRTC peer can use: RFC 8866 ``<letter>=<value>`` lines starting
    ``v=0``, with ``o=`` and ``s=``, at least one audio or video ``m=`` section, ICE credentials
    (RFC 8839 §5.4) and a DTLS fingerprint (RFC 8122 §5) — without it nothing authenticates the media."""
    if not isinstance(sdp, str):
        raise SignalError("'sdp' must be a string")
    if len(sdp) > MAX_SDP:
        raise SignalError(f"a session description longer than {MAX_SDP} characters")
    lines = [line for line in re.split(r"\r?\n", sdp) if line]
    if not lines or lines[0] != "v=0":
        raise SignalError("a session description starts with v=0")
    for number, line in enumerate(lines, 1):
        if not _SDP_LINE.fullmatch(line):
            raise SignalError(f"session description line {number} is not <letter>=<value>")
    types = {line[0] for line in lines}
    if not {"o", "s"} <= types:
        raise SignalError("a session description needs o= and s= lines")
    if not any(line.startswith(("m=audio ", "m=video ")) for line in lines):
        raise SignalError("a session description with no audio or video section")
    if not any(line.startswith("a=ice-ufrag:") for line in lines) or not any(
        line.startswith("a=ice-pwd:") for line in lines
    ):
        raise SignalError("a session description without ICE credentials")
    if not any(_FINGERPRINT.fullmatch(line) for line in lines):
        raise SignalError("a session description without a DTLS fingerprint")
    return sdp


def _check_address(address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if not _FQDN.fullmatch(address):  # mDNS names (…local) of browsers hiding host addresses
            raise SignalError("a candidate's address is neither an IP address nor a host name") from None


def _check_port(port: str) -> None:
    if not port.isascii() or not port.isdigit() or len(port) > 5 or int(port) > 65535:
        raise SignalError("a candidate's port is not 0-65535")


def check_candidate_line(line: object) -> str:
    """An ICE candidate attribute value (RFC 8839 §5.1), ``candidate:`` included, or ``""`` for
    end-of-candidates."""
    if not isinstance(line, str):
        raise SignalError("'candidate' must be a string")
    if line == "":
        return line
    if len(line) > MAX_CANDIDATE:
        raise SignalError(f"a candidate longer than {MAX_CANDIDATE} characters")
    if not line.startswith("candidate:"):
        raise SignalError("a candidate starts with 'candidate:'")
    fields = line.removeprefix("candidate:").split(" ")
    if len(fields) < 8:
        raise SignalError("a candidate needs foundation, component, transport, priority, address, port, typ")
    foundation, component, transport, priority, address, port, typ, kind, *rest = fields
    if not _ICE_CHARS.fullmatch(foundation):
        raise SignalError("a candidate's foundation is 1-32 ice-chars")
    if not component.isascii() or not component.isdigit() or not 1 <= int(component) <= 256:
        raise SignalError("a candidate's component id is 1-256")
    if not _TOKEN.fullmatch(transport):
        raise SignalError("a candidate's transport is not a token")
    if not priority.isascii() or not priority.isdigit() or len(priority) > 10 or int(priority) >= 2**32:
        raise SignalError("a candidate's priority is not a 32-bit number")
    _check_address(address)
    _check_port(port)
    if typ != "typ" or kind not in _CANDIDATE_TYPES:
        raise SignalError("a candidate's type is host, srflx, prflx or relay")
    if len(rest) % 2:
        raise SignalError("a candidate's extensions come as name-value pairs")
    for name, value in zip(rest[::2], rest[1::2], strict=True):
        if not _TOKEN.fullmatch(name) or not value:
            raise SignalError("a candidate extension is a token and a value")
        if name == "raddr":
            _check_address(value)
        elif name == "rport":
            _check_port(value)
    return line


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ICE candidate as WebRTC's ``RTCIceCandidateInit`` carries it."""

    candidate: str
    mid: str | None
    m_line_index: int | None

    def to_json(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "mid": self.mid, "m_line_index": self.m_line_index}

    @classmethod
    def from_json(cls, value: object) -> Candidate:
        if not isinstance(value, dict):
            raise SignalError("a candidate is an object")
        mid, index = value.get("mid"), value.get("m_line_index")
        if mid is not None and (not isinstance(mid, str) or not _MID.fullmatch(mid)):
            raise SignalError("a candidate's 'mid' is a short token or null")
        if index is not None and (
            not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 64
        ):
            raise SignalError("a candidate's 'm_line_index' is 0-63 or null")
        if mid is None and index is None:
            raise SignalError("a candidate names its media section by 'mid' or 'm_line_index'")
        return cls(check_candidate_line(value.get("candidate")), mid, index)


@dataclass(frozen=True, slots=True)
class Offer:
    call_id: str
    media: Media
    sdp: str


@dataclass(frozen=True, slots=True)
class Answer:
    call_id: str
    sdp: str


@dataclass(frozen=True, slots=True)
class Candidates:
    call_id: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Hangup:
    call_id: str
    reason: HangupReason


@dataclass(frozen=True, slots=True)
class Busy:
    call_id: str


@dataclass(frozen=True, slots=True)
class Decline:
    call_id: str


Signal = Offer | Answer | Candidates | Hangup | Busy | Decline


def signal_type(signal: Signal) -> SignalType:
    return _TYPES[type(signal)]


_TYPES: dict[type[Signal], SignalType] = {
    Offer: SignalType.OFFER,
    Answer: SignalType.ANSWER,
    Candidates: SignalType.CANDIDATES,
    Hangup: SignalType.HANGUP,
    Busy: SignalType.BUSY,
    Decline: SignalType.DECLINE,
}


def to_body(signal: Signal) -> dict[str, Any]:
    """The envelope body for ``signal`` (the inverse of :func:`parse`)."""
    body: dict[str, Any] = {"call_id": signal.call_id, "type": signal_type(signal).value}
    if isinstance(signal, Offer):
        body |= {"media": signal.media.value, "sdp": signal.sdp}
    elif isinstance(signal, Answer):
        body["sdp"] = signal.sdp
    elif isinstance(signal, Candidates):
        body["candidates"] = [c.to_json() for c in signal.candidates]
    elif isinstance(signal, Hangup):
        body["reason"] = signal.reason.value
    return body


def check_call_id(value: object) -> str:
    if not isinstance(value, str) or not CALL_ID.fullmatch(value):
        raise SignalError("a call id is 16 to 64 base64url characters")
    return value


def parse(body: object) -> Signal:
    """The signal in a ``call`` envelope's body; :class:`SignalError` says what is wrong with it."""
    if not isinstance(body, dict):
        raise SignalError("a call signal is an object")
    call_id = check_call_id(body.get("call_id"))
    try:
        kind = SignalType(str(body.get("type")))
    except ValueError:
        raise SignalError("unknown call signal type") from None
    if kind is SignalType.OFFER:
        try:
            media = Media(str(body.get("media")))
        except ValueError:
            raise SignalError("an offer's media is audio or video") from None
        return Offer(call_id, media, check_sdp(body.get("sdp")))
    if kind is SignalType.ANSWER:
        return Answer(call_id, check_sdp(body.get("sdp")))
    if kind is SignalType.CANDIDATES:
        candidates = body.get("candidates")
        if not isinstance(candidates, list) or not 1 <= len(candidates) <= MAX_CANDIDATES:
            raise SignalError(f"'candidates' is a list of 1 to {MAX_CANDIDATES} candidates")
        return Candidates(call_id, tuple(Candidate.from_json(c) for c in candidates))
    if kind is SignalType.HANGUP:
        try:
            return Hangup(call_id, HangupReason(str(body.get("reason"))))
        except ValueError:
            reasons = ", ".join(reason.value for reason in HangupReason)
            raise SignalError(f"a hang-up's reason is one of {reasons}") from None
    return Busy(call_id) if kind is SignalType.BUSY else Decline(call_id)
