"""A terminal primary made with `lockstep primary init --passphrase` (issue 12 item 3, linking.md §11.4):
its state folder is sealed, every command asks for the passphrase, a wrong one changes nothing, and
scanning, typed codes, unlinking and log-out-all work as before. Real processes, a real server; the
passphrase is given as scripts give it ($LOCKSTEP_PASSPHRASE)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from e2e_state import stored_olm_pickle, unsealed_values
from lockstep.client import vault
from lockstep.client.state import load_key, read_private
from lockstep_cli import (
    link_terminal_companion,
    lockstep,
    lockstep_ok,
    receive_json,
    start_code_companion,
)

PASSPHRASE = "correct horse battery staple"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time: what "changes nothing" is checked against."""
    files = (p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_a_sealed_primary_keeps_nothing_readable_and_links_and_unlinks_as_before(
    server_process, tmp_path: Path
) -> None:
    url, alice, bob = server_process.url, tmp_path / "alice", tmp_path / "bob"
    made = lockstep_ok(
        "primary",
        "init",
        "--server",
        url,
        "--handle",
        "alice",
        "--passphrase",
        "--state",
        str(alice),
        passphrase=PASSPHRASE,
    )
    assert "sealed" in made
    lockstep_ok("primary", "init", "--server", url, "--handle", "bob.builder", "--state", str(bob))

    to_alice, to_bob = f"for alice only {secrets.token_hex(8)}", f"for bob only {secrets.token_hex(8)}"
    lockstep_ok("send", "--to", "alice", to_alice, "--state", str(bob))
    got = lockstep_ok("receive", "--json", "--wait", "10", "--state", str(alice), passphrase=PASSPHRASE)
    assert to_alice in got
    lockstep_ok("send", "--to", "bob.builder", to_bob, "--state", str(alice), passphrase=PASSPHRASE)
    assert to_bob in [m["body"].get("text") for m in receive_json(bob, wait=10)]

    # Without it, or with a wrong one: refused in plain words, and not one byte of the folder changes.
    before = snapshot(alice)
    wrong = lockstep("primary", "devices", "--state", str(alice), passphrase=PASSPHRASE + "!")
    assert wrong.returncode != 0
    assert f"wrong passphrase for {alice}; nothing was changed" in wrong.stderr
    assert lockstep("receive", "--state", str(alice), passphrase="nope").returncode != 0
    missing = lockstep("primary", "devices", "--state", str(alice))
    assert missing.returncode != 0 and "LOCKSTEP_PASSPHRASE" in missing.stderr
    assert snapshot(alice) == before

    # Linking by a scanned and by a typed code, then unlink one and log out of the other.
    desk, laptop = tmp_path / "desk", tmp_path / "laptop"
    scanned = link_terminal_companion(url, alice, desk, tmp_path / "desk.png", passphrase=PASSPHRASE)
    assert "Linked " in scanned
    companion, code, _printed = start_code_companion(url, laptop)
    typed = lockstep("primary", "link-code", code, "--yes", "--state", str(alice), passphrase=PASSPHRASE)
    assert typed.returncode == 0, typed.stderr
    assert companion.communicate(timeout=30)[0].count("Linked to @alice") == 1
    listed = lockstep_ok("primary", "devices", "--json", "--state", str(alice), passphrase=PASSPHRASE)
    devices = json.loads(listed)["devices"]
    assert [d["role"] for d in devices] == ["primary", "companion", "companion"]
    desk_id = json.loads((desk / "state.json").read_text())["device_id"]  # a companion: not sealed
    lockstep_ok("primary", "unlink", "--state", str(alice), "--", desk_id, passphrase=PASSPHRASE)
    assert "wiped" in lockstep("companion", "status", "--state", str(desk)).stderr
    assert lockstep("companion", "status", "--state", str(laptop)).returncode == 0
    out = lockstep_ok("primary", "unlink", "--all", "--state", str(alice), passphrase=PASSPHRASE)
    assert "Logged out of 1 companion" in out
    assert "wiped" in lockstep("companion", "status", "--state", str(laptop)).stderr

    # What a thief copying the folder would look for: none of it is there, and every file is sealed.
    vault.unlock(alice, PASSPHRASE)  # this test process reads the secrets it then searches for
    olm_pickle = stored_olm_pickle(alice)
    needles = {
        "account key": load_key(alice / "account.key").private_bytes_raw(),
        "device key": load_key(alice / "device.key").private_bytes_raw(),
        "pickle key": read_private(alice / "pickle.key"),
        "olm pickle": olm_pickle[:64],
        "message to alice": to_alice.encode(),
        "message to bob": to_bob.encode(),
        "a contact's handle": b"bob.builder",
        "a PEM key": b"PRIVATE KEY",
    }
    vault.forget(alice)
    files = [p for p in alice.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"vault.json", "account.key", "device.key", "pickle.key", "e2e.db"}
    for path in files:
        data = path.read_bytes()
        hits = [what for what, needle in needles.items() if needle in data]
        assert not hits, (path.name, hits)
        if path.name not in ("vault.json", "e2e.lock", "e2e.db"):
            assert data.startswith(vault.MAGIC), path.name
    assert unsealed_values(alice) == []  # the database is SQLite's format, each value in it sealed
