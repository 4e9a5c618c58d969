"""Voice notes (messaging.md §16): the length and waveform a sender reads from an audio file, and what a
receiver accepts as a voice note."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio_samples import ogg_opus, wav
from lockstep.e2e.errors import ActionError
from lockstep.e2e.voice import WAVEFORM_BARS, VoiceNote, describe_audio, parse_voice


@pytest.mark.parametrize(("width", "channels"), [(2, 1), (2, 2), (1, 1)])
def test_a_wav_file_gives_its_length_and_a_waveform(width: int, channels: int) -> None:
    note = describe_audio(wav(1.5, width=width, channels=channels))
    assert note.duration_ms == 1500
    assert len(note.waveform) == WAVEFORM_BARS and max(note.waveform) == 100
    quiet, loud = note.waveform[: WAVEFORM_BARS // 2 - 1], note.waveform[WAVEFORM_BARS // 2 + 1 :]
    assert max(quiet) < 20 < min(loud)  # the loud half is drawn loud
    assert parse_voice({"voice": note.to_json()}) == note


def test_an_ogg_opus_file_gives_its_length_from_the_last_granule_less_pre_skip() -> None:
    assert describe_audio(ogg_opus(4.2)) == VoiceNote(4200, ())
    assert describe_audio(b"ID3 not a known container") == VoiceNote(None, ())


@given(
    st.sampled_from([b"", b"OggS", b"RIFF\0\0\0\0WAVE", b"OggS" + b"\0" * 30 + b"OpusHead"]),
    st.binary(max_size=200),
)
def test_any_bytes_give_a_voice_note_and_never_an_error(prefix: bytes, data: bytes) -> None:
    note = describe_audio(prefix + data)
    assert parse_voice({"voice": note.to_json()}) == note  # what a sender reads, receivers accept


@given(
    st.dictionaries(
        st.sampled_from(["duration_ms", "waveform"]),
        st.none() | st.integers(-5, 200) | st.lists(st.integers(-5, 200), max_size=70) | st.text(max_size=3),
    )
)
def test_any_voice_object_is_parsed_or_refused_with_an_action_error(voice: dict[str, object]) -> None:
    try:
        note = parse_voice({"voice": voice})
    except ActionError:
        return
    assert note is not None and all(0 <= bar <= 100 for bar in note.waveform)
