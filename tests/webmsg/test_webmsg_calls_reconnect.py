"""A call whose media path breaks and comes back, in real Chromium (docs/protocol/messaging.md §14.4,
§14.8): two browsers in a relay-only call through a real coturn; the test stops coturn, so every relayed
packet is lost; both pages show "Reconnecting…", the caller restarts ICE over the (still working)
signalling, and once coturn is back the call recovers on new relay allocations and audio flows again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from call_pages import assert_audio_both_ways, linked_browser, record_states, stats, wait_for_stats, when
from webmsg_helpers import TIMEOUT, cli_primary, start_chat

from lockstep_servers import start_server
from turn_server import coturn

pytestmark = pytest.mark.browser
RELAY_ONLY = "?relay&ice-host=127.0.0.1"


def test_a_relayed_call_that_loses_its_relay_shows_reconnecting_and_recovers_by_ice_restart(
    call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
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
            url = server.url
            alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
            bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
            caller = linked_browser(
                call_browser, page_errors, url, alice.primary, tmp_path / "a.png", RELAY_ONLY
            )
            callee = linked_browser(
                call_browser, page_errors, url, bob.primary, tmp_path / "b.png", RELAY_ONLY
            )
            start_chat(caller, "bob")
            record_states(caller, callee)
            caller.get_by_test_id("call-voice").click()
            when(callee, "ringing-in")
            callee.get_by_test_id("call-answer").click()
            for page in (caller, callee):
                when(page, "connected")
                assert_audio_both_ways(page)
            assert stats(caller)["pair"][:2] == ["relay", "relay"]

            turn.stop()  # the media path is gone; the signalling (the Lockstep server) is not
            for page in (caller, callee):
                when(page, "reconnecting")
                assert page.get_by_test_id("call-reconnecting").is_visible()
            before = {page: stats(page)["inbound"]["audio"]["packets"] for page in (caller, callee)}
            turn.start()
            for page in (caller, callee):
                page.wait_for_function(
                    "() => document.querySelector('[data-testid=call-screen]').dataset.state === 'connected'",
                    timeout=45_000,
                )
                page.get_by_test_id("call-reconnecting").wait_for(state="hidden", timeout=TIMEOUT)
                # Media flows again: many packets since the break, and they carry sound.
                recovered = wait_for_stats(
                    page, lambda s, page=page: s["inbound"]["audio"]["packets"] > before[page] + 50
                )
                assert (recovered["inbound"]["audio"]["level"] or 0) > 0.01, recovered
                assert recovered["pair"][:2] == ["relay", "relay"], recovered
            assert "ended" not in [state for state, _ in caller.evaluate("() => window.__callStates")]
            caller.get_by_test_id("call-hangup").click()
            when(callee, "ended")
        finally:
            server.stop()
