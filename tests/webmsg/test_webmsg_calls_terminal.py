"""Calls in the browser (docs/protocol/messaging.md §14) with real Chromium and real media: Chromium's
fake microphone plays a 440 Hz tone the test made, the terminal (`lockstep answer`, aiortc) plays 660 Hz;
each side's received audio is checked by frequency, and RTP is checked both ways with getStats(). ICE keeps
to loopback: Chromium gathers loopback host candidates and the pages offer only 127.0.0.1 (`?ice-host=`),
the terminal likewise (LOCKSTEP_ICE_HOSTS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from call_pages import HEARD, linked_browser, stats, wait_connected
from webmsg_helpers import TIMEOUT, cli_primary, start_chat

from lockstep_cli import IN_A_CALL, lockstep_ok, running
from lockstep_servers import start_server
from tone import dominant_frequency, write_tone
from turn_server import coturn

pytestmark = pytest.mark.browser


def test_a_browser_calls_a_terminal_tones_both_ways_and_the_chat_keeps_the_call(
    server_process, call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    url = server_process.url
    alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    laptop = linked_browser(call_browser, page_errors, url, alice.primary, tmp_path / "qr.png")
    start_chat(laptop, "bob")
    tone, bob_heard = write_tone(tmp_path / "660.wav", 660), tmp_path / "bob-heard.wav"
    answer = ("answer", "--wait", "60", "--play", str(tone), "--record", str(bob_heard))
    with running(*answer, "--state", str(bob.primary), env=IN_A_CALL) as answering:
        laptop.get_by_test_id("call-voice").click()
        laptop.get_by_test_id("call-screen").wait_for(timeout=TIMEOUT)
        screen = laptop.get_by_test_id("call-screen")
        assert laptop.get_by_test_id("call-peer").inner_text() == "Bob", screen.inner_text()
        wait_connected(laptop)
        laptop.wait_for_timeout(2500)  # media flows for a while
        measured = stats(laptop)
        heard, level_db = laptop.evaluate(HEARD)
        assert laptop.get_by_test_id("call-duration").inner_text().startswith("0:0")
        laptop.get_by_test_id("call-hangup").click()
        out, err = answering.communicate(timeout=30)
    assert answering.returncode == 0, err
    assert out.startswith("voice call, ") and out.strip().endswith("with @alice")
    assert measured["outbound"]["audio"]["packets"] > 50, measured
    assert measured["inbound"]["audio"]["packets"] > 50, measured
    assert measured["inbound"]["audio"]["level"] > 0.01, measured
    assert measured["pair"][0] == "host" and measured["pair"][2] == "127.0.0.1", measured
    assert abs(heard - 660) < 15 and level_db > -70, (heard, level_db)
    terminal_heard, level = dominant_frequency(bob_heard)
    assert abs(terminal_heard - 440) <= 5 and level > 500
    entry = laptop.get_by_test_id("message").filter(has_text="voice call, ")
    entry.wait_for(timeout=TIMEOUT)
    assert lockstep_ok("receive", "--state", str(alice.primary), "--wait", "3").count("voice call, ") == 1


def test_a_relay_only_browser_call_goes_through_coturn(
    call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    """`serve --turn-url --turn-secret` with a real coturn: the page forced to relay candidates
    (`?relay`) calls a terminal forced likewise (`--relay-only`); getStats shows a relay pair."""
    with coturn() as turn:
        server = start_server(
            tmp_path / "server",
            tmp_path / "server.log",
            "--turn-url",
            turn.url,
            "--turn-secret",
            str(turn.secret_file),
        )
        try:
            alice = cli_primary(server.url, tmp_path / "alice", "alice", "Alice")
            bob = cli_primary(server.url, tmp_path / "bob", "bob", "Bob")
            laptop = linked_browser(
                call_browser,
                page_errors,
                server.url,
                alice.primary,
                tmp_path / "qr.png",
                query="?relay&ice-host=127.0.0.1",
            )
            start_chat(laptop, "bob")
            answer = ("answer", "--wait", "60", "--relay-only", "--state", str(bob.primary))
            with running(*answer, env=IN_A_CALL) as answering:
                laptop.get_by_test_id("call-voice").click()
                wait_connected(laptop)
                laptop.wait_for_timeout(1500)
                measured = stats(laptop)
                laptop.get_by_test_id("call-hangup").click()
                _out, err = answering.communicate(timeout=30)
        finally:
            server.stop()
    assert answering.returncode == 0, err
    assert measured["pair"][:2] == ["relay", "relay"], measured
    assert measured["inbound"]["audio"]["packets"] > 20, measured
    assert measured["outbound"]["audio"]["packets"] > 20, measured
