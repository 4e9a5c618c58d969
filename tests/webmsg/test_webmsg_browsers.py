"""Two browser accounts, each a phone (primary app) with a linked browser companion: receipts move the
sender's ticks from sent to delivered to read, an image and a file round-trip through the server
encrypted and display (decoded pixels compared), and the upload shows a progress bar.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    TIMEOUT,
    WATCH_PROGRESS,
    assert_no_plaintext,
    displayed_pixels,
    make_png,
    message,
    open_chat,
    send_file,
    send_text,
    start_chat,
)

from fake_camera import Phone
from phone_linking import create_account, link_companion, open_companion

pytestmark = pytest.mark.browser


def status(page: Any, message_id: str, value: str) -> Any:
    return page.locator(f'[data-testid="message"][data-message-id="{message_id}"][data-status="{value}"]')


def test_receipts_images_and_files_between_browser_accounts(
    server_process, computer: Any, phone: Phone, second_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    alice, carol = phone.page, second_phone.page
    create_account(phone, url, "alice", "Alice")
    create_account(second_phone, url, "carol", "Carol")
    carol_laptop = open_companion(computer, url)
    link_companion(second_phone, carol_laptop, tmp_path / "qr.png", "Carol's laptop")
    carol_laptop.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    carol.reload()  # the phone's list shows the new device; its messenger picks up the laptop's keys
    carol.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)

    # Sent -> delivered (Carol's devices got it, nobody looked) -> read (Carol opened the chat).
    text = f"are you there, carol? {secrets.token_hex(4)}"
    start_chat(alice, "@carol")
    sent = send_text(alice, text)
    message_id = sent.get_attribute("data-message-id")
    assert message_id
    status(alice, message_id, "delivered").wait_for(timeout=TIMEOUT)
    ticks = status(alice, message_id, "delivered").get_by_test_id("ticks")
    assert ticks.inner_text() == "✓✓" and "read" not in (ticks.get_attribute("class") or "")
    row = carol.get_by_test_id("chat-row").filter(has_text="@alice")
    row.get_by_test_id("unread-count").filter(has_text="1").wait_for(timeout=TIMEOUT)
    assert text in row.inner_text()  # last message in the chat list
    carol.screenshot(path=str(tmp_path / "carol-chat-list.png"), full_page=True)
    laptop_row = carol_laptop.get_by_test_id("chat-row").filter(has_text="@alice")
    laptop_row.get_by_test_id("unread-count").filter(has_text="1").wait_for(timeout=TIMEOUT)
    open_chat(carol, "@alice")
    message(carol, text).wait_for(timeout=TIMEOUT)
    status(alice, message_id, "read").wait_for(timeout=TIMEOUT)
    # Read on Carol's phone is read on her laptop too (her read receipt reaches her own devices).
    laptop_row.get_by_test_id("unread-count").wait_for(state="hidden", timeout=TIMEOUT)
    assert "read" in (status(alice, message_id, "read").get_by_test_id("ticks").get_attribute("class") or "")
    assert not row.get_by_test_id("unread-count").is_visible()

    # An image: progress bar while uploading, shown inline on both of Carol's devices, same pixels.
    picture = tmp_path / "holiday.png"
    pixels = make_png(picture)
    alice.evaluate(WATCH_PROGRESS)
    send_file(alice, picture)
    alice.get_by_test_id("message-image").first.wait_for(timeout=TIMEOUT)
    # The row is drawn on the next frame, which may come before the bar is hidden: wait for the hiding.
    alice.get_by_test_id("upload-progress").wait_for(state="hidden", timeout=TIMEOUT)
    progress = alice.evaluate("window.__progress")
    assert [False] in [p[:1] for p in progress] and progress[-1][0] is True  # shown, then hidden
    assert displayed_pixels(alice.get_by_test_id("message-image").first) == (64, 48, pixels)
    assert displayed_pixels(carol.get_by_test_id("message-image").first) == (64, 48, pixels)
    open_chat(carol_laptop, "@alice")
    assert displayed_pixels(carol_laptop.get_by_test_id("message-image").first) == (64, 48, pixels)

    # A file: downloaded and decrypted on Carol's laptop, byte for byte.
    secret_file = tmp_path / "notes.txt"
    content = f"the safe combination is {secrets.token_hex(8)}\n".encode()
    secret_file.write_bytes(content)
    send_file(alice, secret_file)
    carol_laptop.get_by_test_id("message-file").filter(has_text="notes.txt").wait_for(timeout=TIMEOUT)
    with carol_laptop.expect_download(timeout=TIMEOUT) as download:
        carol_laptop.get_by_test_id("message-file").filter(has_text="notes.txt").click()
    saved = tmp_path / "downloaded.txt"
    download.value.save_as(str(saved))
    assert saved.read_bytes() == content and download.value.suggested_filename == "notes.txt"

    # Carol answers from her laptop; Alice sees it, and Carol's phone shows it as Carol's own.
    answer = f"yes! nice picture {secrets.token_hex(4)}"
    send_text(carol_laptop, answer)
    message(alice, answer).wait_for(timeout=TIMEOUT)
    assert message(alice, answer).get_attribute("data-direction") == "in"
    message(carol, answer).wait_for(timeout=TIMEOUT)
    assert message(carol, answer).get_attribute("data-direction") == "out"

    alice.screenshot(path=str(tmp_path / "alice.png"))
    carol_laptop.screenshot(path=str(tmp_path / "carol-laptop.png"))
    assert_no_plaintext(server_process, [text, answer], [picture.read_bytes(), content])
