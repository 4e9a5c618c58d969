"""Voice notes in real Chromium (messaging.md §16): recorded from Chromium's fake microphone on Alice's
phone, played on Bob's with its waveform and progress; and a WAV file a terminal sends, played too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import TIMEOUT, cli_primary, open_chat, start_chat

from audio_samples import wav
from fake_camera import Phone
from lockstep_cli import lockstep_ok
from phone_linking import create_account

pytestmark = pytest.mark.browser

NOTE_STATE = """
(note) => ({
  state: note.dataset.state,
  playedMs: Number(note.dataset.playedMs ?? 0),
  bars: [...note.querySelectorAll('[data-testid="voice-waveform"] span')].length,
  played: note.querySelectorAll('[data-testid="voice-waveform"] span.played').length,
  duration: note.querySelector('[data-testid="voice-duration"]').textContent,
  progressNow: Number(note.querySelector('[role="progressbar"]').getAttribute("aria-valuenow")),
})
"""


def play_to_the_end(page: Any, note: Any) -> dict[str, Any]:
    note.get_by_role("button", name="Play voice note").click()
    state: dict[str, Any] = {}
    for _ in range(150):
        state = dict(note.evaluate(NOTE_STATE))
        if state["state"] in ("ended", "error"):
            break
        page.wait_for_timeout(100)
    assert state["state"] == "ended", state
    return state


def test_a_voice_note_recorded_on_one_phone_plays_on_another(
    server_process, phone: Phone, second_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    alice, bob = phone.page, second_phone.page
    create_account(phone, url, "alice", "Alice")
    create_account(second_phone, url, "bob", "Bob")
    start_chat(alice, "@bob")

    alice.get_by_role("button", name="Record a voice note").click()
    recording = alice.get_by_test_id("voice-recording")
    recording.wait_for(timeout=TIMEOUT)
    alice.locator('[data-testid="voice-recording"]:has-text("0:02")').wait_for(timeout=TIMEOUT)
    alice.get_by_role("button", name="Send voice note").click()
    sent = alice.get_by_test_id("message").filter(has=alice.get_by_test_id("voice-note"))
    sent.locator(
        'xpath=self::*[@data-status="sent" or @data-status="delivered" or @data-status="read"]'
    ).wait_for(timeout=TIMEOUT)

    open_chat(bob, "Alice")
    note = bob.get_by_test_id("voice-note").first
    note.wait_for(timeout=TIMEOUT)
    before = dict(note.evaluate(NOTE_STATE))
    assert before["duration"] in ("0:02", "0:03") and before["bars"] == 64 and before["played"] == 0
    heights = note.get_by_test_id("voice-waveform").evaluate(
        "(w) => [...w.querySelectorAll('span')].map((bar) => parseFloat(bar.style.height))"
    )
    assert max(heights) == 100  # the fake microphone's beeps were measured
    after = play_to_the_end(bob, note)
    assert after["playedMs"] >= 1500 and after["played"] >= 60 and after["progressNow"] >= 2


def test_a_terminal_voice_note_plays_in_the_browser(server_process, phone: Phone, tmp_path: Path) -> None:
    url = server_process.url
    alice = phone.page
    create_account(phone, url, "alice", "Alice")
    carol = cli_primary(url, tmp_path / "carol", "carol", "Carol")
    start_chat(alice, "@carol")
    note_file = tmp_path / "note.wav"
    note_file.write_bytes(wav(1.5))
    lockstep_ok("send", "--to", "@alice", "--voice", str(note_file), "--state", str(carol.primary))
    open_chat(alice, "Carol")
    note = alice.get_by_test_id("voice-note").first
    note.wait_for(timeout=TIMEOUT)
    assert note.evaluate(NOTE_STATE)["duration"] == "0:02"  # 1.5 s, rounded as WhatsApp shows it
    assert play_to_the_end(alice, note)["playedMs"] >= 1000
