"""Call set-up time on loopback: from "dial" to the caller receiving the callee's first audio packet.

Three pairs, each over ``--calls`` calls (one after another) on one ``lockstep serve`` process (SQLite):

- ``browser-browser``: a browser companion (Debian's Chromium, fake microphone) calls another account's
  browser companion, which answers the moment it rings (a script in the page clicks Answer);
- ``browser-terminal``: a browser companion calls a terminal (``lockstep.client.calls.Phone``, aiortc)
  that answers at once;
- ``terminal-terminal``: the same with a terminal calling.

A browser call is timed in the page, from the click on "Call" to ``getStats()`` first showing an
inbound audio RTP packet (polled every 5 ms); a terminal call from ``Phone.dial`` to aiortc handing over
the first decoded audio frame. Both include what a real dial does: the microphone, ``calls.ice_servers``,
ICE gathering (host candidates on 127.0.0.1 only), the offer as an Olm message through the server to
every device of the callee and the caller's other devices, the answer back, ICE checks, DTLS and SRTP.
Nothing is warmed between calls except what a client keeps anyway (verified contacts, Olm sessions).

    .venv/bin/python bench/call_setup.py [--calls 50] [--pairs browser-browser,browser-terminal,...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from loadgen import percentile

from chromium import CHROMIUM, CHROMIUM_ARGS, call_args
from lockstep.calls.signals import Media
from lockstep.client.calls import CallOptions, Phone
from lockstep.client.messenger import Messenger
from lockstep.client.state import DeviceState
from lockstep.link.devices import Role
from lockstep_cli import LOCKSTEP
from lockstep_servers import start_server
from tone import write_tone

LOOPBACK = ("127.0.0.1",)
PAIRS = ("browser-browser", "browser-terminal", "terminal-terminal")
TIMEOUT_MS = 20_000

# In every page: note when "Call" is clicked, and answer the moment a call rings.
PAGE_SCRIPT = """
(() => {
  document.addEventListener("click", (event) => {
    if (event.target.closest('[data-testid="call-voice"]')) window.__dialledAt = performance.now();
  }, true);
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  // Where the time goes: when each stage of the newest peer connection was reached (ms since the click).
  window.__phases = {};
  const mark = (name) => {
    if (window.__dialledAt !== undefined && !(name in window.__phases))
      window.__phases[name] = performance.now() - window.__dialledAt;
  };
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.__pcs.push(pc);
    mark("microphone");
    pc.addEventListener("icegatheringstatechange", () =>
      pc.iceGatheringState === "complete" && mark("gathered"));
    pc.addEventListener("signalingstatechange", () => pc.signalingState === "stable" && mark("answered"));
    pc.addEventListener("iceconnectionstatechange", () =>
      ["connected", "completed"].includes(pc.iceConnectionState) && mark("ice"));
    pc.addEventListener("connectionstatechange", () => pc.connectionState === "connected" && mark("dtls"));
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  setInterval(() => {
    if (!window.__autoAnswer) return;
    const answer = document.querySelector('[data-testid="call-answer"]');
    if (answer && !answer.hidden && answer.offsetParent !== null) answer.click();
  }, 5);
})();
"""

FIRST_AUDIO = """
async () => {
  for (;;) {
    const pc = window.__pcs.at(-1);
    if (pc && window.__dialledAt !== undefined) {
      for (const s of (await pc.getStats()).values())
        if (s.type === "inbound-rtp" && s.kind === "audio" && s.packetsReceived > 0)
          return [performance.now() - window.__dialledAt, window.__phases];
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}
"""


def cli(*args: str) -> str:
    result = subprocess.run([LOCKSTEP, *args], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode:
        raise RuntimeError(f"lockstep {' '.join(args[:2])}: {result.stderr}")
    return result.stdout


def primary(url: str, folder: Path, handle: str) -> Path:
    state = folder / handle
    cli(
        "primary",
        "init",
        "--server",
        url,
        "--handle",
        handle,
        "--name",
        handle.title(),
        "--state",
        str(state),
    )
    cli("receive", "--state", str(state))
    return state


async def browser_companion(browser: Any, url: str, primary_state: Path, folder: Path) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    await context.add_init_script(PAGE_SCRIPT)
    page = await context.new_page()
    await page.goto(url + "/?ice-host=127.0.0.1")
    qr = folder / f"qr-{primary_state.name}.png"
    await page.get_by_test_id("qr").screenshot(path=str(qr))
    await asyncio.to_thread(
        cli, "primary", "scan", "--image", str(qr), "--yes", "--state", str(primary_state)
    )
    await page.get_by_test_id("messenger").wait_for(timeout=TIMEOUT_MS)
    await page.wait_for_timeout(1000)  # its keys are published once it signed in
    await asyncio.to_thread(cli, "receive", "--state", str(primary_state))
    return page


async def open_chat(page: Any, handle: str) -> None:
    await page.get_by_test_id("new-chat").click()
    await page.get_by_test_id("new-chat-handle").fill(handle)
    await page.get_by_test_id("new-chat-start").click()
    await page.get_by_test_id("conversation").wait_for(timeout=TIMEOUT_MS)


PHASES = ("microphone", "gathered", "answered", "ice", "dtls")
"""Stages of a browser's dial, in order: its peer connection made (the microphone started), ICE gathering
complete (the offer goes out then), the answer applied, ICE connected, DTLS done (``connected``)."""


async def browser_dials(page: Any, ended: Any, phases: dict[str, list[float]]) -> float:
    """One call from ``page``: click "Call", time the first audio packet in, hang up, wait for its end.
    Each stage's time since the click is added to ``phases``."""
    await page.get_by_test_id("call-voice").click()
    setup_ms, reached = await page.evaluate(FIRST_AUDIO)
    for phase in PHASES:
        if phase in reached:
            phases.setdefault(phase, []).append(float(reached[phase]))
    await page.get_by_test_id("call-hangup").click()
    await ended()
    await page.evaluate("() => { window.__dialledAt = undefined; window.__phases = {}; }")
    return float(setup_ms)


@contextlib.asynccontextmanager
async def answering_terminal(state: Path) -> AsyncIterator[asyncio.Event]:
    """A terminal that answers every call at once until the block ends; the event is set after each call."""
    done = asyncio.Event()
    async with Messenger.open(DeviceState.load(state, Role.PRIMARY)) as messenger:
        phone = Phone(messenger, CallOptions(host_addresses=LOOPBACK))

        async def loop() -> None:
            while True:
                if await phone.answer_next(wait=60) is not None:
                    done.set()

        task = asyncio.create_task(loop())
        try:
            yield done
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def measure(
    pair: str, calls: int, url: str, folder: Path, browser: Any, phases: dict[str, list[float]]
) -> list[float]:
    prefix = "".join(word[0] for word in pair.split("-"))  # bb, bt, tt: an account pair per run
    caller, callee = primary(url, folder, f"{prefix}caller"), primary(url, folder, f"{prefix}callee")
    times: list[float] = []
    if pair == "terminal-terminal":
        async with (
            answering_terminal(callee) as answered,
            Messenger.open(DeviceState.load(caller, Role.PRIMARY)) as messenger,
        ):
            phone = Phone(messenger, CallOptions(host_addresses=LOOPBACK))
            for _ in range(calls):
                answered.clear()
                outcome = await phone.dial(callee.name, Media.AUDIO, seconds=1.0)
                assert outcome.first_audio_after_ms is not None, outcome
                times.append(outcome.first_audio_after_ms)
                await asyncio.wait_for(answered.wait(), 30)
        return times
    page = await browser_companion(browser, url, caller, folder)
    await open_chat(page, callee.name)
    print(f"{pair}: caller linked", file=sys.stderr, flush=True)
    if pair == "browser-terminal":
        async with answering_terminal(callee) as answered:
            for _ in range(calls):
                answered.clear()

                async def ended() -> None:
                    await asyncio.wait_for(answered.wait(), 30)

                times.append(await browser_dials(page, ended, phases))
        return times
    other = await browser_companion(browser, url, callee, folder)
    await other.evaluate("() => { window.__autoAnswer = true; }")
    for _ in range(calls):

        async def ended() -> None:
            await other.wait_for_function(
                "() => document.querySelector('[data-testid=call-screen]').dataset.state !== 'connected'",
                timeout=TIMEOUT_MS,
            )
            await page.wait_for_timeout(300)

        times.append(await browser_dials(page, ended, phases))
        print(f"{pair}: {times[-1]:.0f} ms", file=sys.stderr, flush=True)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--pairs", default=",".join(PAIRS))
    args = parser.parse_args()
    pairs = [p for p in args.pairs.split(",") if p]
    from playwright.async_api import async_playwright

    os.environ["LOCKSTEP_ICE_HOSTS"] = "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="lockstep-calls-") as temp:
        folder = Path(temp)
        server = start_server(folder / "server", folder / "server.log")
        tone = write_tone(folder / "tone.wav", 440, seconds=5)
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *call_args(tone)]
                )
                results = {}
                for pair in pairs:
                    started = time.monotonic()
                    phases: dict[str, list[float]] = {}
                    times = sorted(await measure(pair, args.calls, server.url, folder, browser, phases))
                    results[pair] = {
                        "calls": len(times),
                        "p50_ms": round(percentile(times, 0.5), 1),
                        "p99_ms": round(percentile(times, 0.99), 1),
                        "max_ms": round(max(times), 1),
                        "wall_s": round(time.monotonic() - started, 1),
                    }
                    if phases:  # medians of each stage, since the click: where the time goes
                        results[pair]["stages_p50_ms"] = {
                            phase: round(percentile(sorted(phases[phase]), 0.5))
                            for phase in PHASES
                            if phase in phases
                        }
                    print(json.dumps({pair: results[pair]}), flush=True)
                await browser.close()
        finally:
            server.stop()
        print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
