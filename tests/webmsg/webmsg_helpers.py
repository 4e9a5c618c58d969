"""Helpers for the browser messaging tests: CLI devices, chat gestures, the no-plaintext check."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lockstep_cli import link_terminal_companion, lockstep_ok, receive_json
from phone_linking import TIMEOUT, open_chats, open_companion

# Headless Chromium shows every page as visible (no window can be covered or minimised), so a test
# stands in for the person switching to another tab: with this init script, `lockstepTestSetHidden(true)`
# makes the page's visibility read "hidden" and fires `visibilitychange`, as Chromium does for a tab in
# the background.
HIDEABLE = """
(() => {
  let hidden = false;
  const state = () => (hidden ? "hidden" : "visible");
  Object.defineProperty(Document.prototype, "visibilityState", { get: state });
  Object.defineProperty(Document.prototype, "hidden", { get: () => hidden });
  window.lockstepTestSetHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""


T = TypeVar("T")


def in_thread(work: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to its end on a loop of its own (Playwright's sync API holds this thread's)."""
    out: list[T] = []
    runner = threading.Thread(target=lambda: out.append(asyncio.run(work)))
    runner.start()
    runner.join(timeout=180)
    assert out, "the Python devices did not finish"
    return out[0]


@dataclass
class CliAccount:
    handle: str
    primary: Path
    companion: Path | None = None


def cli_primary(url: str, state: Path, handle: str, name: str) -> CliAccount:
    lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--name", name, "--state", str(state))
    receive_json(state)  # publishes its keys
    return CliAccount(handle, state)


def cli_account_with_companion(url: str, tmp_path: Path, handle: str, name: str) -> CliAccount:
    """A terminal primary and a terminal companion linked to it (QR as an image file)."""
    account = cli_primary(url, tmp_path / f"{handle}-primary", handle, name)
    companion = tmp_path / f"{handle}-companion"
    link_terminal_companion(url, account.primary, companion, tmp_path / f"{handle}-qr.png")
    account.companion = companion
    receive_json(companion)  # publishes its keys
    return account


def receive_until(state: Path | None, predicate: Any, timeout: float = 20) -> list[dict[str, Any]]:
    """Receive repeatedly until ``predicate(all received)`` holds."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not predicate(got):
        assert time.monotonic() < deadline, got
        got += receive_json(state, wait=3)
    return got


def send_cli(state: Path | None, to: str, text: str | None = None, file: Path | None = None) -> None:
    assert state is not None
    args = ["send", "--to", to, "--state", str(state)]
    if file is not None:
        args += ["--file", str(file)]
    if text is not None:
        args.append(text)
    lockstep_ok(*args)


def texts(received: list[dict[str, Any]]) -> list[str]:
    """The texts among messages `receive --json` printed."""
    return [m["body"].get("text") for m in received if m["kind"] == "text"]


def link_to_terminal_primary(laptop: Any, primary: Path, qr: Path) -> None:
    """A terminal primary scans a browser companion page's code; once the page is linked and has
    published its keys, the primary's next `receive` serves it history."""
    laptop.get_by_test_id("qr").screenshot(path=str(qr))
    lockstep_ok("primary", "scan", "--image", str(qr), "--yes", "--state", str(primary))
    laptop.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    laptop.wait_for_timeout(1000)  # its keys are published once it signed in
    lockstep_ok("receive", "--state", str(primary))


def cli_primary_with_browser_companion(
    url: str, computer: Any, tmp_path: Path, handle: str, name: str
) -> tuple[CliAccount, Any]:
    """A terminal primary and a browser companion page it linked (served its history): (account, page)."""
    account = cli_primary(url, tmp_path / handle, handle, name)
    laptop = open_companion(computer, url)
    link_to_terminal_primary(laptop, account.primary, tmp_path / f"{handle}-qr.png")
    return account, laptop


def start_chat(page: Any, handle: str) -> None:
    open_chats(page)
    page.get_by_test_id("new-chat").click()
    page.get_by_test_id("new-chat-handle").fill(handle)
    page.get_by_test_id("new-chat-start").click()
    page.get_by_test_id("conversation").wait_for(timeout=TIMEOUT)


def open_chat(page: Any, has_text: str) -> None:
    """Open a chat from the list (on a phone-sized screen, go back to the list first; in the phone
    app, from Settings to Chats)."""
    open_chats(page)
    if page.get_by_test_id("back").is_visible():
        page.get_by_test_id("back").click()
    page.get_by_test_id("chat-row").filter(has_text=has_text).first.click(timeout=TIMEOUT)
    page.get_by_test_id("conversation").wait_for(timeout=TIMEOUT)


def send_file(page: Any, path: Path, caption: str = "") -> None:
    """Attach a file in the open chat, give it a caption in its preview, and send it."""
    page.get_by_test_id("attach").set_input_files(str(path))
    if caption:
        page.get_by_test_id("draft-caption").fill(caption)
    page.get_by_test_id("draft-send").click()


def message(page: Any, text: str) -> Any:
    return page.get_by_test_id("message").filter(
        has=page.get_by_test_id("message-text").filter(has_text=text)
    )


def send_text(page: Any, text: str) -> Any:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer-send").click()
    sent = message(page, text)
    sent.locator(
        'xpath=self::*[@data-status="sent" or @data-status="delivered" or @data-status="read"]'
    ).wait_for(timeout=TIMEOUT)
    return sent


def assert_no_plaintext(server: Any, texts: list[str], blobs: list[bytes] = ()) -> None:  # type: ignore[assignment]
    """The server's SQLite files (WAL included) and media folder hold none of what was sent."""
    files = [p for p in server.data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("lockstep.sqlite3") for p in files)
    data = b"".join(p.read_bytes() for p in files)
    for text in texts:
        assert text.encode() not in data, "plaintext found on the server"
    for blob in blobs:
        assert blob not in data, "file content found on the server"


def make_png(path: Path, width: int = 64, height: int = 48, seed: int = 1) -> bytes:
    """A small PNG with distinct pixels; returns its RGBA bytes (what a browser must decode)."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGBA", (width, height))
    image.putdata(
        [(rng.randrange(256), rng.randrange(256), rng.randrange(256), 255) for _ in range(width * height)]
    )
    image.save(path)
    return image.tobytes()


PIXELS = """
(img) => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  return [canvas.width, canvas.height, Array.from(data)];
}
"""


def displayed_pixels(image: Any) -> tuple[int, int, bytes]:
    """The decoded pixels of an <img> as the page shows it (RGBA)."""
    image.wait_for(timeout=TIMEOUT)
    image.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    width, height, data = image.evaluate(PIXELS)
    return width, height, bytes(data)


WATCH_PROGRESS = """
() => {
  window.__progress = [];
  const bar = document.querySelector('[data-testid="upload-progress"]');
  const note = () => window.__progress.push([bar.hidden, bar.value]);
  new MutationObserver(note).observe(bar, { attributes: true });
}
"""


# The notifications the phone app's service worker shows now (read with shown_once: it is a Promise).
SHOWN_NOTIFICATIONS = """
async () => {
  const registration = await navigator.serviceWorker.ready;
  return (await registration.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag }));
}
"""


def shown_once(page: Any, script: str, check: Any) -> list[dict[str, Any]]:
    """What ``script`` reads of the page (the service worker's notifications, its caches…), once ``check``
    holds. Polled from here: Playwright's wait_for_function takes a returned Promise for a truthy value
    at once, so it cannot wait on anything the page learns asynchronously."""
    shown: list[dict[str, Any]] = []
    for _ in range(100):
        shown = page.evaluate(script)
        if check(shown):
            return shown
        page.wait_for_timeout(200)
    raise AssertionError(shown)
