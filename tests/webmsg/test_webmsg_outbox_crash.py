"""A browser page that dies right after a message left it (closed, or its renderer crashed) loses no ratchet
step (messaging.md §7.2, "Saved before sent"): reopened, it shows the message once, as sent, and the Olm
sessions it had still work both ways, for the peer's devices and the account's own.

Before the fix the page saved its Olm sessions only once the server answered: a page gone in between
forgot the ratchet step its ciphertext used, so its next message reused that step and the peer could not
open it (nor did the reopened page know of the message it had sent).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from webmsg_helpers import (
    TIMEOUT,
    CliAccount,
    cli_primary,
    cli_primary_with_browser_companion,
    message,
    open_chat,
    receive_until,
    send_cli,
    send_text,
    start_chat,
    texts,
)

pytestmark = pytest.mark.browser

# The page stops hearing the server once it sent a `messages.send` frame longer than `window.deafAfter`
# characters: it sent that message but never learns that the server took it, as when it dies at once.
# Only the long texts below make frames that long (a typing or presence signal is a few hundred).
DEAF_AFTER_LONG_SEND = """
(longer) => {
  window.deafAfter = longer;
  window.longSendLeft = false;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (frame) {
    send.call(this, frame);
    const sent = typeof frame === "string" && frame.includes('"op":"messages.send"');
    if (sent && frame.length > window.deafAfter) {
      this.onmessage = null;
      window.longSendLeft = true;
    }
  };
}
"""
LONG = 3000


def long_text(label: str) -> str:
    """`label`, then enough to make its frame long (a row is found by its label alone)."""
    return f"{label} " + "x" * LONG


def dies_right_after_sending(page: Any, text: str, death: str) -> None:
    """Types `text` (long) into the open chat and sends it; once its frame left, the page dies."""
    page.evaluate(DEAF_AFTER_LONG_SEND, LONG)
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer-send").click()
    page.wait_for_function("() => window.longSendLeft", timeout=TIMEOUT)
    if death == "crash":
        page.on("crash", lambda page: None)  # expected: not a failure of the page's own
        with contextlib.suppress(PlaywrightError):  # the navigation ends in the renderer's crash
            page.goto("chrome://crash", timeout=TIMEOUT)
    page.close()


def reopen(computer: Any, url: str, chat: str) -> Any:
    page = computer.new_page()
    page.goto(f"{url}/")
    page.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    open_chat(page, chat)
    return page


@dataclass
class Accounts:
    """Alice, a terminal primary with her laptop (the browser page) linked; Bob, a terminal primary."""

    url: str
    alice: CliAccount
    laptop: Any
    bob: CliAccount


@pytest.fixture
def accounts(server_process: Any, computer: Any, tmp_path: Path) -> Accounts:
    url = server_process.url
    alice, laptop = cli_primary_with_browser_companion(url, computer, tmp_path, "alice", "Alice")
    return Accounts(url, alice, laptop, cli_primary(url, tmp_path / "bob", "bob", "Bob"))


def test_a_page_that_dies_right_after_sending_keeps_its_sessions_and_the_message(
    accounts: Accounts, computer: Any
) -> None:
    url, alice, laptop, bob = accounts.url, accounts.alice, accounts.laptop, accounts.bob
    start_chat(laptop, "@bob")
    send_text(laptop, "hello bob")

    sent = ["hello bob"]
    for death in ("close", "crash"):
        label = f"sent as the page died ({death})"
        last_words = long_text(label)
        dies_right_after_sending(laptop, last_words, death)
        sent.append(last_words)
        laptop = reopen(computer, url, "@bob")
        # The reopened page has the message, once, and learns that the server took it.
        mine = message(laptop, label)
        mine.locator('xpath=self::*[@data-status="sent"]').wait_for(timeout=TIMEOUT)
        assert mine.count() == 1
        # Its next message opens on every other device (its ratchet step was not used twice).
        after = f"written after reopening ({death})"
        send_text(laptop, after)
        sent.append(after)

    # Bob's phone and Alice's own phone each open every message, exactly once.
    for device in (bob.primary, alice.primary):
        got = receive_until(device, lambda got: after in texts(got))
        assert texts(got) == sent, device.name
        assert not [m for m in got if m["kind"] == "undecryptable"], got

    # And back: Bob's reply opens on the reopened laptop.
    send_cli(bob.primary, "@alice", "bob answers")
    message(laptop, "bob answers").wait_for(timeout=TIMEOUT)


def test_a_page_that_dies_right_after_a_group_message_keeps_its_megolm_session(
    accounts: Accounts, computer: Any
) -> None:
    url, alice, laptop, bob = accounts.url, accounts.alice, accounts.laptop, accounts.bob
    laptop.get_by_test_id("new-group").click()
    laptop.get_by_test_id("group-name").fill("Trip")
    laptop.get_by_test_id("group-members").fill("@bob")
    laptop.get_by_test_id("group-create").click()
    laptop.get_by_test_id("conversation").wait_for(timeout=TIMEOUT)
    send_text(laptop, "hello trip")

    last_words = long_text("sent to the group as the page died")
    dies_right_after_sending(laptop, last_words, "crash")
    laptop = reopen(computer, url, "Trip")
    mine = message(laptop, "sent to the group as the page died")
    mine.locator('xpath=self::*[@data-status="sent"]').wait_for(timeout=TIMEOUT)
    assert mine.count() == 1
    send_text(laptop, "written after reopening")

    # Its next Megolm index was not one already used: every member device opens every message, once.
    sent = ["hello trip", last_words, "written after reopening"]
    for device in (bob.primary, alice.primary):
        got = receive_until(device, lambda got: sent[-1] in texts(got))
        assert texts(got) == sent, device.name
        assert not [m for m in got if m["kind"] == "undecryptable"], got
