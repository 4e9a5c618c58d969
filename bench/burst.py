"""A browser companion under a burst, and reopening a long chat (issue 15), in Debian's Chromium on loopback.

Alice is a terminal primary with a browser companion (the product page, linked by scanning its code);
Bob is a Python primary that sends ``--burst`` messages to Alice as fast as the server takes them
(tests/message_burst.py: encrypted in order, 64 requests in flight) while Alice's laptop has their chat
open. Measured, on one wall clock (the browser's Date.now() and Python's time.time()):

- shown: from the server accepting Bob's last send to the laptop having drawn it (the first animation
  frame after the row is in the DOM);
- read: from that last send to Bob handling a "read up to" that covers it;
- long tasks: every main-thread task over 50 ms while the burst was handled (PerformanceObserver);
- the most message rows the open conversation had in the DOM, and what IndexedDB was written.

Then ``--reopen`` messages in all are in the chat (more are sent if needed), the page is reloaded
(everything comes from IndexedDB), another chat is opened, and the long chat is opened again: the time
from the click to the first frame that shows its newest message; and how long the reload took to show
the chat list, split by the page's performance marks: from navigation to the messenger opening (page
load, connecting, signing in), from there to the chat list drawn (its summaries), and to every chat
unsealed in the background. The server is bench_server.py's (rate limits raised: one device sends the
whole burst).

    .venv/bin/python bench/burst.py [--burst 2000] [--reopen 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "webmsg"))

from bench_server import generous_server
from webmsg_helpers import link_to_terminal_primary, send_text, start_chat

from chromium import launch
from lockstep.client.messenger import Messenger, Received
from lockstep.client.state import DeviceState
from lockstep.e2e import receipts
from lockstep.e2e.envelope import Kind
from lockstep.link.devices import Role
from lockstep_cli import lockstep_ok, receive_json
from message_burst import Burst, send_burst
from phone_linking import open_companion

T = TypeVar("T")

WATCH = """
() => {
  const w = (window.burstBench = {
    longTasks: [], mostRows: 0, puts: 0, transactions: 0, shownAt: {}, work: {},
  });
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) w.longTasks.push(Math.round(entry.duration));
  }).observe({ type: "longtask", buffered: false });
  // What ran in frames over 50 ms (long animation frames: script entry points with their durations, and
  // the style and layout the frame forced), summed by kind over the burst.
  new PerformanceObserver((list) => {
    for (const frame of list.getEntries()) {
      const add = (name, ms) => { w.work[name] = (w.work[name] ?? 0) + ms; };
      for (const script of frame.scripts) {
        add(`${script.invokerType} ${script.invoker}`, script.duration);
        add("  of which forced style and layout", script.forcedStyleAndLayoutDuration);
      }
      const rendering = frame.renderStart ? frame.startTime + frame.duration - frame.renderStart : 0;
      add("the frame's own rendering (style, layout, paint)", rendering);
      add("frames over 50 ms", frame.duration);
    }
  }).observe({ type: "long-animation-frame", buffered: false });
  const list = document.querySelector('[data-testid="messages"]');
  // Only the rows added (reading every row's text at each change cost the page more than some of what
  // is measured here).
  new MutationObserver((records) => {
    w.mostRows = Math.max(w.mostRows, list.children.length);
    const now = [];
    for (const record of records)
      for (const row of record.addedNodes) {
        const text = row.querySelector?.('[data-testid="message-text"]')?.textContent;
        if (text != null && !(text in w.shownAt)) now.push(text);
      }
    if (now.length) requestAnimationFrame(() => { for (const text of now) w.shownAt[text] = Date.now(); });
  }).observe(list, { childList: true });
  const put = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function (value, key) { w.puts += 1; return put.call(this, value, key); };
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (names, mode, options) {
    if (mode === "readwrite") w.transactions += 1;
    return transaction.call(this, names, mode, options);
  };
}
"""

SHOWN = """
(text) => [...document.querySelectorAll('[data-testid="message-text"]')].some((e) => e.textContent === text)
"""

# Click the chat, then wait for the first frame that shows its newest message.
REOPEN = """
async (newest) => {
  const row = document.querySelector('[data-testid="chat-row"][data-conversation-id^="direct:"]');
  const started = performance.now();
  row.click();
  for (let frames = 0; frames < 600; frames++) {
    await new Promise((ok) => requestAnimationFrame(() => ok()));
    const texts = [...document.querySelectorAll('[data-testid="message-text"]')].map((t) => t.textContent);
    if (texts.includes(newest)) return { ms: performance.now() - started, rows: texts.length };
  }
  return { ms: -1, rows: 0 };
}
"""


UNSEALED = """() => performance.getEntriesByName("lockstep:chats-unsealed").length > 0"""

# Each mark's time since navigation (ms): the messenger opens once the socket is signed in.
MARKS = """
() => {
  const at = (name) => Math.round(performance.getEntriesByName(name)[0]?.startTime ?? -1);
  return { "signed in": at("lockstep:messenger-opening"), "chat list drawn": at("lockstep:chat-list-drawn"),
    "all unsealed": at("lockstep:chats-unsealed") };
}
"""


def in_thread(work: Coroutine[Any, Any, T]) -> T:
    out: list[T] = []
    runner = threading.Thread(target=lambda: out.append(asyncio.run(work)))
    runner.start()
    runner.join()
    if not out:
        raise RuntimeError("the Python device failed (see above)")
    return out[0]


async def burst_and_read(bob: Path, texts: list[str]) -> tuple[Burst, float]:
    """Bob's burst, then the time he handles a "read up to" covering his newest message."""
    read_at = 0.0

    def covers(messages: list[Received]) -> bool:
        nonlocal read_at
        for m in messages:
            read = m.kind is Kind.RECEIPT and m.body.get("status") == "read"
            if read and any(mark.position >= newest for mark in receipts.parse(m.body).marks):
                read_at = read_at or time.time()
                return True
        return False

    async with Messenger.open(DeviceState.load(bob, Role.PRIMARY)) as messenger:
        await messenger.receive(receipts=False)
        burst = await send_burst(messenger, "@alice", texts)
        newest = max(burst.sent)
        await messenger.receive(wait=60, receipts=False, until=covers, settle=0)
    return burst, read_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--reopen", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as folder,
        generous_server() as (url, _server),
        sync_playwright() as pw,
    ):
        tmp = Path(folder)
        alice, bob = tmp / "alice", tmp / "bob"
        for handle, state in (("alice", alice), ("bob", bob)):
            lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
            receive_json(state)
        browser = launch(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        laptop = open_companion(context, url)
        link_to_terminal_primary(laptop, alice, tmp / "qr.png")
        start_chat(laptop, "@bob")
        send_text(laptop, "go ahead")
        sent_so_far = 0
        for run in range(args.runs):
            laptop.evaluate(WATCH)
            texts = [f"run {run} message {i}" for i in range(args.burst)]
            burst, read_at = in_thread(burst_and_read(bob, texts))
            sent_so_far += args.burst
            newest_text = burst.sent[max(burst.sent)]
            drawn = "(t) => t in window.burstBench.shownAt"
            laptop.wait_for_function(drawn, arg=newest_text, timeout=120_000)
            laptop.wait_for_timeout(500)  # long tasks still being handled
            watch = laptop.evaluate("window.burstBench")
            shown = watch["shownAt"][newest_text] / 1000 - burst.last_accepted
            long_tasks = sorted(watch["longTasks"], reverse=True)
            print(
                f"burst {run + 1}: {args.burst} messages (chat now {sent_so_far + 1}): last shown "
                f"{shown:.2f} s after the last send, read back after {read_at - burst.last_accepted:.2f} s; "
                f"long tasks > 50 ms: {len(long_tasks)} (longest {long_tasks[:5]} ms); most rows in the DOM "
                f"{watch['mostRows']}; IndexedDB: {watch['transactions']} write transactions, "
                f"{watch['puts']} puts",
                flush=True,
            )
            work = sorted(watch["work"].items(), key=lambda item: -item[1])[:8]
            print("  in frames over 50 ms (ms): " + "; ".join(f"{k} {v:.0f}" for k, v in work), flush=True)
        if args.reopen > sent_so_far:
            fill = [f"fill {i}" for i in range(args.reopen - sent_so_far)]
            burst, _ = in_thread(burst_and_read(bob, fill))
            laptop.wait_for_function(SHOWN, arg=burst.sent[max(burst.sent)], timeout=600_000)
            newest_text = burst.sent[max(burst.sent)]
        timings, loads, marks = [], [], []
        for _ in range(args.runs):
            started = time.monotonic()
            laptop.reload()
            laptop.get_by_test_id("chat-row").first.wait_for(timeout=120_000)
            loads.append(time.monotonic() - started)
            laptop.get_by_test_id("new-chat").click()  # another screen state: no chat open
            reopened = laptop.evaluate(REOPEN, newest_text)  # right after the reload: may be still sealed
            timings.append(reopened["ms"])
            laptop.wait_for_function(UNSEALED, timeout=120_000)
            marks.append(laptop.evaluate(MARKS))
        print(
            f"reopen a {max(args.reopen, sent_so_far + 1)}-message chat: first frame with the newest message "
            f"{statistics.median(timings):.0f} ms (median of {timings}); rows drawn {reopened['rows']}; "
            f"page reload to chat list {statistics.median(loads):.2f} s "
            f"(median of {[round(x, 2) for x in loads]})",
            flush=True,
        )
        for name in ("signed in", "chat list drawn", "all unsealed"):
            print(f"  {name}: {[m[name] for m in marks]} ms after navigation", flush=True)
        browser.close()


if __name__ == "__main__":
    main()
