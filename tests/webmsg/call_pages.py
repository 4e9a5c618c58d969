"""Pages in a call, for the browser call tests (docs/protocol/messaging.md §14): what each page's
RTCPeerConnection measured (getStats), what it heard (WebAudio FFT), and when its call screen changed.

Every page is opened with KEEP_PEER_CONNECTIONS (so getStats() can reach the page's private peer
connections) and RECORD_STATES (so a test can ask when a state was first shown, across pages that share
this machine's clock). ICE keeps to loopback: the pages offer only 127.0.0.1 (``?ice-host=``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from webmsg_helpers import TIMEOUT, link_to_terminal_primary

LOOPBACK = "?ice-host=127.0.0.1"

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

# Every change of the call screen's state, with the time (all pages share this machine's clock).
RECORD_STATES = """
() => {
  window.__callStates = [];
  if (window.__callStatesObserved) return;
  window.__callStatesObserved = true;
  const screen = document.querySelector('[data-testid="call-screen"]');
  const note = () => window.__callStates.push([screen.dataset.state, Date.now()]);
  new MutationObserver(note).observe(screen, { attributes: true, attributeFilter: ["data-state"] });
}
"""


def new_page(browser: Any, page_errors: Any, **context: Any) -> Any:
    options = {"viewport": {"width": 1280, "height": 860}, **context}
    page_context = page_errors.watch(browser.new_context(**options))
    page_context.add_init_script(KEEP_PEER_CONNECTIONS)
    return page_context.new_page()


def linked_browser(
    browser: Any,
    page_errors: Any,
    url: str,
    primary: Path,
    qr: Path,
    query: str = LOOPBACK,
    *,
    fake_clock: bool = False,
) -> Any:
    """A companion page linked to the terminal primary ``primary``. With ``fake_clock`` the page runs
    on Playwright's clock (at real speed until the test moves it with ``page.clock.fast_forward``)."""
    page = new_page(browser, page_errors)
    if fake_clock:
        page.clock.install()
    page.goto(url + "/" + query)
    link_to_terminal_primary(page, primary, qr)
    return page


def record_states(*pages: Any) -> None:
    """Start (or restart) recording each page's call-screen states, for :func:`when`."""
    for page in pages:
        page.get_by_test_id("call-screen").wait_for(state="attached")
        page.evaluate(RECORD_STATES)


def when(page: Any, state: str, timeout: float = TIMEOUT) -> float:
    """When the page's call screen first showed ``state`` (ms), waiting for it."""
    page.wait_for_function(
        f"() => (window.__callStates || []).some(([s]) => s === '{state}')", timeout=timeout
    )
    return float(page.evaluate(f"() => window.__callStates.find(([s]) => s === '{state}')[1]"))


def shown_states(page: Any) -> list[str]:
    return [str(state) for state, _ in page.evaluate("() => window.__callStates")]


def call_status(page: Any) -> str:
    return str(page.get_by_test_id("call-status").inner_text())


def wait_connected(page: Any) -> None:
    page.wait_for_function(
        "() => document.querySelector('[data-testid=call-screen]').dataset.state === 'connected'",
        timeout=TIMEOUT,
    )


def stats(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(STATS)
    return result


def on_loopback(pair: list[str | None]) -> bool:
    """The pair's local end is a host candidate (an address of this machine: Chromium gathers all of them,
    the pages only signal 127.0.0.1), and its remote end is 127.0.0.1 — or a peer-reflexive candidate:
    when the peer's check arrives before its signalled candidate, Chromium learns the remote end from
    that check and hides its address from getStats()."""
    local_type, remote_type, remote_address, _local_address = pair
    if local_type != "host":
        return False
    return remote_address == "127.0.0.1" or (remote_type == "prflx" and not remote_address)


def wait_for_stats(
    page: Any, holds: Callable[[dict[str, Any]], bool], timeout_ms: float = TIMEOUT
) -> dict[str, Any]:
    """The page's stats once ``holds(stats)``, polled in Python: Playwright's wait_for_function takes a
    returned Promise for a truthy value, so it cannot wait on getStats() itself."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not holds(measured := stats(page)):
        assert time.monotonic() < deadline, measured
        page.wait_for_timeout(200)
    return measured


def sent_and_received(kind: str, packets: int) -> Callable[[dict[str, Any]], bool]:
    def holds(measured: dict[str, Any]) -> bool:
        out, into = measured["outbound"].get(kind), measured["inbound"].get(kind)
        return bool(out and into and out["packets"] > packets and into["packets"] > packets)

    return holds


def assert_audio_both_ways(page: Any, packets: int = 20) -> dict[str, Any]:
    """RTP flows both ways and what arrives is sound, not silence (getStats, not the UI's word), once
    more than ``packets`` went each way (a call that just connected has sent only a few)."""
    measured = wait_for_stats(page, sent_and_received("audio", packets))
    assert (measured["inbound"]["audio"]["level"] or 0) > 0.01, measured
    return measured


def dismiss_call_screen(*pages: Any) -> None:
    """Close each page's end-of-call line, so the next call starts from an empty screen."""
    for page in pages:
        close = page.get_by_test_id("call-close")
        if close.is_visible():
            close.click()
        page.get_by_test_id("call-screen").wait_for(state="hidden", timeout=TIMEOUT)
