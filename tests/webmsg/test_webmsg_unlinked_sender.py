"""Messages a device sent just before it was unlinked stay readable (issue 13, point 6; messaging.md
§3.1): the receivers, Python and browser, read them after the unlink, from the server's record of the
former device, proven by the account's two signed lists."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    TIMEOUT,
    cli_account_with_companion,
    cli_primary,
    message,
    open_chat,
    receive_json,
    send_cli,
    start_chat,
)

from fake_camera import Phone
from lockstep_cli import lockstep_ok
from phone_linking import app_url, create_account

pytestmark = pytest.mark.browser


def test_what_a_device_sent_just_before_its_unlink_stays_readable(
    server_process: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url, "bob", "Bob")
    bob = phone.page
    bob.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    alice = cli_account_with_companion(url, tmp_path, "alice", "Alice")
    carol = cli_primary(url, tmp_path / "carol", "carol", "Carol")
    start_chat(bob, "@alice")  # Bob knows Alice (and her laptop) before it goes
    context = bob.context
    bob.close()  # Bob reads only after the unlink

    to_bob = f"sent from the laptop just before its unlink {secrets.token_hex(4)}"
    to_carol = f"for carol, also just before {secrets.token_hex(4)}"
    send_cli(alice.companion, "@bob", to_bob)
    send_cli(alice.companion, "@carol", to_carol)
    assert alice.companion is not None
    laptop_id = json.loads((alice.companion / "state.json").read_text())["device_id"]
    lockstep_ok("primary", "unlink", "--state", str(alice.primary), "--", laptop_id)  # ids may start "-"

    # A Python receiver, and Alice's own phone (which gets a copy of what her laptop sent).
    for state, sent in ((carol.primary, [to_carol]), (alice.primary, [to_bob, to_carol])):
        got = receive_json(state, wait=5)
        assert [m["body"].get("text") for m in got if m["kind"] == "text"] == sent, got
        assert not [m for m in got if m["kind"] == "undecryptable"], got

    # The browser receiver.
    page = context.new_page()
    page.goto(app_url(url))
    open_chat(page, "@alice")
    message(page, to_bob).wait_for(timeout=TIMEOUT)
    assert "could not be decrypted" not in page.get_by_test_id("messages").inner_text()
