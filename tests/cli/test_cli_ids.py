"""Ids that begin with '-' on the command line (src/lockstep/cli/ids.py). Device, message and group ids
are base64url: 1 in 64 begins with '-', which argparse took for an option (and `-h…` for help)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.cli import build_parser
from lockstep_cli import link_terminal_companion, lockstep, lockstep_ok

# Every place a command takes an id: the words before it, and where the parser puts it.
ID_PLACES = [
    (["primary", "unlink"], "device"),
    (["primary", "end-probation"], "device"),
    (["primary", "rename"], "device"),
    (["react"], "message"),
    (["edit"], "message"),
    (["delete"], "message"),
    (["group", "add"], "group"),
    (["group", "remove"], "group"),
    (["send", "--reply-to"], "reply_to"),
    (["send", "--to"], "to"),
]
# What follows the id where the command needs more (a new name, the new text, a handle, the message).
AFTER = {"rename": ["Desk"], "edit": ["new text"], "add": ["bob"], "remove": ["bob"], "send": ["hi"]}

# Ids as the CLI prints them: 16 random bytes in base64url, here always beginning with '-'.
PARSER = build_parser()
dash_ids = st.binary(min_size=16, max_size=16).map(
    lambda raw: "-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")[1:]
)


@pytest.mark.parametrize(("words", "dest"), ID_PLACES, ids=[" ".join(w) for w, _ in ID_PLACES])
@given(value=dash_ids)
def test_an_id_beginning_with_dash_is_read_as_the_id_bare_and_after_double_dash(
    words: list[str], dest: str, value: str
) -> None:
    after = AFTER.get(words[-1], AFTER.get(words[0], []))
    bare = PARSER.parse_args([*words, value, *after, "--state", "/s"])
    assert getattr(bare, dest) == value and type(getattr(bare, dest)) is str and bare.state == "/s"
    if not words[-1].startswith("--"):  # after "--" every word is a value: options go first
        kept = PARSER.parse_args([*words, "--state", "/s", "--", value, *after])
        assert getattr(kept, dest) == value and kept.state == "/s"


def test_options_and_their_abbreviations_are_still_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert PARSER.parse_args(["primary", "unlink", "--al"]).all is True
    assert PARSER.parse_args(["primary", "unlink", "--st", "/s", "-Qx"]).state == "/s"
    assert PARSER.parse_args(["primary", "unlink", "--state=/s", "-Qx"]).device == "-Qx"
    with pytest.raises(SystemExit) as help_shown:
        PARSER.parse_args(["primary", "unlink", "-h"])
    assert help_shown.value.code == 0 and "DEVICE" in capsys.readouterr().out


# Words that begin with '-' but stand where no id goes: argparse's rule holds there, so each is an error
# (exit 2, nothing done) rather than a message text, a new name or a device called "--verbose".
NOT_IDS = [
    ["send", "--to", "@bob", "--verbose"],  # an option of the top-level parser, after the verb
    ["send", "--to", "@bob", "hi", "--bogus"],
    ["send", "--to", "@bob", "--bogus", "hi"],
    ["edit", "-Qx4mA1", "--verbsoe"],  # a typo where the new text goes
    ["react", "-Qx4mA1", "--rmove"],
    ["primary", "rename", "-Qx4mA1", "--nmae"],
    ["primary", "unlink", "--verbose"],  # at the id's place, but an option of a parent parser
    ["primary", "unlink", "-v"],
    ["group", "add", "family", "--bogus"],
]


@pytest.mark.parametrize("words", NOT_IDS, ids=[" ".join(w) for w in NOT_IDS])
def test_a_word_beginning_with_dash_away_from_an_ids_place_is_still_an_option(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        PARSER.parse_args(words)
    assert refused.value.code == 2
    assert "error: " in capsys.readouterr().err


def test_a_device_named_and_unlinked_by_a_word_beginning_with_dash_through_the_real_cli(
    server_process, tmp_path: Path
) -> None:
    """`-hQx-desk` would have been `-h` (the help, exit 0) before: here it names and unlinks a device. (A new
    name is not an id: one that begins with '-' goes after `--`, as a message text does.)"""
    url, primary, desk = server_process.url, tmp_path / "primary", tmp_path / "desk"
    lockstep_ok("primary", "init", "--server", url, "--handle", "erin", "--state", str(primary))
    link_terminal_companion(url, primary, desk, tmp_path / "qr.png")
    listing = json.loads(lockstep_ok("primary", "devices", "--json", "--state", str(primary)))
    (desk_id,) = [d["device_id"] for d in listing["devices"] if d["role"] == "companion"]

    renamed = lockstep_ok("primary", "rename", "--state", str(primary), "--", desk_id, "-hQx-desk")
    assert renamed == f"Renamed {desk_id} to -hQx-desk.\n"
    listing = json.loads(lockstep_ok("primary", "devices", "--json", "--state", str(primary)))
    assert [d["name"] for d in listing["devices"] if d["role"] == "companion"] == ["-hQx-desk"]

    # A message id is read as one too: the refusal is about that message, not about the command line.
    unknown = lockstep("react", "-hQx4mNot_a_message_id", "👍", "--state", str(primary))
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "lockstep: no message beginning with '-hQx4mNot_a_message_id' on this device "
        "(`lockstep search` shows ids)\n"
    )

    # Where the text goes a word beginning with '-' is an option: the command is refused, nothing is sent.
    refused = lockstep("send", "--to", "@erin", "--verbose", "--state", str(primary))
    assert refused.returncode == 2 and "unrecognized arguments: --verbose" in refused.stderr

    assert lockstep_ok("primary", "unlink", "-hQx-desk", "--state", str(primary)) == "Unlinked -hQx-desk.\n"
    status = lockstep("companion", "status", "--state", str(desk))
    assert status.returncode != 0 and "unlinked" in status.stderr
