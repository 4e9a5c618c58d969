"""Replies, reactions, edits and deletes in real Chromium (messaging.md §15): Alice's phone and laptop and
Bob's phone — three devices of two accounts — show the same thing, and so does a computer linked to
Alice afterwards, through the phone's history bundle; search on the companions finds what they show.
A terminal's reply, reaction, edit and delete show in the browser the same way."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    TIMEOUT,
    assert_no_plaintext,
    cli_primary,
    message,
    open_chat,
    send_text,
    start_chat,
)

from fake_camera import Phone
from lockstep_cli import lockstep_ok, receive_json
from lockstep_servers import restart_server
from phone_linking import create_account, link_companion, open_companion

pytestmark = pytest.mark.browser

ROW_STATE = """
(row) => ({
  text: row.querySelector('[data-testid="message-text"]')?.textContent ?? null,
  edited: row.querySelector('[data-testid="message-edited"]') !== null,
  deleted: row.classList.contains("deleted"),
  reactions: [...row.querySelectorAll('[data-testid="reaction"]')].map((r) => r.textContent).sort(),
  reactionLabels: [...row.querySelectorAll('[data-testid="reaction"]')].map((r) => r.ariaLabel),
  quote: row.querySelector('[data-testid="message-quote"]')?.textContent ?? null,
})
"""


def sent_id(page: Any, text: str) -> str:
    """Send ``text`` from the open chat; the id of the message once it shows as sent."""
    return str(send_text(page, text).get_attribute("data-message-id"))


def row_by_id(page: Any, message_id: str) -> Any:
    return page.locator(f'[data-testid="message"][data-message-id="{message_id}"]')


def state_of(page: Any, message_id: str) -> dict[str, Any]:
    row = row_by_id(page, message_id)
    row.wait_for(timeout=TIMEOUT)
    return dict(row.evaluate(ROW_STATE))


def wait_until(page: Any, message_id: str, check: Any) -> dict[str, Any]:
    """The row's state once ``check(state)`` holds (or the last one seen, for the assertion message)."""
    state: dict[str, Any] = {}
    for _ in range(100):
        state = state_of(page, message_id)
        if check(state):
            return state
        page.wait_for_timeout(200)
    raise AssertionError(state)


def menu(page: Any, message_id: str, choice: str, name: str | None = None) -> None:
    """Open a message's "Message actions" menu and pick an item (by test id, and accessible name)."""
    row = row_by_id(page, message_id)
    row.hover()
    row.get_by_role("button", name="Message actions").click()
    items = row.get_by_test_id(choice)
    (items if name is None else row.get_by_role("menuitem", name=name)).first.click()


def test_reply_react_edit_delete_are_seen_alike_on_three_devices_and_after_history_transfer(
    server_process, computer: Any, phone: Phone, second_phone: Phone, page_errors: Any, tmp_path: Path
) -> None:
    url = server_process.url
    alice, bob = phone.page, second_phone.page
    create_account(phone, url, "alice", "Alice")
    create_account(second_phone, url, "bob", "Bob")
    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "laptop.png", "Alice's laptop")
    alice.get_by_test_id("link-done").click()
    laptop.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    devices = [alice, laptop, bob]

    token = secrets.token_hex(3)
    plan_text, secret_text = f"dinner at 8? {token}", f"my bank pin is 4711 {token}"
    start_chat(alice, "@bob")
    plan = sent_id(alice, plan_text)
    doomed = sent_id(alice, secret_text)
    open_chat(bob, "Alice")
    open_chat(laptop, "Bob")
    for page in (bob, laptop):
        message(page, secret_text).wait_for(timeout=TIMEOUT)

    # Bob replies to the plan from its menu; the composer says what it answers.
    menu(bob, plan, "action-reply")
    assert f"Replying to Alice: {plan_text}" in bob.get_by_test_id("composer-context").inner_text()
    reply = sent_id(bob, f"yes! {token}")
    assert bob.get_by_test_id("composer-context").is_hidden()

    # Bob reacts 👍, Alice's laptop ❤️ (then changes its mind to 😂), Alice's phone edits and deletes.
    menu(bob, plan, "react", "React with 👍")
    menu(laptop, plan, "react", "React with ❤️")
    wait_until(laptop, plan, lambda s: "❤️" in s["reactions"])
    menu(laptop, plan, "react", "React with 😂")
    wait_until(alice, plan, lambda s: "😂" in s["reactions"])
    menu(alice, plan, "action-edit")
    alice.get_by_test_id("composer").fill(f"dinner at 9? {token}")
    alice.get_by_test_id("composer-send").click()
    menu(alice, doomed, "action-delete")
    # Bob may neither edit nor delete Alice's message: his menu does not offer it.
    row_by_id(bob, plan).get_by_role("button", name="Message actions").click()
    assert row_by_id(bob, plan).get_by_test_id("action-edit").count() == 0
    assert row_by_id(bob, plan).get_by_test_id("action-delete").count() == 0
    bob.keyboard.press("Escape")

    expected_plan = {
        "text": f"dinner at 9? {token}",
        "edited": True,
        "deleted": False,
        "reactions": ["👍", "😂"],
    }
    seen = []
    for page in devices:
        state = wait_until(page, plan, lambda s: {k: s[k] for k in expected_plan} == expected_plan)
        seen.append(state)
        gone = wait_until(page, doomed, lambda s: s["deleted"])
        assert gone["text"] == "This message was deleted" and gone["reactions"] == []
        quote = wait_until(page, reply, lambda s: s["quote"] and "9?" in s["quote"])["quote"]
        assert quote.endswith(f"dinner at 9? {token}")
        assert secret_text not in page.get_by_test_id("messages").inner_text()
    # Reactions carry who reacted, for screen readers: Bob sees "You reacted 👍" and "Alice reacted 😂".
    assert sorted(seen[2]["reactionLabels"]) == ["Alice reacted 😂", "You reacted 👍"]

    # A computer linked now gets the same picture from the phone's history bundle.
    desk_context = page_errors.watch(computer.browser.new_context(viewport={"width": 1280, "height": 860}))
    desk = open_companion(desk_context, url)
    link_companion(phone, desk, tmp_path / "desk.png", "Alice's desk")
    desk.get_by_test_id("history-note").wait_for(timeout=TIMEOUT)
    open_chat(desk, "Bob")
    state = wait_until(desk, plan, lambda s: {k: s[k] for k in expected_plan} == expected_plan)
    assert state["reactions"] == seen[0]["reactions"]
    assert wait_until(desk, doomed, lambda s: s["deleted"])["text"] == "This message was deleted"
    assert f"dinner at 9? {token}" in str(state_of(desk, reply)["quote"])
    assert secret_text not in desk.get_by_test_id("messages").inner_text()

    # Search on the companions (each over its own decrypted store): the edited text is found, the old
    # text and the deleted message are not, and a result opens its chat.
    for page in (laptop, desk):
        box = page.get_by_role("searchbox", name="Search messages")
        box.fill("DINNER AT")
        (hit,) = page.get_by_test_id("search-result").all()
        assert hit.get_attribute("data-message-id") == plan
        assert f"You: dinner at 9? {token}" in hit.inner_text()
        for gone in ("at 8?", "4711"):
            box.fill(gone)
            page.get_by_test_id("search-empty").wait_for(timeout=TIMEOUT)
        box.fill(f"yes! {token}")
        page.get_by_test_id("search-result").click()
        assert page.get_by_test_id("chat-list").is_visible()
        row_by_id(page, reply).wait_for(timeout=TIMEOUT)

    assert_no_plaintext(server_process, [plan_text, secret_text, f"dinner at 9? {token}", "😂"])


def chat_with_terminal_bob(server_process: Any, phone: Phone, tmp_path: Path) -> tuple[Any, Path, str]:
    """Alice makes her account on the phone app and opens a chat with Bob, a terminal primary:
    (Alice's page, Bob's state folder, a token that makes this test's texts unique)."""
    url = server_process.url
    create_account(phone, url, "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob").primary
    start_chat(phone.page, "@bob")
    return phone.page, bob, secrets.token_hex(3)


def cli_sent_id(output: str) -> str:
    """The message id `lockstep send` prints last ("Sent to 1 device of @alice: ID")."""
    return output.strip().rsplit(": ", 1)[1]


def test_a_terminal_peers_reply_reaction_edit_and_delete_show_in_the_browser(
    server_process, phone: Phone, tmp_path: Path
) -> None:
    alice, bob, token = chat_with_terminal_bob(server_process, phone, tmp_path)
    question = sent_id(alice, f"lunch? {token}")
    receive_json(bob, wait=10)

    # Bob, in the terminal: two messages, then a reply, a reaction, an edit and a delete.
    def send(*args: str) -> str:
        return cli_sent_id(lockstep_ok("send", *args, "--state", str(bob)))

    plan = send("--to", "alice", f"noon at the cafe {token}")
    doomed = send("--to", "alice", f"my pin is 4711 {token}")
    reply = send("--reply-to", question[:8], f"yes please {token}")
    lockstep_ok("react", question, "👍", "--state", str(bob))
    lockstep_ok("edit", plan, f"one at the cafe {token}", "--state", str(bob))
    lockstep_ok("delete", doomed[:6], "--state", str(bob))

    # Alice's phone shows each as her own devices' would.
    edited = wait_until(alice, plan, lambda s: s["edited"])
    assert edited["text"] == f"one at the cafe {token}"
    assert wait_until(alice, doomed, lambda s: s["deleted"])["text"] == "This message was deleted"
    reacted = wait_until(alice, question, lambda s: s["reactions"] == ["👍"])
    assert reacted["reactionLabels"] == ["Bob reacted 👍"]
    quote = wait_until(alice, reply, lambda s: s["quote"] is not None)["quote"]
    assert quote.endswith(f"lunch? {token}")
    assert "4711" not in alice.get_by_test_id("messages").inner_text()


def test_reactions_edits_and_deletes_made_offline_show_at_once_and_go_out_when_back(
    server_process, phone: Phone, tmp_path: Path
) -> None:
    alice, bob, token = chat_with_terminal_bob(server_process, phone, tmp_path)
    mine = sent_id(alice, f"see you at 8 {token}")
    doomed = sent_id(alice, f"my pin is 4711 {token}")
    receive_json(bob, wait=10)
    theirs = cli_sent_id(lockstep_ok("send", "--to", "alice", f"bring cake {token}", "--state", str(bob)))
    row_by_id(alice, theirs).wait_for(timeout=TIMEOUT)
    receive_json(bob, wait=3)  # Alice's receipts

    shown: dict[str, Any] = {}

    def while_down() -> None:
        alice.get_by_test_id("connection-banner").wait_for(state="visible", timeout=TIMEOUT)
        menu(alice, theirs, "react", "React with 👍")
        menu(alice, mine, "action-edit")
        alice.get_by_test_id("composer").fill(f"see you at 9 {token}")
        alice.get_by_test_id("composer-send").click()
        menu(alice, doomed, "action-delete")
        shown["reaction"] = wait_until(alice, theirs, lambda s: s["reactions"] == ["👍"])["reactions"]
        shown["edit"] = wait_until(alice, mine, lambda s: s["edited"])["text"]
        shown["deleted"] = wait_until(alice, doomed, lambda s: s["deleted"])["text"]
        shown["error"] = alice.get_by_test_id("messenger-error").is_visible()

    restart_server(server_process, tmp_path / "server2.log", while_down)
    # Offline, each showed at once and nothing said it failed...
    assert shown == {
        "reaction": ["👍"],
        "edit": f"see you at 9 {token}",
        "deleted": "This message was deleted",
        "error": False,
    }, shown
    # ...and once the connection is back, Bob's terminal gets all three, once each.
    got = lockstep_ok("receive", "--wait", "20", "--state", str(bob))
    for _ in range(5):
        if "deleted a message" in got:
            break
        got += lockstep_ok("receive", "--wait", "5", "--state", str(bob))
    assert got.count("@alice reacted 👍 to") == 1 and f"bring cake {token}" in got, got
    assert got.count(f"@alice edited a message: see you at 9 {token}") == 1, got
    assert got.count("@alice deleted a message") == 1, got
    assert not alice.get_by_test_id("messenger-error").is_visible()
    # Editing in the composer is not "typing…", and a `composing` never sent owes no `paused`.
    assert "typing" not in got
