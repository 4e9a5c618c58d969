"""Typing indicators and online/last seen in real Chromium (messaging.md §15.5): what Alice's phone
does while she types shows on both of Bob's devices and goes away when she stops, clears or sends (a
terminal's typing shows in the browser, the browser's in the terminal); presence says "online" while
her page is visible and "last seen today at …" once it hides or closes; and the "Share last seen and
online" switch works both ways, as WhatsApp's does.

Time that must pass (Alice's 5 s without a key, Bob's 75 s of trust in an `online`) passes on Playwright's
fake clock of that page (`page.clock`), not in sleeps."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    HIDEABLE,
    TIMEOUT,
    cli_primary,
    in_thread,
    message,
    open_chat,
    send_text,
    start_chat,
)

from fake_camera import Phone
from lockstep.cli.messaging import describe
from lockstep.client.messenger import Messenger
from lockstep.client.state import DeviceState
from lockstep.e2e.actions import Typing, TypingState
from lockstep.e2e.envelope import Kind
from lockstep.link.devices import Role
from lockstep_cli import lockstep_ok
from phone_linking import create_account, link_companion, open_companion, open_settings

pytestmark = pytest.mark.browser

LAST_SEEN_TODAY = re.compile(r"^last seen today at \d{1,2}:\d{2}")


def subtitle(page: Any, live: str) -> Any:
    """The open chat's subtitle while it shows ``live`` ("typing", "online", "last-seen" or "": none)."""
    return page.locator(f'[data-testid="conversation-subtitle"][data-live="{live}"]')


def chat_preview(page: Any, title: str) -> Any:
    return page.get_by_test_id("chat-row").filter(has_text=title).get_by_test_id("chat-last")


def test_typing_shows_on_the_peers_phone_and_laptop_until_paused_cleared_sent_or_idle(
    server_process, computer: Any, phone: Phone, second_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    alice, bob = phone.page, second_phone.page
    alice.clock.install()  # Alice's idle 5 s pass on her page's fake clock
    create_account(phone, url, "alice", "Alice")
    create_account(second_phone, url, "bob", "Bob")
    laptop = open_companion(computer, url)
    link_companion(second_phone, laptop, tmp_path / "laptop.png", "Bob's laptop")
    bob.get_by_test_id("link-done").click()
    laptop.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)

    token = secrets.token_hex(3)
    start_chat(alice, "@bob")
    send_text(alice, f"hi {token}")
    for page in (bob, laptop):
        open_chat(page, "Alice")
        message(page, f"hi {token}").wait_for(timeout=TIMEOUT)
        assert page.get_by_test_id("conversation-subtitle").inner_text() != "typing…"
    composer = alice.get_by_test_id("composer")

    # Alice types: Bob's phone and laptop say so under her name, and the laptop's chat list too.
    composer.press_sequentially("are you")
    for page in (bob, laptop):
        subtitle(page, "typing").wait_for(timeout=TIMEOUT)
        assert page.get_by_test_id("conversation-subtitle").inner_text() == "typing…"
    assert chat_preview(laptop, "Alice").inner_text() == "typing…"
    bob.screenshot(path=str(tmp_path / "bob-phone-typing.png"))
    laptop.screenshot(path=str(tmp_path / "bob-laptop-typing.png"))

    # She clears the text: `paused`, and it goes away on both.
    composer.fill("")
    for page in (bob, laptop):
        subtitle(page, "typing").wait_for(state="detached", timeout=TIMEOUT)
    assert chat_preview(laptop, "Alice").inner_text() == f"hi {token}"

    # She types again and sends: the message itself ends "typing…".
    composer.press_sequentially(f"there? {token}")
    subtitle(bob, "typing").wait_for(timeout=TIMEOUT)
    alice.get_by_test_id("composer-send").click()
    for page in (bob, laptop):
        message(page, f"there? {token}").wait_for(timeout=TIMEOUT)
        assert subtitle(page, "typing").count() == 0

    # She types and stops: 5 s later (on her clock) her phone sends `paused`. Bob's own 6 s limit has
    # not passed by then on his real clock, so what ends it here is Alice's `paused`.
    composer.press_sequentially("one more")
    subtitle(bob, "typing").wait_for(timeout=TIMEOUT)
    alice.clock.fast_forward(5_100)
    for page in (bob, laptop):
        subtitle(page, "typing").wait_for(state="detached", timeout=4_000)
    # The laptop keeps the switch in its chat list menu (it has no Settings screen); it is per device,
    # and typing does not depend on it.
    laptop.get_by_test_id("chats-menu").click()
    switch = laptop.get_by_role("menuitemcheckbox", name="Share last seen and online")
    assert switch.get_attribute("aria-checked") == "true"
    switch.click()
    laptop.get_by_test_id("chats-menu").click()
    assert switch.get_attribute("aria-checked") == "false"
    laptop.keyboard.press("Escape")
    composer.press_sequentially(" again")
    subtitle(laptop, "typing").wait_for(timeout=TIMEOUT)
    # Nothing of it was kept as a message, counted as unread or shown in the chat.
    assert bob.get_by_test_id("message").count() == 2
    assert bob.get_by_test_id("unread-count").filter(has_text=re.compile(r"[1-9]")).count() == 0


def test_online_then_last_seen_when_the_page_hides_or_closes_and_the_privacy_switch_works_both_ways(
    server_process, phone: Phone, second_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    alice, bob = phone.page, second_phone.page
    alice.add_init_script(HIDEABLE)
    bob.clock.install()  # Bob's 75 s of trust in Alice's last `online` pass on his page's fake clock
    create_account(phone, url, "alice", "Alice")
    create_account(second_phone, url, "bob", "Bob")

    # Bob turns "Share last seen and online" off in Settings (it is on by default).
    open_settings(bob)
    switch = bob.get_by_test_id("share-last-seen")
    assert switch.is_checked()
    switch.uncheck()
    bob.get_by_test_id("settings-back").click()

    # Alice writes (her phone tells Bob `online` first); Bob, sharing nothing, shows nothing of hers.
    token = secrets.token_hex(3)
    start_chat(alice, "@bob")
    send_text(alice, f"hi {token}")
    open_chat(bob, "Alice")
    message(bob, f"hi {token}").wait_for(timeout=TIMEOUT)
    subtitle(bob, "").wait_for(timeout=TIMEOUT)
    assert bob.get_by_test_id("conversation-subtitle").inner_text() == "End-to-end encrypted"
    # Bob answers: his phone sends no presence, so Alice sees none of his either.
    send_text(bob, f"hello {token}")
    message(alice, f"hello {token}").wait_for(timeout=TIMEOUT)
    assert subtitle(alice, "").count() == 1

    # Bob turns it back on: Alice sees him online, and he sees her once she is next seen.
    open_settings(bob)
    switch.check()
    bob.get_by_test_id("settings-back").click()
    open_chat(bob, "Alice")
    subtitle(alice, "online").wait_for(timeout=TIMEOUT)
    assert alice.get_by_test_id("conversation-subtitle").inner_text() == "online"
    alice.evaluate("lockstepTestSetHidden(true)")
    subtitle(bob, "last-seen").wait_for(timeout=TIMEOUT)
    assert LAST_SEEN_TODAY.match(bob.get_by_test_id("conversation-subtitle").inner_text())
    bob.screenshot(path=str(tmp_path / "bob-phone-last-seen.png"))
    alice.evaluate("lockstepTestSetHidden(false)")
    subtitle(bob, "online").wait_for(timeout=TIMEOUT)
    bob.screenshot(path=str(tmp_path / "bob-phone-online.png"))

    # Alice closes the app: Bob says "last seen" at the latest when her `online` is 75 s old.
    alice.close(run_before_unload=True)
    bob.clock.fast_forward(76_000)
    subtitle(bob, "last-seen").wait_for(timeout=TIMEOUT)
    assert LAST_SEEN_TODAY.match(bob.get_by_test_id("conversation-subtitle").inner_text())


def test_a_terminal_peers_typing_shows_in_the_browser_until_6_s_pass_and_the_browsers_reaches_the_terminal(
    server_process, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    alice = phone.page
    alice.clock.install()  # Alice's 6 s of trust in Bob's `composing` pass on her page's fake clock
    create_account(phone, url, "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    token = secrets.token_hex(3)
    start_chat(alice, "@bob")
    send_text(alice, f"hi {token}")

    # Bob's Python client says `composing` and never `paused` (as a client that dies mid-sentence).
    async def bob_types(where: str) -> None:
        async with Messenger.open(DeviceState.load(bob.primary, Role.PRIMARY)) as messenger:
            await messenger.receive(receipts=False)
            await messenger.send_signal(where, Typing(TypingState.COMPOSING))

    # In a group, the chat list says who is typing.
    lockstep_ok("group", "create", "lunch", "--members", "alice", "--state", str(bob.primary))
    lockstep_ok("send", "--to", "#lunch", f"lunch? {token}", "--state", str(bob.primary))
    alice.get_by_test_id("back").click()
    group = alice.get_by_test_id("chat-row").filter(has_text="lunch")
    group.get_by_test_id("chat-last").filter(has_text=f"lunch? {token}").wait_for(timeout=TIMEOUT)
    in_thread(bob_types("#lunch"))
    group.get_by_test_id("chat-last").filter(has_text="Bob is typing…").wait_for(timeout=TIMEOUT)

    # In the direct chat, its header says it.
    open_chat(alice, "@bob")
    in_thread(bob_types("@alice"))
    subtitle(alice, "typing").wait_for(timeout=TIMEOUT)
    assert alice.get_by_test_id("conversation-subtitle").inner_text() == "typing…"
    # 6 s pass on Alice's clock (well before they would on the real one): "typing…" is gone.
    alice.clock.fast_forward(6_100)
    subtitle(alice, "typing").wait_for(state="detached", timeout=2_500)

    # Alice types: the terminal prints it (and no presence: a terminal shares none, so shows none).
    alice.get_by_test_id("composer").press_sequentially("so")

    async def bob_reads() -> list[str]:
        async with Messenger.open(DeviceState.load(bob.primary, Role.PRIMARY)) as messenger:
            got = await messenger.receive(
                wait=20, receipts=False, until=lambda r: any(m.kind is Kind.TYPING for m in r)
            )
            return [line for m in got if (line := describe(messenger, m)) is not None]

    lines = in_thread(bob_reads())
    assert any(line.endswith("@alice is typing…") for line in lines), lines
    assert not any("online" in line or "last seen" in line for line in lines), lines
