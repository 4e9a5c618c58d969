"""Friction when the networks differ (linking.md §6.5), in the terminal: a companion that reaches the
server from 127.0.0.2, which the server is told is a network of its own. The primary shows the full
warning naming that address and links only with the number the companion shows after the scan;
`--yes` never skips it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lockstep.link.wording import code_refusal, companion_notice, relay_text
from lockstep_cli import LOCKSTEP, lockstep, lockstep_ok, number_shown, start_scan, start_terminal_companion
from lockstep_servers import ServerProcess
from other_network import OTHER_ADDRESS, from_other_network


@pytest.mark.parametrize("typed_right", [True, False])
def test_a_companion_on_another_network_needs_its_number(
    two_network_server: ServerProcess, tmp_path: Path, typed_right: bool
) -> None:
    primary, laptop, qr = tmp_path / "p", tmp_path / "c", tmp_path / "qr.png"
    lockstep_ok(
        "primary", "init", "--server", two_network_server.url, "--handle", "gail", "--state", str(primary)
    )
    with from_other_network(two_network_server.url) as relay:
        companion = start_terminal_companion(relay, laptop, qr)
        scan = start_scan(qr, primary)
        number = number_shown(companion)
        typed = number if typed_right else f"{(int(number) + 1) % 100:02d}"
        out, err = scan.communicate(typed + "\n", timeout=30)
        _, companion_err = companion.communicate(timeout=30)
    assert relay_text("warning", address=OTHER_ADDRESS) in out
    assert "a DIFFERENT network" in out
    if typed_right:
        assert scan.returncode == 0, err
        assert "Linked " in out
        assert companion.returncode == 0, companion_err
    else:
        assert scan.returncode == 1
        assert code_refusal("wrong_number") in out
        assert companion.returncode != 0 and companion_notice("wrong_number") in companion_err
        assert not (laptop / "device.key").exists()


def test_no_number_no_link_even_with_yes(two_network_server: ServerProcess, tmp_path: Path) -> None:
    primary, laptop, qr = tmp_path / "p", tmp_path / "c", tmp_path / "qr.png"
    lockstep_ok(
        "primary", "init", "--server", two_network_server.url, "--handle", "hugo", "--state", str(primary)
    )
    with from_other_network(two_network_server.url) as relay:
        companion = start_terminal_companion(relay, laptop, qr)
        scan = subprocess.run(
            [LOCKSTEP, "primary", "scan", "--image", str(qr), "--yes", "--state", str(primary)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        companion.communicate(timeout=30)
    assert scan.returncode == 1 and code_refusal("wrong_number") in scan.stdout
    assert companion.returncode != 0
    devices = lockstep("primary", "devices", "--json", "--state", str(primary))
    assert '"role": "companion"' not in devices.stdout
