"""A call whose media path breaks, in real Chromium (docs/protocol/messaging.md §14.4, §14.8): two
browsers in a relay-only call through a real coturn; the test stops coturn, so every relayed packet is
lost while the signalling (the Lockstep server) keeps working. Both pages show "Reconnecting…" and the
caller restarts ICE: once coturn is back the call recovers on new relay allocations and audio flows
again; if it never comes back, the call ends as failed after 30 s (the caller's page runs on
Playwright's clock, moved on by the test) and both sides say so."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from call_pages import (
    assert_audio_both_ways,
    call_status,
    linked_browser,
    record_states,
    shown_states,
    stats,
    wait_for_stats,
    when,
)
from webmsg_helpers import TIMEOUT, cli_primary, start_chat

from lockstep_servers import start_server
from turn_server import Coturn, coturn

pytestmark = pytest.mark.browser
RELAY_ONLY = "?relay&ice-host=127.0.0.1"


@contextlib.contextmanager
def relayed_call(browser: Any, page_errors: Any, folder: Path) -> Iterator[tuple[Coturn, Any, Any]]:
    """Coturn, and alice's page (on Playwright's clock) in a connected relay-only call with bob's page."""
    with coturn() as turn:
        server = start_server(
            folder / "server",
            folder / "server.log",
            "--turn-url",
            turn.url,
            "--turn-secret",
            str(turn.secret_file),
        )
        try:
            url = server.url
            alice = cli_primary(url, folder / "alice", "alice", "Alice")
            bob = cli_primary(url, folder / "bob", "bob", "Bob")
            caller = linked_browser(
                browser, page_errors, url, alice.primary, folder / "a.png", RELAY_ONLY, fake_clock=True
            )
            callee = linked_browser(browser, page_errors, url, bob.primary, folder / "b.png", RELAY_ONLY)
            start_chat(caller, "bob")
            record_states(caller, callee)
            caller.get_by_test_id("call-voice").click()
            when(callee, "ringing-in")
            callee.get_by_test_id("call-answer").click()
            for page in (caller, callee):
                when(page, "connected")
                assert_audio_both_ways(page)
            assert stats(caller)["pair"][:2] == ["relay", "relay"]
            turn.stop()  # the media path is gone; the signalling is not
            for page in (caller, callee):
                when(page, "reconnecting")
                assert page.get_by_test_id("call-reconnecting").is_visible()
            yield turn, caller, callee
        finally:
            server.stop()


def test_a_relayed_call_that_loses_its_relay_shows_reconnecting_and_recovers_by_ice_restart(
    call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    with relayed_call(call_browser, page_errors, tmp_path) as (turn, caller, callee):
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
        assert "ended" not in shown_states(caller)
        caller.get_by_test_id("call-hangup").click()
        when(callee, "ended")


def test_a_relayed_call_whose_relay_never_comes_back_ends_as_failed_on_both_sides(
    call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    with relayed_call(call_browser, page_errors, tmp_path) as (_turn, caller, callee):
        assert "ended" not in shown_states(caller)
        caller.clock.fast_forward(31_000)  # past the 30 s a connection has to come back (CONNECT_MS)
        for page in (caller, callee):
            when(page, "ended")
        assert call_status(caller) == "Bob: voice call failed"
        assert call_status(callee) == "Alice: voice call failed"  # it heard the caller's hang-up "failed"
        for page, handle in ((caller, "bob"), (callee, "alice")):  # the chat keeps it on both
            start_chat(page, handle)
            page.get_by_test_id("message").filter(has_text="voice call failed").wait_for(timeout=TIMEOUT)
