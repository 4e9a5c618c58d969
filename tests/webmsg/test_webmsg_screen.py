"""A conversation as a person sees it on a 390x844 phone and on a computer (issue 13, points 4 and 5): it
opens at its newest message, inside the screen, also when images decrypt after the chat opened; a message
written while the connection is down waits as pending and goes out when it is back."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    TIMEOUT,
    cli_primary,
    make_png,
    message,
    open_chat,
    receive_until,
    send_cli,
    send_text,
    start_chat,
    texts,
)

from fake_camera import Phone
from lockstep_servers import restart_server
from phone_linking import create_account, link_companion, open_chats, open_companion

pytestmark = pytest.mark.browser

IN_VIEW = """
(node) => {
  const box = node.getBoundingClientRect();
  const list = node.closest('[data-testid="messages"]');
  const shown = list ? list.getBoundingClientRect() : { top: 0, bottom: innerHeight };
  return box.top >= Math.max(0, shown.top) - 1 && box.bottom <= Math.min(innerHeight, shown.bottom) + 1;
}
"""


def in_view(locator: Any) -> bool:
    """Entirely inside the window and inside the message list's visible part."""
    return bool(locator.evaluate(IN_VIEW))


def all_images_loaded(page: Any, count: int) -> None:
    page.wait_for_function(
        "(n) => { const imgs = [...document.querySelectorAll('[data-testid=\"message-image\"]')];"
        " return imgs.length >= n && imgs.every((i) => i.complete && i.naturalWidth > 0); }",
        arg=count,
        timeout=TIMEOUT,
    )


def test_a_chat_opens_at_its_newest_message_on_a_phone_and_a_computer(
    server_process: Any, computer: Any, small_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(small_phone, url, "alice", "Alice")
    phone = small_phone.page
    laptop = open_companion(computer, url)
    link_companion(small_phone, laptop, tmp_path / "qr.png", "Alice's laptop")
    phone.get_by_test_id("link-done").click()
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    for i in range(10):
        send_cli(bob.primary, "@alice", f"line {i}: " + "a few words to fill the screen " * 3)
    for i in range(3):  # the newest messages are pictures, decrypted only once the chat is open
        picture = tmp_path / f"photo{i}.png"
        make_png(picture, 300, 400, seed=i)
        send_cli(bob.primary, "@alice", f"photo {i}", file=picture)

    for page in (phone, laptop):
        open_chats(page)  # the phone app is still on Settings after linking
        page.get_by_test_id("chat-row").filter(has_text="@bob").wait_for(timeout=TIMEOUT)
        open_chat(page, "@bob")
        newest = message(page, "photo 2")
        newest.wait_for(timeout=TIMEOUT)
        all_images_loaded(page, 3)
        page.wait_for_timeout(300)  # layout settles after the last image
        title = page.get_by_test_id("conversation-title")
        composer = page.get_by_test_id("composer")
        assert in_view(newest), f"the newest message is out of view ({page.viewport_size})"
        assert title.evaluate("(n) => n.getBoundingClientRect().top >= 0")
        assert composer.evaluate("(n) => n.getBoundingClientRect().bottom <= innerHeight")
        assert not in_view(message(page, "line 0"))  # the list really is scrolled, not just short
    phone.screenshot(path=str(tmp_path / "phone-chat.png"))

    # Scrolled up to read, the person stays where they are when something new arrives.
    phone.get_by_test_id("messages").evaluate("(list) => { list.scrollTop = 0; }")
    send_cli(bob.primary, "@alice", "one more")
    message(phone, "one more").wait_for(state="attached", timeout=TIMEOUT)
    assert in_view(message(phone, "line 0"))


def test_a_message_written_offline_waits_and_goes_out_when_back(
    server_process: Any, small_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(small_phone, url, "carl", "Carl")
    page = small_phone.page
    dana = cli_primary(url, tmp_path / "dana", "dana", "Dana")
    start_chat(page, "@dana")
    send_text(page, "before the outage")
    receive_until(dana.primary, lambda got: "before the outage" in texts(got))

    offline = f"written while offline {secrets.token_hex(4)}"
    written: dict[str, Any] = {}

    def while_down() -> None:
        page.get_by_test_id("connection-banner").wait_for(state="visible", timeout=TIMEOUT)
        page.get_by_test_id("composer").fill(offline)
        page.get_by_test_id("composer-send").click()
        row = message(page, offline)
        row.wait_for(timeout=TIMEOUT)
        page.wait_for_timeout(500)  # what the send attempt made of it
        written["status"] = row.get_attribute("data-status")
        written["ticks"] = row.get_by_test_id("ticks").inner_text()
        written["retry"] = row.get_by_test_id("retry").count()

    restart_server(server_process, tmp_path / "server2.log", while_down)
    # As the banner promised: pending (the clock), no error and no Retry while offline...
    assert written == {"status": "sending", "ticks": "🕓", "retry": 0}, written
    # ...then sent once the connection is back, and Dana gets it exactly once.
    row = message(page, offline)
    row.locator(
        'xpath=self::*[@data-status="sent" or @data-status="delivered" or @data-status="read"]'
    ).wait_for(timeout=30_000)
    assert row.get_by_test_id("retry").count() == 0
    got = receive_until(dana.primary, lambda got: offline in texts(got))
    assert texts(got).count(offline) == 1
