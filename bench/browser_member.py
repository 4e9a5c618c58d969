"""One group member's laptop as a real Chromium companion, for bench/group_fanout.py --browser.

The product page is opened, its link code screenshotted and approved by the member's Python phone (as
tests/webmsg/test_webmsg_large_group.py does), and from then on it is driven only through the page: the
chat row is clicked, the composer typed in and sent, a member removed from the group panel.

What the page did is read from the page itself, on the browser's wall clock (``Date.now()``, compared with
Python's ``time.time()`` on the same box): when a message row was first drawn (the animation frame after it
entered the DOM), when an outgoing row first showed the server had taken it (``data-status`` sent or
later), when the send button was clicked, and every long task (> 50 ms) with its start. The main thread's
busy time and the JavaScript heap come from the DevTools protocol's ``Performance.getMetrics``
(``TaskDuration``: every task the renderer's main thread ran; ``JSHeapUsedSize``, read after a forced
garbage collection so that it counts what the page keeps, not what it has yet to collect).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chromium import launch
from phone_linking import open_companion

WATCH = """
() => {
  const w = (window.groupBench = { longTasks: [], shownAt: {}, sentAt: {}, clickedAt: 0 });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) w.longTasks.push([performance.timeOrigin + e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: false });
  document.addEventListener("click", (event) => {
    if (event.target.closest?.('[data-testid="composer-send"]')) w.clickedAt = Date.now();
  }, true);
  const list = document.querySelector('[data-testid="messages"]');
  new MutationObserver(() => {
    const drawn = [];
    for (const row of list.querySelectorAll('[data-testid="message"]')) {
      const text = row.querySelector('[data-testid="message-text"]')?.textContent ?? "";
      if (text && !(text in w.shownAt) && !drawn.includes(text)) drawn.push(text);
      const id = row.dataset.messageId;
      if (id && !(id in w.sentAt) && ["sent", "delivered", "read"].includes(row.dataset.status)) {
        w.sentAt[id] = Date.now();
      }
    }
    for (const text of drawn) w.shownAt[text] = 0;
    const stamp = () => { for (const text of drawn) w.shownAt[text] = Date.now(); };
    if (drawn.length) requestAnimationFrame(stamp);
  }).observe(list, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-status"] });
}
"""

# Open the group panel's member list; the time from the click to the frame that shows it.
OPEN_PANEL = """
async () => {
  const started = performance.now();
  document.querySelector('[data-testid="group-panel"] summary').click();
  await new Promise((drawn) => requestAnimationFrame(() => setTimeout(drawn, 0)));
  return (performance.now() - started) / 1000;
}
"""


@dataclass(frozen=True)
class MainThread:
    """The page's main thread between two readings."""

    busy_s: float
    """Time in tasks (DevTools ``TaskDuration``)."""
    long_tasks: int
    longest_ms: float
    long_total_s: float
    heap_mb: float
    """JavaScript heap in use at the second reading, after a garbage collection."""


class BrowserMember:
    """The Chromium page of one member's linked laptop."""

    def __init__(self, playwright: Any, url: str) -> None:
        self.browser = launch(playwright)
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 860})
        self.page = open_companion(self.context, url)
        self.cdp = self.page.context.new_cdp_session(self.page)
        self.cdp.send("Performance.enable")
        self._busy_from = 0.0
        self._since = 0.0

    def screenshot_code(self, path: Path) -> Path:
        self.page.get_by_test_id("qr").screenshot(path=str(path))
        return path

    def wait_linked(self) -> None:
        self.page.get_by_test_id("messenger").wait_for(timeout=120_000)

    def open_group(self, group_id: str) -> None:
        """Click the group's chat row (the page heard of the group when it was made) and watch its chat."""
        self.page.locator(f'[data-testid="chat-row"][data-conversation-id="group:{group_id}"]').click(
            timeout=300_000
        )
        self.page.get_by_test_id("conversation").wait_for(timeout=60_000)
        self.page.evaluate(WATCH)

    # --- the main thread ----------------------------------------------------------------------------
    def _metrics(self) -> dict[str, float]:
        return {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}

    def start(self) -> None:
        """Start a reading of the main thread (busy time and long tasks from now on)."""
        self._busy_from = self._metrics()["TaskDuration"]
        self._since = time.time() * 1000

    def reading(self) -> MainThread:
        busy = self._metrics()["TaskDuration"] - self._busy_from
        tasks = [d for start, d in self.page.evaluate("window.groupBench.longTasks") if start >= self._since]
        self.cdp.send("HeapProfiler.collectGarbage")
        heap = self._metrics()["JSHeapUsedSize"] / 2**20
        return MainThread(busy, len(tasks), max(tasks, default=0.0), sum(tasks) / 1000, heap)

    # --- what the person does and sees ----------------------------------------------------------------
    def send(self, text: str) -> None:
        self.page.get_by_test_id("composer").fill(text)
        self.page.get_by_test_id("composer-send").click()

    def clicked_at(self) -> float:
        """When the send button was last clicked (seconds, wall clock)."""
        return float(self.page.evaluate("window.groupBench.clickedAt")) / 1000

    def sent(self, text: str, timeout: float = 900) -> tuple[str, float]:
        """The id of the outgoing message ``text`` and when the server had taken it (seconds, wall clock)."""
        row = self.page.get_by_test_id("message").filter(
            has=self.page.get_by_test_id("message-text").filter(has_text=text)
        )
        row.wait_for(timeout=60_000)
        message_id = str(row.get_attribute("data-message-id"))
        at = self._poll(f"window.groupBench.sentAt[{message_id!r}] ?? 0", timeout)
        if row.get_attribute("data-status") == "failed":
            raise RuntimeError(f"the browser's send failed: {row.inner_text()}")
        return message_id, at

    def shown_at(self, text: str, timeout: float = 900) -> float:
        """When the page drew the message ``text`` (seconds, wall clock)."""
        return self._poll(f"window.groupBench.shownAt[{text!r}] ?? 0", timeout)

    def _poll(self, expression: str, timeout: float) -> float:
        """Polled from here: ``wait_for_function`` cannot wait on what the page computes asynchronously,
        and a slow page must not be slowed further by a tight loop in it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = float(self.page.evaluate(expression))
            if value:
                return value / 1000
            failed = self.page.locator('[data-testid="message"][data-status="failed"]')
            if failed.count():
                raise RuntimeError(f"the browser's send failed: {failed.first.inner_text()}")
            time.sleep(0.05)
        raise TimeoutError(f"{expression}: not within {timeout} s")

    def remove_member(self, handle: str) -> float:
        """Remove @``handle`` through the group panel (Members, a search, their Remove); how long the
        panel took to open (seconds, from the click to the next frame)."""
        panel = self.page.get_by_test_id("group-panel")
        opened = 0.0
        if not panel.locator("details").evaluate("(details) => details.open"):
            opened = self.page.evaluate(OPEN_PANEL)
        search = panel.get_by_test_id("group-member-search")
        if search.is_visible():  # more members than the panel lists
            search.fill(f"@{handle}")
        member = panel.get_by_test_id("group-member").filter(has_text=f"(@{handle})")
        member.get_by_test_id("group-remove").click(timeout=60_000)
        member.wait_for(state="detached", timeout=120_000)
        return opened

    # --- where the main thread's time goes (--profile) ----------------------------------------------------
    def start_profile(self) -> None:
        self.cdp.send("Profiler.enable")
        self.cdp.send("Profiler.setSamplingInterval", {"interval": 1000})
        self.cdp.send("Profiler.start")

    def stop_profile(self, top: int = 15) -> list[tuple[float, str]]:
        """The functions the page spent most time in since :meth:`start_profile` (self time, ms), idle and
        garbage collection included, as ``(ms, "name file:line")``."""
        profile = self.cdp.send("Profiler.stop")["profile"]
        frames = {n["id"]: n["callFrame"] for n in profile["nodes"]}
        spent: dict[str, float] = {}
        for node, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
            frame = frames[node]
            where = f"{frame['functionName'] or '(anonymous)'} {frame['url'].rsplit('/', 1)[-1]}"
            where += f":{frame['lineNumber'] + 1}" if frame["url"] else ""
            spent[where] = spent.get(where, 0.0) + delta / 1000
        return sorted(((ms, where) for where, ms in spent.items()), reverse=True)[:top]

    def dom_nodes(self) -> int:
        return int(self.page.evaluate("document.getElementsByTagName('*').length"))

    def close(self) -> None:
        self.browser.close()
