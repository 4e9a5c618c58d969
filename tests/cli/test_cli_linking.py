"""The CLI as scripts use it: real `lockstep` processes against a real server process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import segno

from lockstep.link.qr import LinkCode
from lockstep_cli import LOCKSTEP, lockstep, start_terminal_companion


def test_cli_primary_links_a_cli_companion_lists_and_unlinks_it(server_process, tmp_path: Path) -> None:
    url, primary, laptop, qr = server_process.url, tmp_path / "p", tmp_path / "c", tmp_path / "qr.png"
    init = lockstep(
        "primary", "init", "--server", url, "--handle", "carol", "--name", "Carol", "--state", str(primary)
    )
    assert init.returncode == 0, init.stderr
    assert "@carol" in init.stdout

    companion = start_terminal_companion(url, laptop, qr, quiet_qr=False)
    scan = lockstep("primary", "scan", "--image", str(qr), "--yes", "--state", str(primary))
    assert scan.returncode == 0, scan.stderr
    assert "Lockstep terminal" in scan.stdout and "same network" in scan.stdout
    assert "(as the computer describes itself)" in scan.stdout
    assert "address:  127.0.0.1, the server's own machine (as the server saw it)" in scan.stdout
    out, err = companion.communicate(timeout=20)
    assert companion.returncode == 0, err
    assert "Linked to @carol (Carol)" in out
    assert "\u2588" in out  # the QR was drawn in the terminal

    listing = json.loads(lockstep("primary", "devices", "--json", "--state", str(primary)).stdout)
    companions = [d for d in listing["devices"] if d["role"] == "companion"]
    assert listing["account"] == "carol" and len(companions) == 1

    assert lockstep("companion", "status", "--state", str(laptop)).returncode == 0
    # "-- ID", as `primary devices` prints it (a bare id works too, even one that begins with "-")
    unlink = lockstep("primary", "unlink", "--state", str(primary), "--", companions[0]["device_id"])
    assert unlink.returncode == 0, unlink.stderr
    status = lockstep("companion", "status", "--state", str(laptop))
    assert status.returncode != 0 and "unlinked" in status.stderr
    assert not (laptop / "device.key").exists()

    reused = lockstep("primary", "scan", "--image", str(qr), "--yes", "--state", str(primary))
    assert reused.returncode != 0 and "already used" in reused.stderr
    assert reused.stderr.count("\n") == 1  # one line, no traceback


def test_cli_refuses_a_code_for_another_server(server_process, tmp_path: Path) -> None:
    primary = tmp_path / "p"
    lockstep("primary", "init", "--server", server_process.url, "--handle", "dave", "--state", str(primary))
    foreign = LinkCode("https://lockstep-login.example", bytes(32), bytes(32), bytes(32), bytes(32)).to_text()
    image = tmp_path / "foreign.png"
    segno.make_qr(foreign).save(str(image), scale=6)
    scan = lockstep("primary", "scan", "--image", str(image), "--yes", "--state", str(primary))
    assert scan.returncode != 0
    assert "This code is not from your server" in scan.stderr


def test_cli_refuses_pictures_without_a_linking_code(server_process, tmp_path: Path) -> None:
    primary = tmp_path / "p"
    lockstep("primary", "init", "--server", server_process.url, "--handle", "erin", "--state", str(primary))
    image = tmp_path / "menu.png"
    segno.make_qr("https://restaurant.example/menu").save(str(image), scale=6)
    scan = lockstep("primary", "scan", "--image", str(image), "--yes", "--state", str(primary))
    assert scan.returncode != 0 and "not a Lockstep linking code" in scan.stderr
    blank = tmp_path / "blank.png"
    blank.write_bytes(b"not a picture")
    scan = lockstep("primary", "scan", "--image", str(blank), "--yes", "--state", str(primary))
    assert scan.returncode != 0 and "cannot read" in scan.stderr


def test_cli_without_yes_and_without_a_terminal_declines_safely(server_process, tmp_path: Path) -> None:
    url, primary, laptop, qr = server_process.url, tmp_path / "p", tmp_path / "c", tmp_path / "qr.png"
    lockstep("primary", "init", "--server", url, "--handle", "frank", "--state", str(primary))
    companion = start_terminal_companion(url, laptop, qr, quiet_qr=False)
    scan = subprocess.run(
        [LOCKSTEP, "primary", "scan", "--image", str(qr), "--state", str(primary)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    assert scan.returncode != 0 and "pass --yes" in scan.stderr
    companion.kill()
    companion.communicate()
    listing = json.loads(lockstep("primary", "devices", "--json", "--state", str(primary)).stdout)
    assert len(listing["devices"]) == 1


def test_handle_taken_is_a_clear_refusal(server_process, tmp_path: Path) -> None:
    args = ["primary", "init", "--server", server_process.url, "--handle", "gina"]
    assert lockstep(*args, "--state", str(tmp_path / "a")).returncode == 0
    again = lockstep(*args, "--state", str(tmp_path / "b"))
    assert again.returncode != 0 and "taken" in again.stderr
