"""Replies, reactions, edits, deletes and search from the terminal (messaging.md §15): three devices of
two accounts, then a companion linked afterwards, all show the same thing; typing and presence signals
from Python, as the terminal shows them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from audio_samples import wav
from e2e_state import stored_bytes
from lockstep.client.errors import ClientError
from lockstep.client.messenger import Messenger
from lockstep.client.state import DeviceState
from lockstep.e2e.actions import Presence, PresenceState, Typing, TypingState
from lockstep.link.devices import Role
from lockstep_cli import link_terminal_companion, lockstep, lockstep_ok, receive_json


def search(state: Path, query: str) -> list[dict[str, Any]]:
    out = lockstep_ok("search", query, "--json", "--state", str(state))
    return [json.loads(line) for line in out.splitlines()]


def seen_alike(states: list[Path], query: str) -> list[dict[str, Any]]:
    """What every device's own store shows for ``query``, checked to be the same everywhere."""
    results = [[{k: v for k, v in hit.items() if k != "in"} for hit in search(s, query)] for s in states]
    assert all(r == results[0] for r in results), results
    return results[0]


def test_reply_react_edit_delete_and_search_agree_on_every_device(server_process, tmp_path: Path) -> None:
    url = server_process.url
    alice, laptop, bob, desk = (tmp_path / n for n in ("alice", "alice-laptop", "bob", "alice-desk"))
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    link_terminal_companion(url, alice, laptop, tmp_path / "laptop.png")
    receive_json(alice)
    receive_json(laptop, wait=10)
    devices = [alice, laptop, bob]

    plan, doomed = (
        lockstep_ok("send", "--to", "bob", text, "--state", str(alice)).strip().rsplit(": ", 1)[1]
        for text in ("dinner at 8?", "my bank pin is 1234")
    )
    for state in (laptop, bob):
        assert {m["id"] for m in receive_json(state, wait=10) if m["kind"] == "text"} == {plan, doomed}

    # Bob replies by a prefix of the id, in the conversation of the message he answers.
    lockstep_ok("send", "--reply-to", plan[:8], "yes, see you there", "--state", str(bob))
    human = lockstep_ok("receive", "--wait", "10", "--state", str(alice))
    assert '@bob (replying to "dinner at 8?"): yes, see you there' in human
    (reply,) = [m for m in receive_json(laptop, wait=10) if m["kind"] == "text"]
    assert reply["body"]["reply_to"] == plan

    # Bob reacts from his phone, alice from her laptop; alice edits from her phone.
    assert 'Reacted 👍 to "dinner at 8?"' in lockstep_ok("react", plan, "👍", "--state", str(bob))
    lockstep_ok("react", plan[:6], "❤️", "--state", str(laptop))
    lockstep_ok("edit", plan, "dinner at 9?", "--state", str(alice))
    lockstep_ok("delete", doomed, "--state", str(alice))
    assert "@bob reacted 👍 to" in lockstep_ok("receive", "--wait", "10", "--state", str(alice))
    receive_json(laptop, wait=10)
    on_bob = lockstep_ok("receive", "--wait", "10", "--state", str(bob))
    assert "edited a message: dinner at 9?" in on_bob and "deleted a message" in on_bob

    # Refused before anything is sent: another account's message, a reaction that is a word.
    for args, words in (
        (("delete", plan), "only delete your own messages"),
        (("edit", plan, "bob was here"), "only edit your own messages"),
        (("react", plan, "ok"), "emoji"),
        (("react", "zzzzzzzz", "👍"), "no message beginning with"),
    ):
        refused = lockstep(*args, "--state", str(bob))
        assert refused.returncode != 0 and words in refused.stderr and refused.stderr.count("\n") == 1

    # Every device shows the edit and both reactions; the old text and the deleted message are gone.
    accounts = {hit["from"]["handle"]: hit["from"]["account_id"] for hit in search(bob, "see you there")}
    (hit,) = seen_alike(devices, "dinner")
    assert hit["id"] == plan and hit["text"] == "dinner at 9?" and hit["edited"]
    assert set(hit["reactions"].values()) == {"👍", "❤️"}
    assert hit["reactions"][accounts["bob"]] == "👍"
    assert seen_alike(devices, "at 8") == [] and seen_alike(devices, "pin") == []

    # A companion linked now gets all of it through the primary's history bundle.
    link_terminal_companion(url, alice, desk, tmp_path / "desk.png")
    receive_json(alice)
    (history,) = [m for m in receive_json(desk, wait=10) if m["kind"] == "history"]
    assert history["body"]["count"] == 3
    assert seen_alike([*devices, desk], "dinner") == [hit]
    assert seen_alike([*devices, desk], "pin") == []
    assert "No messages on this device contain 'pin'" in lockstep_ok("search", "pin", "--state", str(desk))
    # The deleted text is gone from every device's store, not only hidden.
    for state in [*devices, desk]:
        assert b"bank pin" not in stored_bytes(state)


def test_the_terminal_sends_an_audio_file_as_a_voice_note(server_process, tmp_path: Path) -> None:
    url, alice, bob = server_process.url, tmp_path / "alice", tmp_path / "bob"
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    note = tmp_path / "note.wav"
    note.write_bytes(wav(2.0))
    lockstep_ok("send", "--to", "bob", "--voice", str(note), "--state", str(alice))
    (message,) = [m for m in receive_json(bob, wait=10) if m["kind"] == "media"]
    media = message["body"]["media"]
    assert media["type"] == "audio" and media["mimetype"] == "audio/x-wav"
    voice = message["body"]["voice"]
    assert voice["duration_ms"] == 2000 and len(voice["waveform"]) == 64
    assert Path(message["file"]).read_bytes() == note.read_bytes()
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("not a sound")
    refused = lockstep("send", "--to", "bob", "--voice", str(not_audio), "--state", str(alice))
    assert refused.returncode != 0 and "not an audio file" in refused.stderr


def test_python_typing_and_presence_reach_a_terminal_which_prints_typing_but_no_presence(
    server_process, tmp_path: Path
) -> None:
    """Messenger.send_signal (messaging.md §15.5): `receive` prints "is typing…" and "stopped typing";
    presence it never prints (a terminal shares none, and a device that shares none shows none), and
    presence to a group is refused before anything is sent."""
    url = server_process.url
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    lockstep_ok("send", "--to", "bob", "hi", "--state", str(alice))
    receive_json(bob, wait=10)
    lockstep_ok("group", "create", "lunch", "--members", "bob", "--state", str(alice))

    async def signals() -> None:
        async with Messenger.open(DeviceState.load(alice, Role.PRIMARY)) as messenger:
            await messenger.send_signal("@bob", Presence(PresenceState.ONLINE))
            await messenger.send_signal("@bob", Typing(TypingState.COMPOSING))
            await messenger.send_signal("#lunch", Typing(TypingState.PAUSED))
            with pytest.raises(ClientError, match="not to a group"):
                await messenger.send_signal("#lunch", Presence(PresenceState.ONLINE))

    asyncio.run(signals())
    printed = lockstep_ok("receive", "--wait", "5", "--state", str(bob))
    lines = [line.split("] ", 1)[1] for line in printed.splitlines() if "typing" in line]
    assert lines == ["@alice is typing…", "#lunch @alice stopped typing"], printed
    assert "online" not in printed and "last seen" not in printed, printed
    # Nothing of them is kept: Bob's store has no trace of either kind.
    assert b"typing" not in stored_bytes(bob)
    assert b"presence" not in stored_bytes(bob)
