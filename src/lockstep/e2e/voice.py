"""Voice notes (docs/protocol/messaging.md §16): an audio media message whose body says it is a voice
note, with its length and a waveform to draw before the file is fetched.

    {"media": {descriptor, "type": "audio", ...}, "voice": {"duration_ms": 4200, "waveform": [0..100, ...]}}

Pure: :func:`parse_voice` checks the ``voice`` object; :func:`describe_audio` reads the length (and, for
PCM WAV, the waveform) of an audio file from its bytes: Ogg (Opus or Vorbis: the last page's granule
position), WAV (frames / rate), anything else without either.
"""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockstep.e2e.errors import ActionError

MAX_DURATION_MS = 3 * 3_600_000
WAVEFORM_BARS = 64
WAVEFORM_TOP = 100
OPUS_GRANULE_RATE = 48_000
"""RFC 7845 §4: an Ogg Opus granule position counts 48 kHz samples, whatever the input rate."""


@dataclass(frozen=True, slots=True)
class VoiceNote:
    duration_ms: int | None
    waveform: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"waveform": list(self.waveform)}
        if self.duration_ms is not None:
            value["duration_ms"] = self.duration_ms
        return value


def parse_voice(body: Mapping[str, Any]) -> VoiceNote | None:
    """The ``voice`` object of a media body (§16): None if it is not a voice note, ActionError if it
    is malformed."""
    voice = body.get("voice")
    if voice is None:
        return None
    if not isinstance(voice, dict):
        raise ActionError("'voice' must be an object")
    duration, waveform = voice.get("duration_ms"), voice.get("waveform", [])
    if duration is not None and (
        not isinstance(duration, int) or isinstance(duration, bool) or not 0 <= duration <= MAX_DURATION_MS
    ):
        raise ActionError(f"a voice note's 'duration_ms' is 0 to {MAX_DURATION_MS}")
    if (
        not isinstance(waveform, list)
        or len(waveform) > WAVEFORM_BARS
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= WAVEFORM_TOP for v in waveform
        )
    ):
        raise ActionError(
            f"a voice note's 'waveform' is at most {WAVEFORM_BARS} integers of 0 to {WAVEFORM_TOP}"
        )
    return VoiceNote(duration, tuple(waveform))


def describe_audio(data: bytes) -> VoiceNote:
    """Length and waveform of an audio file, as far as they can be read without decoding it."""
    if data[:4] == b"OggS":
        return VoiceNote(_ogg_duration_ms(data), ())
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            return _wav(data)
        except (wave.Error, EOFError, struct.error):
            return VoiceNote(None, ())
    return VoiceNote(None, ())


def _ogg_duration_ms(data: bytes) -> int | None:
    """From the last Ogg page's granule position (RFC 3533 §6); Opus at 48 kHz less its pre-skip
    (RFC 7845 §4), Vorbis at the rate in its identification header."""
    last = data.rfind(b"OggS")
    if last < 0 or last + 14 > len(data):
        return None
    granule: int = struct.unpack_from("<q", data, last + 6)[0]
    rate: int
    head = data.find(b"OpusHead")
    if head >= 0 and head + 12 <= len(data):
        pre_skip: int = struct.unpack_from("<H", data, head + 10)[0]
        samples, rate = granule - pre_skip, OPUS_GRANULE_RATE
    else:
        vorbis = data.find(b"\x01vorbis")
        if vorbis < 0 or vorbis + 16 > len(data):
            return None
        rate = struct.unpack_from("<I", data, vorbis + 12)[0]
        samples = granule
    if samples < 0 or rate <= 0:
        return None
    return min(samples * 1000 // rate, MAX_DURATION_MS)


def _wav(data: bytes) -> VoiceNote:
    with wave.open(io.BytesIO(data)) as reader:
        rate, frames, width, channels = (
            reader.getframerate(),
            reader.getnframes(),
            reader.getsampwidth(),
            reader.getnchannels(),
        )
        pcm = reader.readframes(frames)
    duration = min(frames * 1000 // rate, MAX_DURATION_MS) if rate else None
    if width not in (1, 2) or not frames:
        return VoiceNote(duration, ())
    # 8-bit WAV is unsigned around 128, 16-bit signed little-endian; peaks of the first channel.
    step = width * channels
    samples = (
        [abs(b - 128) * 256 for b in pcm[::step]]
        if width == 1
        else [abs(v) for (v,) in struct.iter_unpack("<h", pcm[: len(pcm) // 2 * 2])][::channels]
    )
    bars = WAVEFORM_BARS  # fewer samples than bars are stretched, as the browser does
    size = len(samples) / bars
    peaks = [max(samples[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)]) for i in range(bars)]
    top = max(peaks) or 1
    return VoiceNote(duration, tuple(round(p * WAVEFORM_TOP / top) for p in peaks))
