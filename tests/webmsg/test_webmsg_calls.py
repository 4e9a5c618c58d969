"""Calls in the browser (docs/protocol/messaging.md §14) with real Chromium and real media: Chromium's
fake microphone plays a 440 Hz tone the test made, the terminal (`lockstep answer`, aiortc) plays 660 Hz;
each side's received audio is checked by frequency, and RTP is checked both ways with getStats(). ICE keeps
to loopback: Chromium gathers loopback host candidates and the pages offer only 127.0.0.1 (`?ice-host=`),
the terminal likewise (LOCKSTEP_ICE_HOSTS)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import TIMEOUT, cli_primary, link_to_terminal_primary, receive_json, start_chat

from chromium import CHROMIUM, CHROMIUM_ARGS, call_args
from lockstep_cli import LOCKSTEP, lockstep_ok
from lockstep_servers import start_server
from tone import dominant_frequency, write_tone
from turn_server import coturn

pytestmark = pytest.mark.browser
LOOPBACK = "?ice-host=127.0.0.1"
TERMINAL_ENV = {**os.environ, "LOCKSTEP_ICE_HOSTS": "127.0.0.1"}

STATS = """
async () => {
  const pc = window.__lockstepPeerConnections.at(-1);
  const report = await pc.getStats();
  const out = {inbound: {}, outbound: {}, pair: null};
  const byId = new Map([...report.values()].map((s) => [s.id, s]));
  for (const s of report.values()) {
    if (s.type === "inbound-rtp")
      out.inbound[s.kind] = {packets: s.packetsReceived, level: s.audioLevel ?? null,
                             frames: s.framesDecoded ?? null, width: s.frameWidth ?? null};
    if (s.type === "outbound-rtp") out.outbound[s.kind] = {packets: s.packetsSent};
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded")
      out.pair = [byId.get(s.localCandidateId)?.candidateType, byId.get(s.remoteCandidateId)?.candidateType,
                  byId.get(s.remoteCandidateId)?.address, byId.get(s.localCandidateId)?.address];
  }
  return out;
}
"""


def on_loopback(pair: list[str | None]) -> bool:
    """The pair's local end is a host candidate (an address of this machine: Chromium gathers all of them,
    the pages only signal 127.0.0.1), and its remote end is 127.0.0.1 — or a peer-reflexive candidate:
    when the peer's check arrives before its signalled candidate, Chromium learns the remote end from
    that check and hides its address from getStats()."""
    local_type, remote_type, remote_address, _local_address = pair
    if local_type != "host":
        return False
    return remote_address == "127.0.0.1" or (remote_type == "prflx" and not remote_address)


# The strongest frequency the page hears from the peer, from WebAudio's FFT of the remote stream.
HEARD = """
async () => {
  const audio = document.querySelector('[data-testid="call-remote-audio"]');
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  context.createMediaStreamSource(audio.srcObject).connect(analyser);
  await new Promise((r) => setTimeout(r, 1500));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  await context.close();
  return [best * context.sampleRate / analyser.fftSize, bins[best]];
}
"""

# Every RTCPeerConnection a page makes, for getStats() (the page itself keeps them private).
KEEP_PEER_CONNECTIONS = """
(() => {
  const Original = window.RTCPeerConnection;
  window.__lockstepPeerConnections = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.__lockstepPeerConnections.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
})();
"""


@pytest.fixture
def caller_tone(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "browser-440.wav", 440, seconds=5)


@pytest.fixture
def calling_browser(playwright: Any, caller_tone: Path, page_errors: Any) -> Iterator[Any]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *call_args(caller_tone)]
    )
    try:
        yield browser
    finally:
        browser.close()


def new_page(browser: Any, page_errors: Any) -> Any:
    context = page_errors.watch(browser.new_context(viewport={"width": 1280, "height": 860}))
    context.add_init_script(KEEP_PEER_CONNECTIONS)
    return context.new_page()


def linked_browser(
    browser: Any, page_errors: Any, url: str, primary: Path, qr: Path, query: str = LOOPBACK
) -> Any:
    page = new_page(browser, page_errors)
    page.goto(url + "/" + query)
    link_to_terminal_primary(page, primary, qr)
    return page


def call_status(page: Any) -> str:
    return str(page.get_by_test_id("call-status").inner_text())


def test_a_browser_calls_a_terminal_tones_both_ways_and_the_chat_keeps_the_call(
    server_process, calling_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    url = server_process.url
    alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    laptop = linked_browser(calling_browser, page_errors, url, alice.primary, tmp_path / "qr.png")
    start_chat(laptop, "bob")
    answering = subprocess.Popen(
        [
            LOCKSTEP,
            "answer",
            "--wait",
            "60",
            "--play",
            str(write_tone(tmp_path / "660.wav", 660)),
            "--record",
            str(tmp_path / "bob-heard.wav"),
            "--state",
            str(bob.primary),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=TERMINAL_ENV,
    )
    try:
        laptop.get_by_test_id("call-voice").click()
        laptop.get_by_test_id("call-screen").wait_for(timeout=TIMEOUT)
        screen = laptop.get_by_test_id("call-screen")
        assert laptop.get_by_test_id("call-peer").inner_text() == "Bob", screen.inner_text()
        laptop.wait_for_function(
            "() => document.querySelector('[data-testid=call-screen]').dataset.state === 'connected'",
            timeout=TIMEOUT,
        )
        laptop.wait_for_timeout(2500)  # media flows for a while
        stats = laptop.evaluate(STATS)
        heard, level_db = laptop.evaluate(HEARD)
        assert laptop.get_by_test_id("call-duration").inner_text().startswith("0:0")
        laptop.get_by_test_id("call-hangup").click()
        out, err = answering.communicate(timeout=30)
    finally:
        if answering.poll() is None:
            answering.kill()
    assert answering.returncode == 0, err
    assert out.startswith("voice call, ") and out.strip().endswith("with @alice")
    assert stats["outbound"]["audio"]["packets"] > 50 and stats["inbound"]["audio"]["packets"] > 50, stats
    assert stats["inbound"]["audio"]["level"] > 0.01, stats
    assert stats["pair"][0] == "host" and stats["pair"][2] == "127.0.0.1", stats
    assert abs(heard - 660) < 15 and level_db > -70, (heard, level_db)
    terminal_heard, level = dominant_frequency(tmp_path / "bob-heard.wav")
    assert abs(terminal_heard - 440) <= 5 and level > 500
    entry = laptop.get_by_test_id("message").filter(has_text="voice call, ")
    entry.wait_for(timeout=TIMEOUT)
    assert lockstep_ok("receive", "--state", str(alice.primary), "--wait", "3").count("voice call, ") == 1


# Every change of the call screen's state, with the time (all pages share this machine's clock).
RECORD_STATES = """
() => {
  window.__callStates = [];
  const screen = document.querySelector('[data-testid="call-screen"]');
  const note = () => window.__callStates.push([screen.dataset.state, Date.now()]);
  new MutationObserver(note).observe(screen, { attributes: true, attributeFilter: ["data-state"] });
}
"""


def when(page: Any, state: str) -> float:
    """When the page's call screen first showed ``state`` (ms), waiting for it."""
    page.wait_for_function(
        f"() => (window.__callStates || []).some(([s]) => s === '{state}')", timeout=TIMEOUT
    )
    return float(page.evaluate(f"() => window.__callStates.find(([s]) => s === '{state}')[1]"))


def test_every_device_of_the_callee_rings_the_first_answer_wins_and_video_flows_both_ways(
    server_process, calling_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    url = server_process.url
    alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    laptop = linked_browser(calling_browser, page_errors, url, alice.primary, tmp_path / "a.png")
    bob_laptop = linked_browser(calling_browser, page_errors, url, bob.primary, tmp_path / "b1.png")
    bob_tablet = linked_browser(calling_browser, page_errors, url, bob.primary, tmp_path / "b2.png")
    start_chat(laptop, "bob")
    for page in (laptop, bob_laptop, bob_tablet):
        page.get_by_test_id("call-screen").wait_for(state="attached")
        page.evaluate(RECORD_STATES)

    laptop.get_by_test_id("call-video").click()
    for page in (bob_laptop, bob_tablet):  # both of bob's browsers ring, with who is calling
        when(page, "ringing-in")
        assert page.get_by_test_id("call-peer").inner_text() == "Alice"
        assert call_status(page) == "Incoming video call"
    bob_laptop.get_by_test_id(
        "call-answer"
    ).dblclick()  # a second press while the microphone starts is ignored
    answered = when(laptop, "connecting")  # the answer reached the caller ...
    stopped = when(bob_tablet, "elsewhere")  # ... and, through the same fan-out, bob's other browser
    assert stopped - answered < 1000
    assert call_status(bob_tablet) == "Answered on another device"
    for page in (laptop, bob_laptop):
        when(page, "connected")
    laptop.wait_for_timeout(3000)
    for page in (laptop, bob_laptop):
        stats = page.evaluate(STATS)
        for kind in ("audio", "video"):
            assert stats["outbound"][kind]["packets"] > 20 and stats["inbound"][kind]["packets"] > 20, stats
        assert stats["inbound"]["video"]["frames"] > 10 and stats["inbound"]["video"]["width"] > 0, stats
        assert stats["inbound"]["audio"]["level"] > 0.01, stats
        assert on_loopback(stats["pair"]), stats
    assert laptop.get_by_test_id("call-peer").inner_text() == "Bob"

    laptop.get_by_test_id("call-hangup").click()
    for page in (laptop, bob_laptop, bob_tablet):  # every device keeps the call in the chat
        when(page, "ended")
        page.get_by_test_id("chat-row").filter(has_text="@").first.click()
        page.get_by_test_id("message").filter(has_text="video call, ").wait_for(timeout=TIMEOUT)
    assert "video call, " in lockstep_ok("receive", "--state", str(bob.primary), "--wait", "3")


def test_a_relay_only_browser_call_goes_through_coturn(
    calling_browser: Any, page_errors: Any, tmp_path: Path
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
                calling_browser,
                page_errors,
                server.url,
                alice.primary,
                tmp_path / "qr.png",
                query="?relay&ice-host=127.0.0.1",
            )
            start_chat(laptop, "bob")
            answering = subprocess.Popen(
                [LOCKSTEP, "answer", "--wait", "60", "--relay-only", "--state", str(bob.primary)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=TERMINAL_ENV,
            )
            try:
                laptop.get_by_test_id("call-voice").click()
                laptop.wait_for_function(
                    "() => document.querySelector('[data-testid=call-screen]').dataset.state === 'connected'",
                    timeout=TIMEOUT,
                )
                laptop.wait_for_timeout(1500)
                stats = laptop.evaluate(STATS)
                laptop.get_by_test_id("call-hangup").click()
                _out, err = answering.communicate(timeout=30)
            finally:
                if answering.poll() is None:
                    answering.kill()
        finally:
            server.stop()
    assert answering.returncode == 0, err
    assert stats["pair"][:2] == ["relay", "relay"], stats
    assert stats["inbound"]["audio"]["packets"] > 20 and stats["outbound"]["audio"]["packets"] > 20, stats


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        # A microphone (Chromium's fake one) behind a permission prompt, which headless Chromium refuses.
        (
            ["--use-fake-device-for-media-stream"],
            "Lockstep may not use your microphone: allow it in the browser",
        ),
        ([], "No microphone was found on this device."),  # none at all
    ],
    ids=["refused", "absent"],
)
def test_a_refused_or_absent_microphone_is_said_in_words_and_nothing_is_dialled(
    server_process, playwright: Any, page_errors: Any, tmp_path: Path, flags: list[str], words: str
) -> None:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *flags])
    try:
        alice = cli_primary(server_process.url, tmp_path / "alice", "alice", "Alice")
        bob = cli_primary(server_process.url, tmp_path / "bob", "bob", "Bob")
        laptop = linked_browser(browser, page_errors, server_process.url, alice.primary, tmp_path / "qr.png")
        start_chat(laptop, "bob")
        laptop.get_by_test_id("call-voice").click()
        problem = laptop.get_by_test_id("call-problem")
        problem.wait_for(timeout=TIMEOUT)
        assert problem.inner_text().startswith(words), problem.inner_text()
        assert laptop.get_by_test_id("call-hangup").is_hidden()
        laptop.get_by_test_id("call-close").click()
        laptop.get_by_test_id("call-screen").wait_for(state="hidden", timeout=TIMEOUT)
    finally:
        browser.close()
    assert not [m for m in receive_json(bob.primary, wait=2) if m["kind"] == "call"]  # no offer went out


def inbound_audio_level(page: Any) -> float:
    return float(page.evaluate(STATS)["inbound"]["audio"]["level"] or 0)


def test_mute_and_switching_voice_to_video_in_a_call(
    server_process, calling_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    url = server_process.url
    alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    laptop = linked_browser(calling_browser, page_errors, url, alice.primary, tmp_path / "a.png")
    other = linked_browser(calling_browser, page_errors, url, bob.primary, tmp_path / "b.png")
    start_chat(laptop, "bob")
    for page in (laptop, other):
        page.get_by_test_id("call-screen").wait_for(state="attached")
        page.evaluate(RECORD_STATES)
    laptop.get_by_test_id("call-voice").click()
    when(other, "ringing-in")
    other.get_by_test_id("call-answer").click()
    when(laptop, "connected")
    when(other, "connected")
    other.wait_for_timeout(2000)
    assert inbound_audio_level(other) > 0.01

    laptop.get_by_test_id("call-mute").click()  # bob hears silence
    assert laptop.get_by_test_id("call-mute").inner_text() == "Unmute"
    other.wait_for_function(
        f"async () => ((await ({STATS})()).inbound.audio.level ?? 1) < 0.001", timeout=TIMEOUT, polling=200
    )
    laptop.get_by_test_id("call-mute").click()

    laptop.get_by_test_id("call-switch").click()  # voice -> video: a renegotiation in the same call
    other.get_by_test_id("call-remote-video").wait_for(state="visible", timeout=TIMEOUT)
    other.wait_for_function(
        f"async () => ((await ({STATS})()).inbound.video?.frames ?? 0) > 10", timeout=TIMEOUT, polling=200
    )
    assert other.get_by_test_id("call-switch").inner_text() == "Voice only"
    assert call_status(laptop) == call_status(other) == "Connected"
    other.get_by_test_id("call-hangup").click()
    when(laptop, "ended")
