"""Calls from the command line: real `lockstep call` / `lockstep answer` processes and a real server
process; media on loopback only (``LOCKSTEP_ICE_HOSTS``); the tone each side plays is checked in what the
other side recorded."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockstep_cli import IN_A_CALL, LOCKSTEP, link_terminal_companion, lockstep, lockstep_ok, receive_json
from tone import dominant_frequency, write_tone

STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Whatever happens in a test, no `lockstep` it started in the background outlives it."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def start(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [LOCKSTEP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=IN_A_CALL
    )
    STARTED.append(process)
    return process


def call(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCKSTEP, "call", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=IN_A_CALL,
        check=False,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=90)
    return process.returncode, out, err


def test_terminal_calls_tones_both_ways_refusals_and_what_receive_shows(
    server_process, tmp_path: Path
) -> None:
    url = server_process.url
    alice, bob, bob_laptop, carol = (tmp_path / n for n in ("alice", "bob", "bob-laptop", "carol"))
    for handle, state in (("alice", alice), ("bob", bob), ("carol", carol)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    link_terminal_companion(url, bob, bob_laptop, tmp_path / "laptop.png")
    receive_json(bob)  # the phone sends the new laptop its (empty) history
    receive_json(bob_laptop, wait=10)
    low, high = write_tone(tmp_path / "440.wav", 440), write_tone(tmp_path / "660.wav", 660)

    # A voice call: alice plays 440 Hz, bob's phone answers and plays 660 Hz; each records the other.
    answering = start(
        "answer",
        "--wait",
        "60",
        "--play",
        str(high),
        "--record",
        str(tmp_path / "bob-heard.wav"),
        "--state",
        str(bob),
    )
    dialled = call(
        "bob",
        "--seconds",
        "3",
        "--play",
        str(low),
        "--record",
        str(tmp_path / "alice-heard.wav"),
        "--state",
        str(alice),
    )
    status, out, err = finish(answering)
    assert dialled.returncode == 0, dialled.stderr
    assert dialled.stdout.startswith("voice call, ") and dialled.stdout.strip().endswith("with @bob")
    assert status == 0 and out.strip().endswith("with @alice"), err
    heard_by_bob, level = dominant_frequency(tmp_path / "bob-heard.wav")
    assert abs(heard_by_bob - 440) <= 5 and level > 1000
    heard_by_alice, level = dominant_frequency(tmp_path / "alice-heard.wav")
    assert abs(heard_by_alice - 660) <= 5 and level > 1000

    # Bob's laptop rang and then saw the call answered on the phone: receive shows how it went.
    (seen,) = [m for m in receive_json(bob_laptop, wait=5) if m["kind"] == "call"]
    assert seen["state"] == "ended" and seen["summary"].startswith("voice call, ")
    assert seen["summary"].endswith("from @alice") and seen["peer"]["handle"] == "alice"

    # Unknown handle, declined, and a busy callee: each a one-line reason and its own exit status.
    unknown = call("nobody", "--state", str(alice))
    assert (unknown.returncode, unknown.stderr.strip()) == (3, "lockstep: no account @nobody on this server")
    declining = start("answer", "--decline", "--wait", "60", "--state", str(bob))
    declined = call("bob", "--video", "--state", str(carol))
    assert finish(declining)[:2] == (0, "declined a video call from @carol\n")
    assert (declined.returncode, declined.stderr.strip()) == (5, "lockstep: @bob declined the call")
    answering_alice = tmp_path / "bob-in-call.wav"  # created when bob's phone picks up
    in_call = start("answer", "--wait", "60", "--record", str(answering_alice), "--state", str(bob))
    first = start("call", "bob", "--seconds", "15", "--state", str(alice))
    deadline = time.monotonic() + 60
    while not answering_alice.exists():  # only then can carol's call find bob busy
        assert time.monotonic() < deadline and in_call.poll() is None, "bob's phone never answered"
        time.sleep(0.05)
    busy = call("bob", "--state", str(carol))
    assert (busy.returncode, busy.stderr.strip()) == (4, "lockstep: @bob is busy in another call")
    assert finish(first)[0] == 0 and finish(in_call)[0] == 0
    lines = lockstep_ok("receive", "--wait", "5", "--state", str(bob_laptop))
    assert "video call, declined from @carol" in lines and "voice call, busy from @carol" in lines

    # No call at all: `answer` gives up after --wait.
    nothing = lockstep("answer", "--wait", "0.5", "--state", str(bob))
    assert (nothing.returncode, nothing.stderr.strip()) == (6, "lockstep: no call came in 0.5 s")
    assert json.loads  # receive --json printed one object per call above


def test_ctrl_c_in_call_hangs_up_and_a_later_receive_turns_the_ringing_call_into_a_missed_one(
    server_process, tmp_path: Path
) -> None:
    """`receive` shows the call ringing; Ctrl-C stops `lockstep call`, which sends its hang-up first; the
    next `receive` fetches only that hang-up and matches it to the offer the earlier one showed. All of
    it long before the 45 s ring time, so the missed call comes from the hang-up, not a timer."""
    url = server_process.url
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    dialled_at = time.monotonic()
    dialling = start("call", "bob", "--state", str(alice))
    ringing: list[dict[str, object]] = []
    while not ringing:
        assert time.monotonic() - dialled_at < 30 and dialling.poll() is None, dialling.stderr
        ringing = [m for m in receive_json(bob, wait=3) if m["kind"] == "call"]
    assert [(m["state"], m["summary"]) for m in ringing] == [
        ("ringing-in", "incoming voice call from @alice")
    ]

    dialling.send_signal(signal.SIGINT)
    status, _out, err = finish(dialling)
    assert status == 130, err
    (ended,) = [m for m in receive_json(bob, wait=5) if m["kind"] == "call"]
    assert (ended["state"], ended["summary"]) == ("ended", "missed voice call from @alice")
    assert ended["call_id"] == ringing[0]["call_id"]
    assert time.monotonic() - dialled_at < 40
    # Shown once: a later receive has nothing more to say about it.
    assert [m for m in receive_json(bob, wait=1) if m["kind"] == "call"] == []
