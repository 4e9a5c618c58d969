"""Call signalling a browser must not trust, in real Chromium (docs/protocol/messaging.md §14.1-14.2): a
server that flips a byte of the callee's relayed ciphertext makes the call fail with the reason shown
and never connect; decrypted signals with a malformed description or candidate are dropped with the
reason logged (never their content), and the next call still rings and connects."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from call_pages import linked_browser, record_states, shown_states, wait_connected, when
from webmsg_helpers import cli_primary, start_chat

from calls_samples import sdp
from lockstep.calls.signals import Media, Offer, to_body
from lockstep.client.state import DeviceState
from lockstep_cli import IN_A_CALL, running
from lockstep_servers import start_server

pytestmark = pytest.mark.browser
HERE = Path(__file__).parent


def test_a_server_that_flips_a_byte_of_the_answer_makes_the_browser_call_fail_with_the_reason(
    call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    tampered_devices = tmp_path / "tamper-with"
    server = start_server(
        tmp_path / "server",
        tmp_path / "server.log",
        program=(sys.executable, str(HERE / "tampering_server.py"), str(tampered_devices)),
    )
    try:
        alice = cli_primary(server.url, tmp_path / "alice", "alice", "Alice")
        bob = cli_primary(server.url, tmp_path / "bob", "bob", "Bob")
        laptop = linked_browser(call_browser, page_errors, server.url, alice.primary, tmp_path / "qr.png")
        start_chat(laptop, "bob")
        record_states(laptop)
        # From now on the relay changes what bob's terminal sends: its answer cannot be decrypted.
        tampered_devices.write_text(DeviceState.load(bob.primary, "primary").device_id)
        with running("answer", "--wait", "60", "--state", str(bob.primary), env=IN_A_CALL) as answering:
            laptop.get_by_test_id("call-voice").click()
            when(laptop, "ended")
            status, (_out, err) = answering.wait(timeout=60), answering.communicate()
    finally:
        server.stop()
    problem = laptop.get_by_test_id("call-problem")
    assert problem.is_visible()
    assert problem.inner_text().startswith("A call message from Bob could not be decrypted ("), (
        problem.inner_text()
    )
    assert problem.inner_text().endswith("it was changed on the way, so the call was ended.")
    assert "connecting" not in shown_states(laptop) and "connected" not in shown_states(laptop)
    # The call's connection was closed without ever connecting (a fresh one waits for the next call).
    connections = laptop.evaluate("window.__lockstepPeerConnections.map((pc) => pc.connectionState)")
    assert "closed" in connections and "connected" not in connections, connections
    # The callee hears the caller's hang-up "failed" and says so.
    assert status == 7 and err.startswith("lockstep: the call with @alice failed"), err


def test_malformed_call_signals_are_dropped_with_the_reason_and_the_next_call_rings(
    server_process: Any, call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    url = server_process.url
    alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    laptop = linked_browser(call_browser, page_errors, url, bob.primary, tmp_path / "qr.png")
    logged: list[str] = []
    laptop.on("console", lambda message: logged.append(message.text))
    record_states(laptop)

    no_fingerprint = to_body(Offer("m" * 22, Media.AUDIO, sdp())) | {
        "sdp": sdp().replace("a=fingerprint", "a=x")
    }
    short_candidate = {
        "call_id": "n" * 22,
        "type": "candidates",
        "candidates": [{"candidate": "candidate:x", "mid": "0"}],
    }
    subprocess.run(
        [
            sys.executable,
            str(HERE / "send_call_signals.py"),
            str(alice.primary),
            "bob",
            json.dumps(no_fingerprint),
            json.dumps(short_candidate),
        ],
        check=True,
        timeout=60,
    )
    deadline = time.monotonic() + 20
    while len(dropped := [line for line in logged if "dropped a call signal" in line]) < 2:
        assert time.monotonic() < deadline, logged
        laptop.wait_for_timeout(100)
    assert any(line.endswith("a session description without a DTLS fingerprint") for line in dropped), dropped
    assert any("a candidate needs foundation" in line for line in dropped), dropped
    assert not any("v=0" in line or "candidate:x" in line for line in dropped)  # reasons, never content
    assert shown_states(laptop) == []  # nothing rang

    dial = ("call", "bob", "--seconds", "1", "--state", str(alice.primary))
    with running(*dial, env=IN_A_CALL) as dialling:
        when(laptop, "ringing-in")
        laptop.get_by_test_id("call-answer").click()
        wait_connected(laptop)
        when(laptop, "ended")
        status, (out, err) = dialling.wait(timeout=60), dialling.communicate()
    assert status == 0 and out.startswith("voice call, "), err
