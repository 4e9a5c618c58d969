"""Group changes by a companion on probation (linking.md §4.6), refused by a member's browser itself: the
server here lets them through (tests/webmsg/probation_lifting_server.py). Alice's terminal laptop, linked
from 127.0.0.2, adds eve to a group with bob; bob's phone app refuses that change, so what bob then
writes in the group gets to alice but never opens on eve's device. A group the laptop made is refused."""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import pytest
from webmsg_helpers import (
    TIMEOUT,
    cli_primary,
    message,
    open_chat,
    receive_json,
    receive_until,
    send_text,
    texts,
)

from fake_camera import Phone
from lockstep_cli import link_terminal_companion_from_elsewhere, lockstep_ok
from lockstep_servers import start_server
from other_network import SEPARATE_NETWORK, from_other_network
from phone_linking import create_account

pytestmark = pytest.mark.browser
HERE = Path(__file__).resolve().parent
GROUP_ID = re.compile(r"created \(([^)]+)\)")


def test_a_members_browser_refuses_a_change_made_on_probation(phone: Phone, tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "server",
        tmp_path / "server.log",
        *SEPARATE_NETWORK,
        program=(sys.executable, str(HERE / "probation_lifting_server.py")),
    )
    try:
        url = server.url
        create_account(phone, url, "bob", "Bob", lock="off")
        bob = phone.page
        alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
        eve = cli_primary(url, tmp_path / "eve", "eve", "Eve")
        laptop = tmp_path / "laptop"
        with from_other_network(url) as relay:
            link_terminal_companion_from_elsewhere(relay, alice.primary, laptop, tmp_path / "qr.png")
            lockstep_ok("receive", "--state", str(laptop))  # publishes its keys, learns its groups
            made = lockstep_ok(
                "group", "create", "Climbing", "--members", "bob", "--state", str(alice.primary)
            )
            group_id = GROUP_ID.search(made)
            assert group_id is not None
            open_chat(bob, "Climbing")  # the phone's own group reached bob's browser
            lockstep_ok("group", "add", group_id.group(1), "eve", "--state", str(laptop))  # let through

            said = f"for the climbers bob knows {secrets.token_hex(4)}"
            send_text(bob, said)
            assert said in texts(receive_until(alice.primary, lambda got: said in texts(got)))
            on_eve = receive_json(eve.primary, wait=5)
            assert said not in texts(on_eve)  # eve is a member on the server, not for bob's browser

            # A group the laptop made while on probation: bob's browser does not send into it.
            lockstep_ok("group", "create", "Laptop's", "--members", "bob,eve", "--state", str(laptop))
            open_chat(bob, "Laptop's")
            bob.get_by_test_id("composer").fill("not into a group made on probation")
            bob.get_by_test_id("composer-send").click()
            refused = message(bob, "not into a group made on probation")
            refused.locator('xpath=self::*[@data-status="failed"]').wait_for(timeout=TIMEOUT)
            ticks = refused.get_by_test_id("ticks").get_attribute("title") or ""
            assert "made by a device on probation" in ticks
            assert not texts(receive_json(eve.primary, wait=2))
    finally:
        server.stop()
