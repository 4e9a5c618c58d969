"""The server on a real small disk (tmpfs mounts, cleaned up afterwards): folders it cannot write stop
it before it says "running", and a full disk refuses only new data, damages nothing, and passes by
itself once space returns (SECURITY.md "Server, network and disk")."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_abuse import auth_fields, publish_keys, send_junk
from helpers_linking import primary
from helpers_messaging import messengers

from lockstep.client.connection import ServerConnection
from lockstep.client.errors import ServerRefused
from lockstep.client.primary import PrimarySession
from lockstep.server.settings import MIB
from lockstep_cli import LOCKSTEP, lockstep
from lockstep_servers import ServerProcess, start_server

pytestmark = pytest.mark.anyio


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mount_point``, unmounted afterwards; skips where mounting is impossible."""
    mount_point.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Write a filler file until the disk is full (or only ``leave`` bytes are free); returns it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as output:
        for _ in range(100_000):  # bounded: a few MB in 4 KiB steps
            try:
                output.write(b"\0" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                break
            stats = os.statvfs(folder)
            if leave and stats.f_bavail * stats.f_frsize < leave:
                break
    return filler


@contextlib.contextmanager
def running(data: Path, log: Path, reserve: int) -> Iterator[ServerProcess]:
    server = start_server(data, log, "--min-free-bytes", str(reserve))
    try:
        yield server
    finally:
        server.stop()


def serve_once(data: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``lockstep serve`` expected to refuse at once (a timeout means it started)."""
    return subprocess.run(
        [LOCKSTEP, "serve", "--host", "127.0.0.1", "--port", "0", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def http(method: str, url: str, token: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("content-type", ""), error.read()


def error_code(status_type_body: tuple[int, str, bytes]) -> tuple[int, str]:
    status, content_type, body = status_type_body
    assert content_type.startswith("application/json"), (status, content_type, body[:200])
    return status, json.loads(body)["error"]["code"]


def test_unusable_data_folders_stop_the_server_before_it_says_running(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "read-only", "1m", read_only=True) as read_only:
        refused = serve_once(read_only)
    assert refused.returncode != 0 and "running" not in refused.stdout
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"lockstep: the data folder {read_only} cannot be written: it is on a read-only file system"
    ]

    with tmpfs(tmp_path / "full", "1m") as full:
        (full / "lockstep.sqlite3").touch()
        fill(full)
        refused = serve_once(full)
        assert refused.returncode != 0 and "running" not in refused.stdout
        assert refused.stderr.startswith(
            f"lockstep: the data folder {full} cannot be written: its disk is full"
        )

    with tmpfs(tmp_path / "small", "4m") as small:
        refused = serve_once(small, {"LOCKSTEP_MIN_FREE_BYTES": str(8 * MIB)})
        assert refused.returncode != 0 and "running" not in refused.stdout
        assert "less than the 8.0 MiB Lockstep keeps in reserve (LOCKSTEP_MIN_FREE_BYTES)" in refused.stderr


async def test_a_full_or_read_only_media_folder_gives_json_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with (
        tmpfs(data / "media", "1m") as media,
        running(data, tmp_path / "server.log", reserve=0) as server,
        # (no reserve: the upload itself meets the full disk)
    ):
        async with primary(server.url, tmp_path / "alice", "alice") as alice:
            token = (await alice.connection.request("media.token"))["token"]
            upload = f"{server.url}/media"
            too_big = await asyncio.to_thread(http, "POST", upload, token, b"x" * (2 * MIB))
            assert error_code(too_big) == (507, "storage_full")
            assert not list(media.iterdir())  # the partial file is gone
            remount(media, "ro")
            read_only = await asyncio.to_thread(http, "POST", upload, token, b"x" * 1000)
            assert error_code(read_only) == (503, "unavailable")
            remount(media, "rw")
            status, _, _ = await asyncio.to_thread(http, "POST", upload, token, b"x" * 1000)
            assert status == 201
        assert "Traceback" not in (tmp_path / "server.log").read_text()


async def send_or_full(sender: PrimarySession, recipient: PrimarySession) -> str:
    try:
        await send_junk(sender, recipient, 8000)
    except ServerRefused as refusal:
        return refusal.code
    return "ok"


@pytest.mark.parametrize("reserve", [MIB, 0], ids=["reserve", "no-reserve"])
async def test_a_full_disk_keeps_sign_in_and_reads_refuses_writes_and_recovers(
    tmp_path: Path, reserve: int
) -> None:
    """With a reserve, new data is refused before the disk is full and acknowledgements still delete;
    without one, SQLite and the media folder meet the full disk themselves. Either way the answer is
    storage_full, never internal_error, and nothing stored before is damaged."""
    with (
        tmpfs(tmp_path / "disk", "8m") as disk,
        running(disk, tmp_path / "server.log", reserve) as server,
    ):
        url = server.url
        async with (
            primary(url, tmp_path / "alice", "alice") as alice,
            primary(url, tmp_path / "bob", "bob") as bob,
        ):
            await publish_keys(alice)
            await publish_keys(bob)
            await send_junk(alice, bob, 8)
            waiting = await send_junk(bob, alice, 1000)
            token = (await bob.connection.request("media.token"))["token"]
            status, _, body = await asyncio.to_thread(http, "POST", f"{url}/media", token, b"m" * 5000)
            assert status == 201
            media_id = json.loads(body)["media_id"]

            filler = fill(disk, leave=reserve // 2)

            # Signing in and reading work on the full disk.
            connection = await ServerConnection.open(url)
            try:
                await connection.request("auth", **auth_fields(alice.state, connection))
                fetched = await connection.request("messages.fetch")
                assert [m["message_id"] for m in fetched["messages"]] == [waiting["message_id"]]
                assert fetched["messages"][0]["payload"]["ciphertext"] == "A" * 1000
                download = await asyncio.to_thread(http, "GET", f"{url}/media/{media_id}", token)
                assert download[0] == 200 and download[2] == b"m" * 5000
            finally:
                await connection.close()

            # New data is refused with storage_full: messages, media, new accounts.
            outcomes: list[str] = []
            while outcomes.count("storage_full") < 3 and len(outcomes) < 300:
                outcomes.append(await send_or_full(bob, alice))
            assert outcomes.count("storage_full") == 3 and set(outcomes) <= {"ok", "storage_full"}
            upload = await asyncio.to_thread(http, "POST", f"{url}/media", token, b"m" * 300_000)
            assert error_code(upload) == (507, "storage_full")
            if reserve:
                assert outcomes == ["storage_full"] * 3  # refused before SQLite met the full disk
                with pytest.raises(ServerRefused) as caught:
                    async with primary(url, tmp_path / "carol", "carol"):
                        pass
                assert caught.value.code == "storage_full"
                queued = (await alice.connection.request("messages.fetch"))["messages"]
                acked = await alice.connection.request("messages.ack", up_to=queued[-1]["seq"])
                assert acked == {"deleted": len(queued)}  # the reserve keeps deleting possible

            # Space returns: writes work again without a restart, and what was stored is intact.
            filler.unlink()
            deadline = time.monotonic() + 10
            while (outcome := await send_or_full(bob, alice)) != "ok":
                assert outcome == "storage_full" and time.monotonic() < deadline, "writes did not resume"
                await asyncio.sleep(0.2)
            status, _, _ = await asyncio.to_thread(http, "POST", f"{url}/media", token, b"m" * 5000)
            assert status == 201
            download = await asyncio.to_thread(http, "GET", f"{url}/media/{media_id}", token)
            assert download[0] == 200 and download[2] == b"m" * 5000
            fetched = await alice.connection.request("messages.fetch", limit=500)
            assert fetched["messages"] and all(m["payload"]["ciphertext"] for m in fetched["messages"])

        database = f"file:{disk / 'lockstep.sqlite3'}?mode=ro"
        with contextlib.closing(sqlite3.connect(database, uri=True)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert "Traceback" not in (tmp_path / "server.log").read_text()


async def test_on_a_full_disk_the_terminal_receives_and_says_why_it_cannot_send(tmp_path: Path) -> None:
    with (
        tmpfs(tmp_path / "disk", "8m") as disk,
        running(disk, tmp_path / "server.log", MIB) as server,
    ):
        for handle in ("alice", "bob"):
            async with primary(server.url, tmp_path / handle, handle):
                pass
        async with messengers(tmp_path / "alice", tmp_path / "bob") as (_, bob):
            await bob.send("alice", "sent before the disk filled")
        fill(disk, leave=MIB // 2)

        received = lockstep("receive", "--state", str(tmp_path / "alice"), "--json")
        assert received.returncode == 0, received.stderr
        texts = [json.loads(line)["body"].get("text") for line in received.stdout.splitlines()]
        assert texts == ["sent before the disk filled"]
        refused = lockstep("send", "--state", str(tmp_path / "bob"), "--to", "alice", "one more")
        assert refused.returncode != 0
        assert refused.stderr.strip().splitlines()[-1] == (
            "lockstep: the server's disk is full, so nothing new can be saved now; try again later"
        )
