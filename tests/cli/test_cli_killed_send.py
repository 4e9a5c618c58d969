"""A terminal device killed (SIGKILL) once the server took its message but before it handled the
answer, or between saving the message and sending it, loses nothing and sends nothing twice
(messaging.md §11, "Saved before sent"): the request was kept with the ratchet state that made it, and
the next run sends it again as it was, before anything new. The recipient gets the message exactly
once, the sender keeps it as sent, and the sessions go on both ways: Olm for a direct message, the
group's Megolm session for a group message. Without the kept requests (the
resend taken out), the unsent message never arrives and the answered one is missing from the sender's
own history."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lockstep_cli import lockstep_ok, receive_json

SEND_THEN_DIE = str(Path(__file__).parent / "send_then_die.py")


def texts(state: Path, wait: float = 0.0) -> list[str]:
    return [m["body"]["text"] for m in receive_json(state, wait=wait) if m["kind"] == "text"]


def send_and_kill(state: Path, handle: str, text: str, when: str) -> None:
    """Runs send_then_die.py and kills it with SIGKILL once its send is as far as ``when`` says."""
    process = subprocess.Popen(
        [sys.executable, SEND_THEN_DIE, str(state), handle, text, when],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the hook speaks, or the process ends
        assert line.strip() == "LEFT", (line, process.stderr.read() if process.stderr else "")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize(
    ("when", "to"),
    [("answered", "bob"), ("unsent", "bob"), ("unsent", "#Lunch")],
    ids=["answered", "unsent", "group"],
)
def test_a_send_killed_mid_way_is_resent_by_the_next_run_exactly_once(
    server_process, tmp_path: Path, when: str, to: str
) -> None:
    url, alice, bob = server_process.url, tmp_path / "alice", tmp_path / "bob"
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    if to.startswith("#"):  # a group (Megolm) message; its key is shared when the group is made
        lockstep_ok("group", "create", "Lunch", "--members", "bob", "--state", str(alice))
    else:
        lockstep_ok("send", "--to", "bob", "hello bob", "--state", str(alice))
    receive_json(bob, wait=10)  # the first message, or the group's name and key
    lockstep_ok("send", "--to", to.replace("bob", "alice"), "hello alice", "--state", str(bob))
    assert texts(alice, wait=10) == ["hello alice"]

    killed = f"sent by a process that was killed {secrets.token_hex(4)}"
    send_and_kill(alice, to, killed, when)
    lockstep_ok("send", "--to", to, "after the kill", "--state", str(alice))  # resends first

    assert texts(bob, wait=10) == [killed, "after the kill"]  # once each, in order
    assert texts(bob) == []
    lockstep_ok("send", "--to", to.replace("bob", "alice"), "and a reply", "--state", str(bob))
    assert texts(alice, wait=10) == ["and a reply"]  # bob's session with alice goes on
    lockstep_ok("send", "--to", to, "and another", "--state", str(alice))
    assert texts(bob, wait=10) == ["and another"]
    # The sender keeps it as sent, like any other.
    assert killed in lockstep_ok("search", killed.split()[-1], "--state", str(alice))
