"""A newly linked browser companion gets recent history from the primary (a browser phone, or a terminal
primary), with a note of what was not transferred; the connection banner shows while the socket is down.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    TIMEOUT,
    assert_no_plaintext,
    cli_primary,
    in_thread,
    link_to_terminal_primary,
    message,
    open_chat,
    receive_until,
    send_cli,
    send_text,
    start_chat,
)

from chromium import databases, wait_for_no_databases
from fake_camera import Phone
from lockstep.client import e2estate
from lockstep.client.messenger import Messenger
from lockstep.client.state import DeviceState
from lockstep.link.devices import Role
from lockstep_cli import lockstep_ok
from lockstep_servers import restart_server
from message_burst import send_burst
from phone_linking import create_account, link_companion, open_companion, open_settings

pytestmark = pytest.mark.browser


def test_browser_primary_sends_history_to_a_new_browser_companion(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    alice = phone.page
    create_account(phone, url, "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    before = f"written before the laptop was linked {secrets.token_hex(4)}"
    start_chat(alice, "@bob")
    send_text(alice, before)
    answer = f"bob's answer {secrets.token_hex(4)}"
    receive_until(bob.primary, lambda got: any(m["kind"] == "text" for m in got))
    send_cli(bob.primary, "@alice", answer)
    message(alice, answer).wait_for(timeout=TIMEOUT)

    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "qr.png", "Alice's laptop")
    note = laptop.get_by_test_id("history-note")
    note.wait_for(timeout=TIMEOUT)
    assert "2 messages from the last 30 days were transferred" in note.inner_text()
    open_chat(laptop, "@bob")
    message(laptop, before).wait_for(timeout=TIMEOUT)
    message(laptop, answer).wait_for(timeout=TIMEOUT)
    assert message(laptop, before).get_attribute("data-direction") == "out"

    # The connection drops: a banner says so; it goes once the socket is back, and sending works again.
    banner = laptop.get_by_test_id("connection-banner")
    assert not banner.is_visible()
    restart_server(
        server_process, tmp_path / "server2.log", lambda: banner.wait_for(state="visible", timeout=TIMEOUT)
    )
    banner.wait_for(state="hidden", timeout=30_000)
    after = f"back online {secrets.token_hex(4)}"
    send_text(laptop, after)
    open_chat(alice, "@bob")  # the phone went back from the chat to link the laptop
    message(alice, after).wait_for(timeout=TIMEOUT)

    # Unlinked from the phone: the laptop forgets its messaging keys, sessions and messages too.
    assert any(n.startswith("lockstep-messenger-") for n in databases(laptop))
    open_settings(alice)
    row = alice.get_by_test_id("device-row").filter(has_text="Alice's laptop")
    row.get_by_test_id("unlink").click()
    alice.get_by_test_id("unlink-confirm").click()
    laptop.get_by_test_id("logged-out").wait_for(timeout=TIMEOUT)
    wait_for_no_databases(laptop)
    assert not laptop.get_by_test_id("messenger").is_visible()
    # ...and Alice's phone keeps writing to Bob without it (the server no longer routes to it).
    last = f"after the unlink {secrets.token_hex(4)}"
    open_chat(alice, "@bob")
    send_text(alice, last)
    receive_until(bob.primary, lambda got: last in [m["body"].get("text") for m in got])
    assert_no_plaintext(server_process, [before, answer, after, last])


HISTORY_MAX = 1000  # web/src/messenger/history.ts: what a new companion gets without asking


async def burst(sender: Path, to: str, texts: list[str]) -> None:
    async with Messenger.open(DeviceState.load(sender, Role.PRIMARY)) as messenger:
        await send_burst(messenger, to, texts)


def test_browser_primary_serves_older_history_when_a_companion_asks(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    """The phone app sends a new companion its newest 1,000 messages; asked for more (messaging.md §12.1),
    it serves the older ones (HistoryTransfer.serve) and the companion shows them."""
    url = server_process.url
    alice = phone.page
    create_account(phone, url, "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    token = secrets.token_hex(4)
    texts = [f"message {i:04d} {token}" for i in range(HISTORY_MAX + 3)]
    in_thread(burst(bob.primary, "@alice", texts))
    open_chat(alice, "@bob")
    message(alice, texts[-1]).wait_for(timeout=60_000)

    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "qr.png", "Alice's laptop")
    note = laptop.get_by_test_id("history-note")
    note.wait_for(timeout=TIMEOUT)
    assert f"{HISTORY_MAX} messages from the last 30 days were transferred" in note.inner_text()
    assert "3 older messages stay only on the phone" in note.inner_text()
    search = laptop.get_by_test_id("search")
    search.fill(f"message 0000 {token}")
    laptop.get_by_test_id("search-empty").wait_for(timeout=TIMEOUT)  # the oldest stayed on the phone

    laptop.get_by_test_id("history-more").click()
    laptop.wait_for_function(
        "(note) => document.querySelector('[data-testid=\"history-note\"]').textContent.includes(note)",
        arg="3 older messages were transferred",
        timeout=TIMEOUT,
    )
    search.fill("")
    for oldest in texts[:3]:
        search.fill(oldest)
        hits = laptop.get_by_test_id("search-result-text")
        hits.first.wait_for(timeout=TIMEOUT)
        assert hits.all_inner_texts() == [f"Bob: {oldest}"]


def test_terminal_primary_sends_history_to_a_browser_companion(
    server_process, computer: Any, tmp_path: Path
) -> None:
    url = server_process.url
    erin = cli_primary(url, tmp_path / "erin", "erin", "Erin")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    hello = f"hello erin {secrets.token_hex(4)}"
    send_cli(bob.primary, "@erin", hello)
    receive_until(erin.primary, lambda got: any(m["kind"] == "text" for m in got))
    # A message in the phone's own history from long ago: older than 30 days, it stays on the phone.
    ancient = f"from long ago {secrets.token_hex(4)}"
    with e2estate.locked(erin.primary):
        store = e2estate.E2EStore.load_or_create(erin.primary)
        first = store.history[0]
        store.remember({**first, "id": "ancient-message-id-0", "ts": 1, "body": {"text": ancient}})
        store.save()
        store.close()

    laptop = open_companion(computer, url)
    link_to_terminal_primary(laptop, erin.primary, tmp_path / "qr.png")
    note = laptop.get_by_test_id("history-note")
    note.wait_for(timeout=TIMEOUT)
    assert "1 messages from the last 30 days were transferred" in note.inner_text()
    open_chat(laptop, "@bob")
    message(laptop, hello).wait_for(timeout=TIMEOUT)
    assert "1 older messages stay only on the phone" in note.inner_text()

    # The laptop asks the phone for what it kept back (messaging.md §12.1); the phone answers when it runs.
    laptop.get_by_test_id("history-more").click()
    laptop.wait_for_timeout(1000)  # the request is on its way
    lockstep_ok("receive", "--state", str(erin.primary))
    message(laptop, ancient).wait_for(timeout=TIMEOUT)
    assert "1 older messages were transferred" in note.inner_text()
    assert_no_plaintext(server_process, [hello, ancient])  # the history bundles were uploaded encrypted
