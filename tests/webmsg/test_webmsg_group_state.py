"""What a browser knows of its groups when it learnt of them while away (issue 13, points 2 and 3): a
member removed and re-added while offline, and a computer that got its groups from a history transfer,
both show the group's name, its members and who wrote what."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    TIMEOUT,
    cli_primary,
    link_to_terminal_primary,
    message,
    open_chat,
    receive_json,
    receive_until,
    send_cli,
    send_text,
    texts,
)

from fake_camera import Phone
from lockstep_cli import link_terminal_companion, lockstep_ok
from phone_linking import (
    app_url,
    create_account,
    link_companion,
    link_terminal_companion_to_phone,
    open_companion,
)

pytestmark = pytest.mark.browser


def subtitle(page: Any) -> str:
    text: str = page.get_by_test_id("conversation-subtitle").inner_text()
    return text


def test_a_member_removed_and_added_back_while_offline_sees_the_members(
    server_process: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url, "bob", "Bob")
    phone.page.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
    carol = cli_primary(url, tmp_path / "carol", "carol", "Carol")

    # Bob's only device is away the whole time: the group is made, he is removed and added back.
    context = phone.page.context
    phone.page.close()
    lockstep_ok("group", "create", "Choir", "--members", "bob,carol", "--state", str(alice.primary))
    first = f"rehearsal at six {secrets.token_hex(4)}"
    send_cli(alice.primary, "#Choir", first)
    lockstep_ok("group", "remove", "Choir", "bob", "--state", str(alice.primary))
    lockstep_ok("group", "add", "Choir", "bob", "--state", str(alice.primary))
    back = f"welcome back bob {secrets.token_hex(4)}"
    send_cli(alice.primary, "#Choir", back)
    receive_until(carol.primary, lambda got: back in texts(got))

    bob = context.new_page()
    bob.goto(app_url(url))
    open_chat(bob, "Choir")
    message(bob, back).wait_for(timeout=TIMEOUT)
    bob.get_by_test_id("conversation-subtitle").filter(has_text="3 members").wait_for(timeout=TIMEOUT)
    assert "no longer a member" not in subtitle(bob)
    assert not bob.get_by_test_id("composer").is_disabled()
    bob.get_by_test_id("group-panel").locator("summary").click()
    members = bob.get_by_test_id("group-member").all_inner_texts()
    assert len(members) == 3 and any("@alice" in m for m in members) and any("@carol" in m for m in members)


def group_as_shown(page: Any, name: str, said: str) -> tuple[str, str, str]:
    """Open the group chat ``name``: its title, subtitle, and who the page says wrote ``said``."""
    open_chat(page, name)
    message(page, said).wait_for(timeout=TIMEOUT)
    page.get_by_test_id("conversation-subtitle").filter(has_text="3 members").wait_for(timeout=TIMEOUT)
    title: str = page.get_by_test_id("conversation-title").inner_text()
    sender: str = message(page, said).locator(".sender").inner_text()
    return title, subtitle(page), sender


def test_history_to_new_computers_keeps_group_names_members_and_senders(
    server_process: Any, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url, "alice", "Alice")
    alice = phone.page
    alice.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    cli_primary(url, tmp_path / "carol", "carol", "Carol")
    alice.get_by_test_id("new-group").click()
    alice.get_by_test_id("group-name").fill("Trip")
    alice.get_by_test_id("group-members").fill("@bob, @carol")
    alice.get_by_test_id("group-create").click()
    alice.get_by_test_id("conversation").wait_for(timeout=TIMEOUT)
    hello = f"packing list {secrets.token_hex(4)}"
    send_text(alice, hello)
    receive_until(bob.primary, lambda got: hello in texts(got))
    from_bob = f"bob brings the tent {secrets.token_hex(4)}"
    send_cli(bob.primary, "#Trip", from_bob)
    message(alice, from_bob).wait_for(timeout=TIMEOUT)

    # A browser laptop linked now gets the group from the phone's history: name, members, who wrote.
    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "qr.png", "Alice's laptop")
    laptop.get_by_test_id("history-note").wait_for(timeout=TIMEOUT)
    assert group_as_shown(laptop, "Trip", from_bob) == ("Trip", "3 members · end-to-end encrypted", "Bob")
    laptop.reload()
    assert group_as_shown(laptop, "Trip", from_bob)[0] == "Trip"

    # A terminal companion linked to the same phone gets the group's name too.
    alice.get_by_test_id("link-done").click()
    terminal, qr = tmp_path / "alice-terminal", tmp_path / "terminal-qr.png"
    link_terminal_companion_to_phone(phone, url, terminal, qr)
    receive_until(terminal, lambda got: any(m["kind"] == "history" for m in got))
    groups = json.loads(lockstep_ok("group", "list", "--json", "--state", str(terminal)))
    assert [g["name"] for g in groups] == ["Trip"]


def test_history_from_a_terminal_primary_keeps_group_names_members_and_senders(
    server_process: Any, computer: Any, tmp_path: Path
) -> None:
    url = server_process.url
    erin = cli_primary(url, tmp_path / "erin", "erin", "Erin")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    cli_primary(url, tmp_path / "carol", "carol", "Carol")
    lockstep_ok("group", "create", "Book club", "--members", "bob,carol", "--state", str(erin.primary))
    receive_until(bob.primary, lambda got: any(m["kind"] == "group-info" for m in got))
    said = f"chapter two tonight {secrets.token_hex(4)}"
    send_cli(bob.primary, "#Book club", said)
    receive_until(erin.primary, lambda got: said in texts(got))

    laptop = open_companion(computer, url)
    link_to_terminal_primary(laptop, erin.primary, tmp_path / "qr.png")
    laptop.get_by_test_id("history-note").wait_for(timeout=TIMEOUT)
    assert group_as_shown(laptop, "Book club", said) == (
        "Book club",
        "3 members · end-to-end encrypted",
        "Bob",
    )

    # ...and so does a terminal companion of the terminal primary.
    terminal, qr = tmp_path / "erin-terminal", tmp_path / "terminal-qr.png"
    link_terminal_companion(url, erin.primary, terminal, qr)
    receive_json(terminal)  # publishes its keys
    lockstep_ok("receive", "--state", str(erin.primary))
    receive_until(terminal, lambda got: any(m["kind"] == "history" for m in got))
    groups = json.loads(lockstep_ok("group", "list", "--json", "--state", str(terminal)))
    assert [g["name"] for g in groups] == ["Book club"]
