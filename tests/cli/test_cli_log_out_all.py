"""Log out of all computers from the phone (issue 13): one signed device list removes every companion,
and each wipes everything it kept."""

from __future__ import annotations

import json
from pathlib import Path

from lockstep_cli import link_terminal_companion, lockstep, lockstep_ok, receive_json


def test_primary_unlink_all_logs_every_companion_out_and_each_wipes(server_process, tmp_path: Path) -> None:
    url, alice, bob = server_process.url, tmp_path / "alice", tmp_path / "bob"
    companions = [tmp_path / "laptop", tmp_path / "desk"]
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    for companion in companions:
        link_terminal_companion(url, alice, companion, tmp_path / f"{companion.name}.png")
    receive_json(alice)  # history for both
    lockstep_ok("send", "--to", "alice", "both computers must forget this", "--state", str(bob))
    for companion in companions:
        assert "forget this" in lockstep_ok("receive", "--wait", "10", "--state", str(companion))
    version = json.loads(lockstep_ok("primary", "devices", "--json", "--state", str(alice)))

    out = lockstep_ok("primary", "unlink", "--all", "--state", str(alice))
    assert out.startswith("Logged out of 2 companions:")

    devices = json.loads(lockstep_ok("primary", "devices", "--json", "--state", str(alice)))
    assert [d["role"] for d in devices["devices"]] == ["primary"]
    assert devices["version"] == version["version"] + 1  # one signed list removed both
    for companion in companions:
        status = lockstep("companion", "status", "--state", str(companion))
        assert status.returncode != 0 and "wiped" in status.stderr
        left = [p for p in companion.rglob("*") if p.is_file()]
        assert left == [], [p.name for p in left]
    # The phone keeps its own history; a second --all has nothing to do.
    assert "No companion is linked." in lockstep_ok("primary", "unlink", "--all", "--state", str(alice))
    refused = lockstep("primary", "unlink", "--state", str(alice))
    assert refused.returncode != 0 and "--all" in refused.stderr
