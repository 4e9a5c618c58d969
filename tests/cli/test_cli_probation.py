"""Probation (linking.md §4.6) in the terminal, with real processes: a companion linked from 127.0.0.2 (a
network of its own for this server) is listed on probation by the primary. It receives new messages but
no history, a companion on the primary's network gets history at once, every other device prints the
banner, and `primary end-probation` sends the history it was waiting for."""

from __future__ import annotations

import json
from pathlib import Path

from lockstep.link.wording import probation_text
from lockstep_cli import (
    link_terminal_companion,
    link_terminal_companion_from_elsewhere,
    lockstep_ok,
    receive_json,
)
from lockstep_servers import ServerProcess
from other_network import OTHER_ADDRESS, from_other_network


def companions(primary: Path) -> tuple[dict[str, object], dict[str, object]]:
    """`primary devices --json`: the companion linked from the other network, then the other one."""
    listed = json.loads(lockstep_ok("primary", "devices", "--json", "--state", str(primary)))
    rows = sorted(
        (row for row in listed["devices"] if row["role"] == "companion"), key=lambda r: r["linked_at"]
    )
    assert len(rows) == 2
    return rows[0], rows[1]


def test_a_companion_from_another_network_waits_for_its_history(
    two_network_server: ServerProcess, tmp_path: Path
) -> None:
    url = two_network_server.url
    alice, bob, laptop, desk = (tmp_path / name for name in ("alice", "bob", "laptop", "desk"))
    for handle, state in (("alice", alice), ("bob", bob)):
        lockstep_ok("primary", "init", "--server", url, "--handle", handle, "--state", str(state))
    lockstep_ok("send", "--to", "alice", "said before any link", "--state", str(bob))
    assert [m["kind"] for m in receive_json(alice, wait=10)] == ["text"]

    with from_other_network(url) as relay:  # the laptop keeps talking to the server through it
        link_terminal_companion_from_elsewhere(relay, alice, laptop, tmp_path / "laptop.png")
        link_terminal_companion(url, alice, desk, tmp_path / "desk.png")  # the phone's own network
        away, home = companions(alice)
        laptop_id = str(away["device_id"])
        assert away["linked_from"] == OTHER_ADDRESS and isinstance(away["probation_until"], int)
        assert (home["linked_from"], home["probation_until"]) == (None, None)

        # The phone's next receive sends history to the desk only; the laptop still gets new messages.
        lockstep_ok("receive", "--state", str(alice))
        (desk_history,) = [m for m in receive_json(desk, wait=10) if m["kind"] == "history"]
        assert desk_history["body"]["count"] == 1
        lockstep_ok("send", "--to", "alice", "said after the link", "--state", str(bob))
        on_laptop = receive_json(laptop, wait=10)
        assert [m["body"] for m in on_laptop if m["kind"] == "text"] == [{"text": "said after the link"}]
        lockstep_ok("receive", "--state", str(alice))
        assert "history" not in [m["kind"] for m in receive_json(laptop)]

        # Every other device shows the banner; the laptop is told what it waits for.
        banner = f"New device linked less than an hour ago from {OTHER_ADDRESS} — not you?"
        listing = lockstep_ok("primary", "devices", "--state", str(alice))
        assert f"{banner} Unlink: lockstep primary unlink -- {laptop_id}" in listing
        assert "on probation until" in listing
        desk_status = lockstep_ok("companion", "status", "--state", str(desk))
        assert f"{banner} {probation_text('unlink_on_phone')}" in desk_status
        laptop_status = lockstep_ok("companion", "status", "--state", str(laptop))
        assert "New device linked" not in laptop_status and "until" in laptop_status

        # "Send history now": a list without the field, then the history transfer.
        ended = lockstep_ok("primary", "end-probation", "--state", str(alice), "--", laptop_id)
        assert "Its history was sent." in ended
        (history,) = [m for m in receive_json(laptop, wait=10) if m["kind"] == "history"]
        assert history["body"]["count"] >= 1  # at least what was said before any link
        assert companions(alice)[0]["probation_until"] is None
        assert "New device linked" not in lockstep_ok("companion", "status", "--state", str(desk))
