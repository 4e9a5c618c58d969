"""Search (messaging.md §15.7) on a computer-sized screen: Ctrl+Alt+/ puts the cursor in the search box,
and a result opens its chat at the message found, scrolled into view and highlighted, also when that
message is far older than the rows the open chat keeps in the page (web/src/messenger/timeline.ts)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import TIMEOUT, cli_primary, in_thread, message, open_chat, send_text, start_chat

from fake_camera import FakeCamera, Phone
from lockstep.client.messenger import Messenger
from lockstep.client.state import DeviceState
from lockstep.link.devices import Role
from message_burst import send_burst
from phone_linking import create_account

pytestmark = pytest.mark.browser

FILLERS = 220  # more than timeline.ts MAX_ROWS (150) after the message searched for

IN_VIEW = """
(row) => {
  const list = row.closest('[data-testid="messages"]').getBoundingClientRect();
  const box = row.getBoundingClientRect();
  return box.top >= list.top && box.bottom <= list.bottom;
}
"""


def test_ctrl_alt_slash_searches_and_a_result_opens_its_chat_at_a_message_outside_the_window(
    server_process, computer: Any, tmp_path: Path
) -> None:
    url = server_process.url
    # The phone app on a computer-sized screen: chat list and conversation side by side, shortcuts on.
    alice = Phone(computer.new_page(), FakeCamera(tmp_path / "unused.y4m"))
    page = alice.page
    create_account(alice, url, "alice", "Alice", lock="off")  # no linking here: the lock's offer is declined
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    token = secrets.token_hex(3)
    start_chat(page, "@bob")
    send_text(page, f"hi {token}")
    needle = f"the old needle {token}"

    async def bob_writes() -> None:
        async with Messenger.open(DeviceState.load(bob.primary, Role.PRIMARY)) as messenger:
            await messenger.receive(receipts=False)
            await send_burst(messenger, "@alice", [needle] + [f"filler {n} {token}" for n in range(FILLERS)])

    in_thread(bob_writes())
    open_chat(page, "Bob")
    message(page, f"filler {FILLERS - 1} {token}").wait_for(timeout=TIMEOUT)
    assert message(page, needle).count() == 0  # opened at the newest: the needle is not in the page
    page.get_by_test_id("composer").click()

    page.keyboard.press("Control+Alt+Slash")
    assert page.evaluate("document.activeElement.dataset.testid") == "search"
    page.keyboard.type("OLD NEEDLE")
    (hit,) = page.get_by_test_id("search-result").all()
    hit.click()

    found = message(page, needle)
    found.wait_for(timeout=TIMEOUT)
    assert "highlighted" in str(found.get_attribute("class"))
    assert found.evaluate(IN_VIEW)
    assert page.get_by_test_id("message").count() <= 150
    page.screenshot(path=str(tmp_path / "search-found.png"))
