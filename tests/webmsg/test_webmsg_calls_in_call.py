"""In an answered call, in real Chromium with real media (docs/protocol/messaging.md §14.5): mute
silences what the peer hears (its inbound audio level drops to zero), and voice switches to video in
the same call by renegotiation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from call_pages import call_status, linked_browser, record_states, stats, wait_for_stats, when
from webmsg_helpers import TIMEOUT, cli_primary, start_chat

pytestmark = pytest.mark.browser


def inbound_audio_level(page: Any) -> float:
    return float(stats(page)["inbound"]["audio"]["level"] or 0)


def test_mute_and_switching_voice_to_video_in_a_call(
    server_process, call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    url = server_process.url
    alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    laptop = linked_browser(call_browser, page_errors, url, alice.primary, tmp_path / "a.png")
    other = linked_browser(call_browser, page_errors, url, bob.primary, tmp_path / "b.png")
    start_chat(laptop, "bob")
    record_states(laptop, other)
    laptop.get_by_test_id("call-voice").click()
    when(other, "ringing-in")
    other.get_by_test_id("call-answer").click()
    when(laptop, "connected")
    when(other, "connected")
    other.wait_for_timeout(2000)
    assert inbound_audio_level(other) > 0.01

    laptop.get_by_test_id("call-mute").click()  # bob hears silence
    assert laptop.get_by_test_id("call-mute").inner_text() == "Unmute"
    wait_for_stats(other, lambda s: (s["inbound"]["audio"]["level"] or 0) < 0.001)
    laptop.get_by_test_id("call-mute").click()  # and sound again
    wait_for_stats(other, lambda s: (s["inbound"]["audio"]["level"] or 0) > 0.01)

    laptop.get_by_test_id("call-switch").click()  # voice -> video: a renegotiation in the same call
    other.get_by_test_id("call-remote-video").wait_for(state="visible", timeout=TIMEOUT)
    wait_for_stats(other, lambda s: ((s["inbound"].get("video") or {}).get("frames") or 0) > 10)
    assert other.get_by_test_id("call-switch").inner_text() == "Voice only"
    assert call_status(laptop) == call_status(other) == "Connected"
    other.get_by_test_id("call-hangup").click()
    when(laptop, "ended")
