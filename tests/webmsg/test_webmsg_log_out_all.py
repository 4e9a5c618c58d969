"""Log out of all computers from the phone app (issue 13): one signed device list removes a browser
companion and a terminal companion at once, and each wipes everything it kept."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import TIMEOUT, message, open_chat, receive_until, send_text, start_chat, texts

from fake_camera import Phone
from lockstep_cli import lockstep
from phone_linking import (
    create_account,
    link_companion,
    link_terminal_companion_to_phone,
    open_companion,
)

pytestmark = pytest.mark.browser


def test_log_out_of_all_computers_wipes_every_companion(
    server_process: Any, computer: Any, phone: Phone, second_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    alice = phone.page
    create_account(phone, url, "alice", "Alice")
    create_account(second_phone, url, "bob", "Bob")
    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "laptop.png", "Alice's laptop")
    alice.get_by_test_id("link-done").click()
    terminal, qr = tmp_path / "alice-terminal", tmp_path / "terminal-qr.png"
    link_terminal_companion_to_phone(phone, url, terminal, qr)
    alice.get_by_test_id("link-done").click()

    said = f"both computers must forget this {secrets.token_hex(4)}"
    start_chat(second_phone.page, "@alice")
    send_text(second_phone.page, said)
    open_chat(laptop, "Bob")
    message(laptop, said).wait_for(timeout=TIMEOUT)
    receive_until(terminal, lambda got: said in texts(got))
    assert any(p.name == "e2e.db" for p in terminal.iterdir())

    if alice.get_by_test_id("back").is_visible():
        alice.get_by_test_id("back").click()
    alice.get_by_role("button", name="Log out of all computers").click()
    assert "2 linked computers are logged out at once" in alice.get_by_test_id("unlink-all-note").inner_text()
    alice.get_by_role("button", name="Log out of all computers now").click()

    laptop.get_by_test_id("logged-out").wait_for(timeout=TIMEOUT)
    for _ in range(100):  # the laptop deletes its databases once it hears it was unlinked
        if laptop.evaluate("async () => (await indexedDB.databases()).length") == 0:
            break
        laptop.wait_for_timeout(100)
    assert laptop.evaluate("async () => (await indexedDB.databases()).map((db) => db.name)") == []
    status = lockstep("companion", "status", "--state", str(terminal))
    assert status.returncode != 0 and "wiped" in status.stderr
    assert [p for p in terminal.rglob("*") if p.is_file()] == []
    alice.get_by_test_id("device-row").first.wait_for(timeout=TIMEOUT)
    rows = alice.get_by_test_id("device-row")
    assert rows.count() == 1 and alice.get_by_test_id("unlink-all").is_hidden()
