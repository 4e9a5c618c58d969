"""What the terminal says, checked as a person reads it (issue 13, point 9): sizes in one human format,
refusals that say what to do, device names that stay unique, no log noise without -v."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from lockstep.client.messenger import Messenger, new_message_id
from lockstep.client.state import DeviceState
from lockstep.link.encoding import b64u_encode
from lockstep_cli import link_terminal_companion, lockstep, lockstep_ok
from lockstep_servers import free_port


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith("lockstep: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_page_addresses_and_unreachable_servers(server_process, tmp_path: Path) -> None:
    # The address of the phone app's page names the same server: accepted, not a bare HTTP 403.
    lockstep_ok(
        "primary",
        "init",
        "--server",
        f"{server_process.url}/app",
        "--handle",
        "ivy",
        "--state",
        str(tmp_path / "a"),
    )
    assert json.loads((tmp_path / "a" / "state.json").read_text())["server_url"] == server_process.url
    # Nothing listening: one human reason, never a raw errno.
    closed = f"http://127.0.0.1:{free_port()}"
    refusal = one_line_refusal(lockstep("primary", "init", "--server", closed, "--handle", "ivy2"))
    assert "Errno" not in refusal and "nothing is listening" in refusal, refusal


def test_device_names_stay_unique_and_prefixes_say_their_minimum(server_process, tmp_path: Path) -> None:
    url, primary = server_process.url, tmp_path / "p"
    lockstep_ok("primary", "init", "--server", url, "--handle", "jon", "--state", str(primary))
    first = link_terminal_companion(url, primary, tmp_path / "c1", tmp_path / "c1.png")
    second = link_terminal_companion(url, primary, tmp_path / "c2", tmp_path / "c2.png")
    names = [
        d["name"]
        for d in json.loads(lockstep_ok("primary", "devices", "--json", "--state", str(primary)))["devices"]
        if d["role"] == "companion"
    ]
    assert len(set(names)) == 2 and names[1] == f"{names[0]} (2)", names
    assert names[1] in second and names[0] in first
    # Unlink by name works for both now.
    lockstep_ok("primary", "unlink", names[1], "--state", str(primary))
    short = one_line_refusal(lockstep("primary", "unlink", "ab", "--state", str(primary)))
    assert "at least 4 characters" in short, short


def send_undecryptable(state: Path, to_handle: str) -> None:
    """A message whose Olm ciphertext is garbage, from a real device of ``state``'s account."""

    async def send() -> None:
        async with Messenger.open(DeviceState.load(state, "primary")) as messenger:
            peer = await messenger.contact(handle=to_handle)
            payloads = [
                {
                    "device_id": device_id,
                    "type": "olm",
                    "olm_type": 1,
                    "sender_key": b64u_encode(messenger.store.olm.identity_key),
                    "ciphertext": b64u_encode(os.urandom(64)),
                }
                for device_id in peer.keys
            ]
            await messenger.session.connection.request(
                "messages.send", message_id=new_message_id(), to=peer.account.account_id, payloads=payloads
            )

    asyncio.run(send())


def test_receive_prints_no_logs_without_verbose_and_sizes_read_alike(server_process, tmp_path: Path) -> None:
    url, kim, lou = server_process.url, tmp_path / "kim", tmp_path / "lou"
    lockstep_ok("primary", "init", "--server", url, "--handle", "kim", "--state", str(kim))
    lockstep_ok("primary", "init", "--server", url, "--handle", "lou", "--state", str(lou))
    send_undecryptable(lou, "kim")
    quiet = lockstep("receive", "--state", str(kim))
    assert quiet.returncode == 0 and "could not be decrypted" in quiet.stdout
    assert quiet.stderr == "", quiet.stderr
    send_undecryptable(lou, "kim")
    verbose = lockstep("-v", "receive", "--state", str(kim))
    assert "could not be read" in verbose.stderr  # -v still shows what happened

    # Over the server's limit (100 MiB by default): said as the browser says it, "100 MB".
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as sparse:
        sparse.truncate(101 * 1024 * 1024)
    refusal = one_line_refusal(lockstep("send", "--to", "lou", "--file", str(huge), "--state", str(kim)))
    assert "up to 100 MB" in refusal and "104857600" not in refusal, refusal
