"""Browser messaging as people use it: a browser primary and its linked browser companion talk to an
account whose primary and companion are Python terminals (`lockstep send/receive`), so every message also
crosses browser ⇄ vodozemac. Linking goes through the fake camera, like tests/e2e.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    TIMEOUT,
    assert_no_plaintext,
    cli_account_with_companion,
    message,
    open_chat,
    receive_json,
    send_cli,
    send_text,
    start_chat,
)

from fake_camera import Phone
from phone_linking import app_url, create_account, link_companion, open_chats, open_companion

pytestmark = pytest.mark.browser


def test_a_message_from_a_browser_companion_reaches_every_device_once(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url, "alice", "Alice")
    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "qr.png", "Alice's laptop")
    laptop.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    assert "linked device of @alice" in laptop.get_by_test_id("linked-devices").inner_text()
    bob = cli_account_with_companion(url, tmp_path, "bob", "Bob")

    # Alice's laptop starts the chat by handle and writes.
    hello = f"hello bob from the laptop {secrets.token_hex(4)}"
    start_chat(laptop, "bob")
    sent = send_text(laptop, hello)
    message_id = sent.get_attribute("data-message-id")
    assert message_id

    # Bob's phone and Bob's terminal companion read it (browser Olm -> vodozemac), exactly once each.
    for device in (bob.primary, bob.companion):
        texts = [m["body"].get("text") for m in receive_json(device) if m["kind"] == "text"]
        assert texts == [hello]
    # Alice's own phone shows what her laptop sent, as sent by her (in Chats, back from Settings).
    open_chats(phone.page)
    chat = phone.page.get_by_test_id("chat-row").filter(has_text="@bob")
    chat.wait_for(timeout=TIMEOUT)
    open_chat(phone.page, "@bob")
    mine = message(phone.page, hello)
    mine.wait_for(timeout=TIMEOUT)
    assert mine.get_attribute("data-direction") == "out"

    # `lockstep receive` sends read receipts: the laptop's ticks turn to read.
    laptop.locator(f'[data-testid="message"][data-message-id="{message_id}"][data-status="read"]').wait_for(
        timeout=TIMEOUT
    )

    # Bob answers from his terminal companion: both of Alice's browsers show it (vodozemac -> browser).
    reply = f"hi alice, bob here {secrets.token_hex(4)}"
    send_cli(bob.companion, "alice", reply)
    message(laptop, reply).wait_for(timeout=TIMEOUT)
    message(phone.page, reply).wait_for(timeout=TIMEOUT)

    # Alice's phone goes offline (page closed); Bob writes; on reopening it gets the message, once.
    context = phone.page.context
    phone.page.close()
    away = f"while you were away {secrets.token_hex(4)}"
    send_cli(bob.primary, "alice", away)
    message(laptop, away).wait_for(timeout=TIMEOUT)
    page = context.new_page()
    page.goto(app_url(url))
    row = page.get_by_test_id("chat-row").filter(has_text="@bob")
    row.wait_for(timeout=TIMEOUT)
    row.get_by_test_id("chat-last").filter(has_text=away).wait_for(timeout=TIMEOUT)
    # The laptop showed it (its chat was open) and said so: not unread on the phone either.
    row.get_by_test_id("unread-count").wait_for(state="hidden", timeout=TIMEOUT)
    open_chat(page, "@bob")
    message(page, away).wait_for(timeout=TIMEOUT)
    page.reload()
    open_chat(page, "@bob")
    message(page, reply).wait_for(timeout=TIMEOUT)
    for text in (hello, reply, away):
        assert message(page, text).count() == 1, text
    # A second tab of the laptop waits while the first runs the messenger, then takes over.
    second = computer.new_page()
    second.goto(f"{url}/")
    second.get_by_test_id("messenger-elsewhere").wait_for(timeout=TIMEOUT)
    laptop.screenshot(path=str(tmp_path / "companion-chat.png"))
    laptop.close()
    second.get_by_test_id("messenger-elsewhere").wait_for(state="hidden", timeout=TIMEOUT)
    open_chat(second, "@bob")
    for text in (hello, reply, away):
        message(second, text).wait_for(timeout=TIMEOUT)
        assert message(second, text).count() == 1, text
    page.screenshot(path=str(tmp_path / "primary-chat.png"))

    assert_no_plaintext(server_process, [hello, reply, away])
