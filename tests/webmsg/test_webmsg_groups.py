"""Groups and media across browser and terminal: a browser phone (with its linked browser laptop) makes a
group with two terminal accounts; Megolm goes browser -> vodozemac and back; a removed member stops
receiving; an image sent from a terminal displays in the browser with the same pixels.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    TIMEOUT,
    assert_no_plaintext,
    cli_primary,
    displayed_pixels,
    make_png,
    message,
    open_chat,
    receive_json,
    receive_until,
    send_cli,
    send_file,
    send_text,
    texts,
)

from fake_camera import Phone
from phone_linking import create_account, link_companion, open_companion

pytestmark = pytest.mark.browser


def test_group_membership_and_media_across_browser_and_terminal(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    alice = phone.page
    create_account(phone, url, "alice", "Alice")
    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "qr.png", "Alice's laptop")
    laptop.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    alice.reload()
    alice.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    dave = cli_primary(url, tmp_path / "dave", "dave", "Dave")

    alice.get_by_test_id("new-group").click()
    alice.get_by_test_id("group-name").fill("Trip")
    # The members' handles are looked up together (128 to a request): one unknown makes no group at all.
    alice.get_by_test_id("group-members").fill("@bob, @Nobody, @dave")
    alice.get_by_test_id("group-create").click()
    error = alice.get_by_test_id("messenger-error")
    error.filter(has_text="There is no account @nobody on this server.").wait_for(timeout=TIMEOUT)
    assert alice.get_by_test_id("chat-row").count() == 0
    alice.get_by_test_id("group-members").fill("@bob, @dave")
    alice.get_by_test_id("group-create").click()
    conversation = alice.get_by_test_id("conversation")
    conversation.wait_for(timeout=TIMEOUT)
    assert "Trip" in conversation.get_by_test_id("conversation-title").inner_text()
    first = f"first group message {secrets.token_hex(4)}"
    send_text(alice, first)
    for member in (bob, dave):
        assert first in texts(receive_until(member.primary, lambda got: first in texts(got)))

    # Bob writes to the group from his terminal: both of Alice's browsers read it (vodozemac -> browser).
    from_bob = f"bob to the group {secrets.token_hex(4)}"
    send_cli(bob.primary, "#Trip", from_bob)
    message(alice, from_bob).wait_for(timeout=TIMEOUT)
    open_chat(laptop, "Trip")
    message(laptop, from_bob).wait_for(timeout=TIMEOUT)
    message(laptop, first).wait_for(timeout=TIMEOUT)  # what Alice's phone sent reached her laptop too

    # Alice removes Dave; what follows reaches Bob but not Dave.
    alice.get_by_test_id("group-panel").locator("summary").click()
    alice.get_by_test_id("group-member").filter(has_text="@dave").get_by_test_id("group-remove").click()
    alice.get_by_test_id("group-member").filter(has_text="@dave").wait_for(state="detached", timeout=TIMEOUT)
    second = f"after dave left {secrets.token_hex(4)}"
    send_text(alice, second)
    assert second in texts(receive_until(bob.primary, lambda got: second in texts(got)))
    later = receive_json(dave.primary, wait=3)
    assert second not in texts(later)
    assert all(m["kind"] != "undecryptable" for m in later)
    # Bob's terminal rotates too: Alice's browser reads his next group message under the new session.
    bob_after = f"bob after dave left {secrets.token_hex(4)}"
    send_cli(bob.primary, "#Trip", bob_after)
    message(alice, bob_after).wait_for(timeout=TIMEOUT)
    assert bob_after not in texts(receive_json(dave.primary, wait=2))

    # Added back, Dave reads what follows, never what was said while he was out.
    alice.get_by_test_id("group-add-handle").fill("@dave")
    alice.get_by_test_id("group-add").click()
    alice.get_by_test_id("group-member").filter(has_text="@dave").wait_for(timeout=TIMEOUT)
    welcome = f"welcome back dave {secrets.token_hex(4)}"
    send_text(alice, welcome)
    back = texts(receive_until(dave.primary, lambda got: welcome in texts(got)))
    assert second not in back and bob_after not in back

    # An image from Bob's terminal to Alice: her phone shows it with the PNG's exact pixels.
    picture = tmp_path / "from-bob.png"
    pixels = make_png(picture, 40, 30, seed=7)
    send_cli(bob.primary, "@alice", "a photo", file=picture)
    open_chat(alice, "@bob")
    image = alice.get_by_test_id("message-image").first
    assert displayed_pixels(image) == (40, 30, pixels)
    # ...and one from Alice's laptop reaches Bob's terminal with the same bytes.
    mine = tmp_path / "from-alice.png"
    make_png(mine, 20, 20, seed=9)
    open_chat(laptop, "@bob")
    send_file(laptop, mine)
    got = receive_until(bob.primary, lambda got: any(m["kind"] == "media" for m in got))
    media = next(m for m in got if m["kind"] == "media")
    assert (
        media["file"]
        and hashlib.sha256(Path(media["file"]).read_bytes()).digest()
        == hashlib.sha256(mine.read_bytes()).digest()
    )

    # Media whose descriptor lies about the blob (wrong hash; wrong key, so a wrong MAC) is refused.
    for lie, reason in (("hash", "hash does not match"), ("mac", "MAC does not match")):
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("tampered_media.py")),
                str(bob.primary),
                "alice",
                str(picture),
                lie,
            ],
            check=True,
            timeout=60,
        )
        bad = alice.get_by_test_id("message").filter(has_text=f"tampered {lie}")
        bad.get_by_test_id("media-error").filter(has_text=reason).wait_for(timeout=TIMEOUT)
        assert bad.get_by_test_id("message-image").is_hidden()

    alice.screenshot(path=str(tmp_path / "alice-group.png"), full_page=True)
    assert_no_plaintext(
        server_process,
        [first, from_bob, second, bob_after, welcome, "Trip"],
        [picture.read_bytes(), mine.read_bytes()],
    )
