"""Messaging from the command line: real `lockstep` processes against a real server process."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from e2e_state import stored_olm_pickle
from lockstep_cli import link_terminal_companion, lockstep, lockstep_ok, receive_json


def test_cli_send_receive_media_receipts_and_groups(server_process, tmp_path: Path) -> None:
    url = server_process.url
    alice, laptop, bob, carol = (
        tmp_path / "alice",
        tmp_path / "alice-laptop",
        tmp_path / "bob",
        tmp_path / "carol",
    )
    for handle, state in (("alice", alice), ("bob", bob), ("carol", carol)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    link_terminal_companion(url, alice, laptop, tmp_path / "laptop.png")
    # `primary init` and `companion link` published each device's keys. The phone's first `receive`
    # sends the new companion the chat history (empty here) with a note.
    assert lockstep_ok("receive", "--state", str(alice)) == ""
    (history,) = receive_json(laptop, wait=10)
    assert history["kind"] == "history" and history["body"]["count"] == 0

    # From alice's companion to bob: bob's phone and alice's phone both get it.
    out = lockstep_ok("send", "--to", "bob", "hello bob, from a terminal", "--state", str(laptop))
    assert "Sent to 1 device of @bob and 1 other device of yours" in out
    (message,) = receive_json(bob, wait=10)
    assert message["kind"] == "text" and message["body"] == {"text": "hello bob, from a terminal"}
    assert message["from"]["handle"] == "alice"
    # Alice's phone has the copy of what she sent, and bob's read receipt (he printed it).
    on_phone = receive_json(alice, wait=10)
    assert [m["id"] for m in on_phone if m["kind"] == "text"] == [message["id"]]
    assert [m["body"]["status"] for m in on_phone if m["kind"] == "receipt"] == ["read"]
    receipts = [m for m in receive_json(laptop, wait=10) if m["kind"] == "receipt"]
    assert (
        receipts
        and receipts[0]["body"]["status"] == "read"
        and receipts[0]["body"]["up_to"]
        == [{"conversation": message["conversation"], "message_id": message["id"], "ts": message["ts"]}]
    )
    lockstep_ok("send", "--to", "alice", "read yet?", "--state", str(bob))
    human = lockstep_ok("receive", "--wait", "10", "--state", str(alice))
    assert "@bob: read yet?" in human
    assert "(read)" in lockstep_ok("receive", "--wait", "10", "--state", str(bob))
    assert "@bob: read yet?" in lockstep_ok("receive", "--wait", "10", "--state", str(laptop))
    lockstep_ok("send", "--to", "bob", "sent from the phone", "--state", str(alice))
    assert "you (another device) to @bob: sent from the phone" in lockstep_ok(
        "receive", "--wait", "10", "--state", str(laptop)
    )
    receive_json(bob, wait=10)

    # A file with a caption.
    picture = tmp_path / "cat.jpg"
    picture.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 300)
    lockstep_ok("send", "--to", "@bob", "--file", str(picture), "my cat", "--state", str(alice))
    (media,) = [m for m in receive_json(bob, wait=10) if m["kind"] == "media"]
    assert media["body"]["caption"] == "my cat" and "media_key" not in media["body"]["media"]
    assert Path(str(media["file"])).read_bytes() == picture.read_bytes()
    human = lockstep_ok("receive", "--state", str(bob))  # nothing left
    assert human == ""

    # A group; carol is removed and hears nothing after.
    out = lockstep_ok("group", "create", "Book club", "--members", "bob,carol", "--state", str(alice))
    assert 'Group "Book club" created' in out
    lockstep_ok("send", "--to", "Book club", "first chapter", "--state", str(alice))
    for state in (bob, carol, laptop):
        texts = [m["body"].get("text") for m in receive_json(state, wait=10) if m["kind"] == "text"]
        assert texts == ["first chapter"]
    assert "Book club" in lockstep_ok("group", "list", "--state", str(bob))
    lockstep_ok("group", "remove", "Book club", "carol", "--state", str(alice))
    lockstep_ok("send", "--to", "Book club", "second chapter", "--state", str(alice))
    assert [m for m in receive_json(carol, wait=1) if m["kind"] == "text"] == []
    assert [m["body"]["text"] for m in receive_json(bob, wait=10) if m["kind"] == "text"] == [
        "second chapter"
    ]
    refused = lockstep("send", "--to", "#Book club", "let me back in", "--state", str(carol))
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1
    lockstep_ok("group", "add", "Book club", "carol", "--state", str(alice))
    lockstep_ok("send", "--to", "Book club", "welcome back", "--state", str(bob))
    assert [m["body"]["text"] for m in receive_json(carol, wait=10) if m["kind"] == "text"] == [
        "welcome back"
    ]

    # Nothing readable in the server's database.
    database = b"".join(p.read_bytes() for p in server_process.data_dir.glob("lockstep.sqlite3*"))
    for text in (
        "hello bob, from a terminal",
        "first chapter",
        "second chapter",
        "welcome back",
        "Book club",
    ):
        assert text.encode() not in database
    with sqlite3.connect(server_process.database) as db:
        assert db.execute("SELECT count(*) FROM message_queue").fetchone()[0] >= 0


def test_cli_messaging_refusals_are_one_line(server_process, tmp_path: Path) -> None:
    url, alice = server_process.url, tmp_path / "alice"
    lockstep_ok("primary", "init", "--server", url, "--handle", "alice", "--state", str(alice))
    for args in (
        ("send", "--to", "nobody", "hi"),
        ("send", "--to", "alice"),
        ("send", "--to", "alice", "--file", str(tmp_path / "missing.png")),
        ("group", "add", "no such group", "alice"),
    ):
        result = lockstep(*args, "--state", str(alice))
        assert result.returncode != 0, args
        assert result.stderr.startswith("lockstep: ") and result.stderr.count("\n") == 1, result.stderr
    missing = lockstep("receive", "--state", str(tmp_path / "nothing-here"))
    assert missing.returncode != 0 and "no device state" in missing.stderr


def test_an_unlinked_terminal_companion_keeps_no_secret_and_no_plaintext(
    server_process, tmp_path: Path
) -> None:
    url, alice, laptop, bob = server_process.url, tmp_path / "alice", tmp_path / "laptop", tmp_path / "bob"
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    link_terminal_companion(url, alice, laptop, tmp_path / "laptop.png")
    lockstep_ok("receive", "--state", str(alice))  # history (empty) for the new companion
    secret_text = "the laptop must forget this sentence"
    picture = tmp_path / "private.jpg"
    picture.write_bytes(b"\xff\xd8\xff" + b"private picture bytes " * 200)
    lockstep_ok("send", "--to", "alice", secret_text, "--state", str(bob))
    lockstep_ok("send", "--to", "alice", "--file", str(picture), "--state", str(bob))
    kinds = [m["kind"] for m in receive_json(laptop, wait=10)]
    assert "text" in kinds and "media" in kinds
    # What the laptop holds before the unlink: each must be gone after it.
    secrets_before = {name: (laptop / name).read_bytes() for name in ("device.key", "pickle.key")}
    needles = [
        secret_text.encode(),
        b"private picture bytes",
        secrets_before["device.key"],
        secrets_before["pickle.key"],
        stored_olm_pickle(laptop),
        b"alice",  # contacts and the account (handles are plaintext the device learnt)
    ]
    assert all(any(n in p.read_bytes() for p in laptop.rglob("*") if p.is_file()) for n in needles[:2])

    laptop_id = json.loads((laptop / "state.json").read_text())["device_id"]
    lockstep_ok("primary", "unlink", "--state", str(alice), "--", laptop_id)  # an id may begin with "-"
    status = lockstep("companion", "status", "--state", str(laptop))
    assert status.returncode != 0 and "wiped" in status.stderr

    left = [p for p in laptop.rglob("*") if p.is_file()]
    for path in left:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, (path.name, needle[:20])
    assert left == [], [p.name for p in left]
