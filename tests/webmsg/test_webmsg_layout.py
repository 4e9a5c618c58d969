"""The app as a WhatsApp user expects it (issue 13): the phone app's screens (Chats → a chat → back;
Settings with Linked devices and "Link a device" one tap away), the computer's two panes once linked,
the tab title following the state, notifications while the page is in the background with per-chat
mute and the app badge, attachments previewed with a caption (also dropped or pasted), and keyboard
shortcuts. Real server, real Chromium, a person's gestures, and screenshots of both layouts."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    HIDEABLE,
    SHOWN_NOTIFICATIONS,
    TIMEOUT,
    cli_primary,
    make_png,
    message,
    open_chat,
    receive_until,
    send_cli,
    shown_once,
)

from fake_camera import Phone
from phone_linking import app_url, create_account, link_companion, open_companion, open_settings

pytestmark = pytest.mark.browser

# Screenshots go to each test's temporary folder, or to $LOCKSTEP_SCREENSHOTS (the README's pictures:
# `LOCKSTEP_SCREENSHOTS=docs/images .venv/bin/pytest tests/webmsg/test_webmsg_layout.py`).
SCREENSHOTS = os.environ.get("LOCKSTEP_SCREENSHOTS")

# The person switches to another tab (HIDEABLE), and what the app put on its icon's badge.
BACKGROUND = (
    HIDEABLE
    + """
(() => {
  // What the app put on its icon's badge (the Badging API has nothing to read back).
  window.lockstepTestBadge = [];
  const set = navigator.setAppBadge?.bind(navigator);
  const clear = navigator.clearAppBadge?.bind(navigator);
  navigator.setAppBadge = (n) => {
    window.lockstepTestBadge.push(n ?? 0);
    return set ? set(n).catch(() => {}) : Promise.resolve();
  };
  navigator.clearAppBadge = () => {
    window.lockstepTestBadge.push(0);
    return clear ? clear().catch(() => {}) : Promise.resolve();
  };
})();
"""
)


def box(locator: Any) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None
    return found


def screenshot(page: Any, folder: Path, name: str) -> None:
    target = Path(SCREENSHOTS) if SCREENSHOTS else folder
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / name), animations="disabled", caret="hide")


def test_phone_screens_settings_one_tap_away_and_computer_two_panes(
    server_process: Any, computer: Any, small_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    phone = small_phone.page
    create_account(small_phone, url, "alice", "Alice Liddell")
    assert phone.title() == "@alice — Lockstep"

    # Chats is the first screen: the chat list fills it, Settings is one tap away in the app bar.
    chat_list = phone.get_by_test_id("chat-list")
    assert chat_list.is_visible()
    assert not phone.get_by_test_id("link-device").is_visible()
    settings = phone.get_by_test_id("open-settings")
    assert settings.get_attribute("aria-label") == "Settings"
    settings.click()
    assert phone.get_by_test_id("link-device").is_visible()  # "Link a device", one tap from Chats
    assert phone.get_by_test_id("devices").is_visible()
    assert not chat_list.is_visible()
    phone.go_back()  # the phone's back gesture returns to Chats, not out of the app
    chat_list.wait_for(state="visible")
    open_settings(phone)
    phone.get_by_test_id("settings-back").click()
    chat_list.wait_for(state="visible")

    # A computer links: its page says what it is doing in the tab's title, then the linking card goes
    # away and the chat list sits beside the conversation, filling the window.
    laptop = open_companion(computer, url)
    assert laptop.title() == "Scan the code with your phone — Lockstep"
    link_companion(small_phone, laptop, tmp_path / "qr.png", "Alice's laptop")
    phone.get_by_test_id("link-done").click()
    laptop.wait_for_function("document.title === '@alice — Lockstep'", timeout=TIMEOUT)
    assert not laptop.get_by_test_id("link-panel").is_visible()
    assert box(laptop.get_by_test_id("linked-account"))["height"] < 80

    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    carol = cli_primary(url, tmp_path / "carol", "carol", "Carol")
    send_cli(bob.primary, "@alice", "Are we still on for Saturday?")
    send_cli(carol.primary, "@alice", "The tickets arrived!")
    laptop.get_by_test_id("chat-row").nth(1).wait_for(timeout=TIMEOUT)
    laptop.wait_for_function("document.title.startsWith('(2) ')", timeout=TIMEOUT)
    open_chat(laptop, "Bob")
    message(laptop, "Are we still on for Saturday?").wait_for(timeout=TIMEOUT)
    laptop.get_by_test_id("composer").fill("Yes! 10 am at the station.")
    laptop.get_by_test_id("composer-send").click()
    listed, conversation = box(laptop.locator(".chats")), box(laptop.get_by_test_id("conversation"))
    assert listed["x"] + listed["width"] <= conversation["x"] + 1  # side by side
    assert abs(listed["y"] - conversation["y"]) < 2 and conversation["width"] > listed["width"]
    viewport = laptop.viewport_size
    assert conversation["y"] + conversation["height"] >= viewport["height"] - 2  # down to the window's edge
    laptop.wait_for_function("document.title === '(1) @alice — Lockstep'", timeout=TIMEOUT)
    screenshot(laptop, tmp_path, "messenger-computer.png")

    # The phone: back from Settings to the chat list, then a chat over it, then back.
    phone.get_by_test_id("settings-back").click()
    row = phone.get_by_test_id("chat-row").filter(has_text="Carol")
    row.wait_for(timeout=TIMEOUT)
    screenshot(phone, tmp_path, "phone-chats.png")
    row.click()
    message(phone, "The tickets arrived!").wait_for(timeout=TIMEOUT)
    assert not chat_list.is_visible()
    assert box(phone.get_by_test_id("composer"))["y"] + 44 <= 844
    phone.get_by_test_id("composer").fill("Wonderful, thank you!")
    phone.get_by_test_id("composer-send").click()
    message(phone, "Wonderful, thank you!").wait_for()
    screenshot(phone, tmp_path, "phone-chat.png")
    phone.get_by_test_id("back").click()
    chat_list.wait_for(state="visible")
    open_settings(phone)
    screenshot(phone, tmp_path, "phone-settings.png")


def test_notifications_in_the_background_with_mute_and_badge(
    server_process: Any, small_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    phone = small_phone.page
    phone.context.grant_permissions(["notifications"], origin=app_url(url).removesuffix("/app"))
    phone.add_init_script(BACKGROUND)
    create_account(small_phone, url, "alice", "Alice")
    phone.wait_for_function("navigator.serviceWorker.controller !== null", timeout=TIMEOUT)
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    send_cli(bob.primary, "@alice", "hello while you look")
    row = phone.get_by_test_id("chat-row").filter(has_text="Bob")
    row.wait_for(timeout=TIMEOUT)
    assert phone.evaluate(SHOWN_NOTIFICATIONS) == []  # the person is looking: no notification

    phone.evaluate("window.lockstepTestSetHidden(true)")
    secret = f"are you there? {secrets.token_hex(3)}"
    send_cli(bob.primary, "@alice", secret)
    [shown] = shown_once(phone, SHOWN_NOTIFICATIONS, lambda shown: len(shown) == 1)
    assert (shown["title"], shown["body"]) == ("Bob (@bob)", secret)
    assert phone.evaluate("window.lockstepTestBadge.at(-1)") == 2

    # Muted: Bob's next messages notify nothing and leave the badge.
    phone.evaluate("window.lockstepTestSetHidden(false)")
    open_chat(phone, "Bob")
    mute = phone.get_by_test_id("mute")  # in the chat's menu, which keeps the phone's header narrow
    assert mute.is_hidden() and mute.get_attribute("aria-checked") == "false"
    phone.get_by_test_id("chat-menu").click()
    mute.click()
    assert mute.get_attribute("aria-checked") == "true"
    assert mute.is_hidden()  # choosing closes the menu
    phone.get_by_test_id("back").click()
    phone.evaluate(
        "navigator.serviceWorker.ready.then((r) => r.getNotifications())"
        ".then((shown) => shown.forEach((n) => n.close()))"
    )
    phone.evaluate("window.lockstepTestSetHidden(true)")
    send_cli(bob.primary, "@alice", "muted one")
    row.get_by_test_id("chat-last").filter(has_text="muted one").wait_for(timeout=TIMEOUT)
    assert phone.evaluate(SHOWN_NOTIFICATIONS) == []
    assert phone.evaluate("window.lockstepTestBadge.at(-1)") == 0
    # ...and mute survives a reload (kept sealed on this device).
    phone.reload()
    open_chat(phone, "Bob")
    assert phone.get_by_test_id("mute").get_attribute("aria-checked") == "true"


def test_attachments_preview_caption_drop_and_paste_and_shortcuts(
    server_process: Any, computer: Any, small_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(small_phone, url, "alice", "Alice")
    laptop = open_companion(computer, url)
    link_companion(small_phone, laptop, tmp_path / "qr.png", "Alice's laptop")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    carol = cli_primary(url, tmp_path / "carol", "carol", "Carol")
    send_cli(bob.primary, "@alice", "from bob")
    send_cli(carol.primary, "@alice", "from carol")
    laptop.get_by_test_id("chat-row").nth(1).wait_for(timeout=TIMEOUT)

    # Shortcuts: next/previous chat, new chat, the help dialog; each control says its keys.
    assert laptop.get_by_test_id("new-chat").get_attribute("aria-keyshortcuts") == "Control+Alt+N"
    laptop.keyboard.press("Control+Alt+ArrowDown")
    first = laptop.get_by_test_id("conversation-title").inner_text()
    laptop.keyboard.press("Control+Alt+ArrowDown")
    second = laptop.get_by_test_id("conversation-title").inner_text()
    assert {first, second} == {"Bob (@bob)", "Carol (@carol)"}
    laptop.keyboard.press("Control+Alt+ArrowUp")
    assert laptop.get_by_test_id("conversation-title").inner_text() == first
    laptop.keyboard.press("Control+Alt+KeyN")
    assert laptop.evaluate("document.activeElement.dataset.testid") == "new-chat-handle"
    laptop.keyboard.press("Escape")
    laptop.locator("body").click(position={"x": 5, "y": 5})
    laptop.keyboard.press("Shift+Slash")
    assert laptop.get_by_test_id("shortcuts-help").is_visible()
    laptop.keyboard.press("Escape")
    assert not laptop.get_by_test_id("shortcuts-help").is_visible()

    # An attachment is previewed with a caption before anything is sent; Cancel sends nothing.
    open_chat(laptop, "Bob")
    picture = tmp_path / "beach.png"
    png = make_png(picture, 320, 200, seed=7)
    laptop.get_by_test_id("attach").set_input_files(str(picture))
    draft = laptop.get_by_test_id("attachment-draft")
    draft.wait_for()
    assert laptop.get_by_test_id("draft-image").get_attribute("alt") == "Preview of beach.png"
    laptop.get_by_test_id("draft-cancel").click()
    assert not draft.is_visible()
    assert laptop.get_by_test_id("message-image").count() == 0

    # Dropped on the conversation: previewed, captioned, sent; Bob gets the picture with its caption.
    drop = laptop.evaluate_handle(
        "([bytes, name]) => { const data = new DataTransfer();"
        " data.items.add(new File([new Uint8Array(bytes)], name, { type: 'image/png' })); return data; }",
        [list(png), "dropped.png"],
    )
    laptop.get_by_test_id("conversation").dispatch_event("dragover", {"dataTransfer": drop})
    laptop.get_by_test_id("conversation").dispatch_event("drop", {"dataTransfer": drop})
    draft.wait_for()
    laptop.get_by_test_id("draft-caption").fill("the beach at noon")
    laptop.get_by_test_id("draft-send").click()
    laptop.get_by_test_id("message-image").first.wait_for(timeout=TIMEOUT)
    got = receive_until(bob.primary, lambda m: any(x["kind"] == "media" for x in m))
    [media] = [m for m in got if m["kind"] == "media"]
    assert media["body"]["caption"] == "the beach at noon"

    # Pasted into the composer (a screenshot on the clipboard): the same preview, and it sends.
    laptop.get_by_test_id("composer").focus()
    laptop.evaluate(
        "(bytes) => { const data = new DataTransfer();"
        " data.items.add(new File([new Uint8Array(bytes)], '', { type: 'image/png' }));"
        " document.activeElement.dispatchEvent(new ClipboardEvent('paste',"
        " { clipboardData: data, bubbles: true, cancelable: true })); }",
        list(png),
    )
    draft.wait_for()
    assert laptop.get_by_test_id("draft-image").get_attribute("alt") == "Preview of pasted.png"
    laptop.get_by_test_id("draft-send").click()
    laptop.get_by_test_id("message-image").nth(1).wait_for(timeout=TIMEOUT)
    receive_until(bob.primary, lambda m: any(x["kind"] == "media" for x in m))


# The /assets/ paths in the service worker's caches (a Promise: polled from Python, see shown_once).
CACHED_ASSETS = """
async () => {
  const lists = await Promise.all((await caches.keys()).map(async (k) => (await caches.open(k)).keys()));
  return lists.flat().map((r) => new URL(r.url).pathname).filter((path) => path.startsWith("/assets/"));
}
"""


def test_the_phone_app_opens_offline(server_process: Any, small_phone: Phone) -> None:
    """The service worker keeps the app shell and its scripts and styles: with no network at all, the
    installed app still opens on the account, and says it cannot reach the server."""
    url = server_process.url
    phone = small_phone.page
    create_account(small_phone, url, "alice", "Alice")
    phone.wait_for_function("navigator.serviceWorker.controller !== null", timeout=TIMEOUT)
    shown_once(phone, CACHED_ASSETS, lambda assets: len(assets) >= 2)  # the service worker kept them
    phone.context.set_offline(True)
    try:
        phone.reload()
        phone.get_by_test_id("account").wait_for(timeout=TIMEOUT)
        assert "@alice" in phone.get_by_test_id("account").inner_text()
        styled = "getComputedStyle(document.querySelector('.appbar')).position"
        assert phone.evaluate(styled) == "sticky"  # its stylesheet came from the cache too
        status = phone.get_by_test_id("app-status")
        status.filter(has_text="Cannot reach the server").wait_for(timeout=TIMEOUT)
    finally:
        phone.context.set_offline(False)
