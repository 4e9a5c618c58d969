"""Test tones: a WAV of one sine frequency, and the dominant frequency of a recording (a discrete
Fourier transform scanned coarse then fine, in plain Python: the tests need one number, not numpy)."""

from __future__ import annotations

import array
import math
import wave
from pathlib import Path


def write_tone(path: Path, hz: float, seconds: float = 3.0, rate: int = 48_000) -> Path:
    """A mono 16-bit WAV of a sine at ``hz``, at half of full scale."""
    samples = array.array(
        "h", (round(16_000 * math.sin(2 * math.pi * hz * n / rate)) for n in range(int(seconds * rate)))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def read_mono(path: Path) -> tuple[list[float], int]:
    with wave.open(str(path), "rb") as recording:
        channels, rate, width = recording.getnchannels(), recording.getframerate(), recording.getsampwidth()
        assert width == 2, "16-bit PCM expected"
        data = array.array("h", recording.readframes(recording.getnframes()))
    return [sum(data[i : i + channels]) / channels for i in range(0, len(data), channels)], rate


def _magnitude(samples: list[float], rate: float, hz: float) -> float:
    step = 2 * math.pi * hz / rate
    real = sum(s * math.cos(step * n) for n, s in enumerate(samples))
    imaginary = sum(s * math.sin(step * n) for n, s in enumerate(samples))
    return math.hypot(real, imaginary)


def dominant_frequency(path: Path, low: float = 100, high: float = 3000) -> tuple[float, float]:
    """The strongest frequency in the middle of a recording (skipping its first half second, where
    the codec and jitter buffer settle) and its RMS level (0-32768); a silent recording gives level 0."""
    samples, rate = read_mono(path)
    start = min(rate // 2, len(samples) // 4)
    window = samples[start : start + rate // 2]
    assert len(window) >= rate // 10, f"recording too short: {len(samples) / rate:.2f} s"
    decimate = max(1, rate // 12_000)
    window, rate = window[::decimate], rate // decimate
    level = math.sqrt(sum(s * s for s in window) / len(window))
    coarse = max(range(int(low), int(high), 20), key=lambda hz: _magnitude(window, rate, hz))
    fine = max(range(coarse - 20, coarse + 21), key=lambda hz: _magnitude(window, rate, hz))
    return float(fine), level
