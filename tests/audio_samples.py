"""Audio files made by tests (a tone quiet then loud, as WAV; Ogg Opus headers around silence) for
voice notes: the terminal sends them, and Chromium's fake microphone plays the WAV."""

from __future__ import annotations

import io
import math
import struct
import wave


def wav(seconds: float, rate: int = 8000, width: int = 2, channels: int = 1) -> bytes:
    """A tone that is quiet for the first half and loud for the second."""
    frames = int(seconds * rate)
    top = 127 if width == 1 else 32767
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        samples = []
        for i in range(frames):
            level = (0.1 if i < frames // 2 else 0.9) * top * math.sin(2 * math.pi * 440 * i / rate)
            samples += [round(level) + (128 if width == 1 else 0)] * channels
        writer.writeframes(bytes(samples) if width == 1 else struct.pack(f"<{len(samples)}h", *samples))
    return out.getvalue()


def ogg_page(granule: int, payload: bytes, sequence: int) -> bytes:
    """An Ogg page (RFC 3533 §6) carrying one packet; the CRC is left zero (the reader does not need it)."""
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, 0, granule, 1, sequence, 0, 1)
    return header + bytes([len(payload)]) + payload


def ogg_opus(seconds: float, pre_skip: int = 312) -> bytes:
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, pre_skip, 48000, 0, 0)
    audio_end = pre_skip + int(seconds * 48000)
    return ogg_page(0, head, 0) + ogg_page(0, b"OpusTags", 1) + ogg_page(audio_end, b"\0" * 40, 2)
