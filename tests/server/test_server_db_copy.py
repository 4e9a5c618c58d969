"""`lockstep db copy`: a SQLite server's accounts, linked devices, groups, queued messages and media,
copied to PostgreSQL; the clients then carry on against a PostgreSQL instance as if nothing happened.

Real `lockstep serve` processes (the same address before and after, as a move keeps the public
origin) and Python clients; the SQLite file is deleted after the copy, so the second server can only
be using PostgreSQL.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers_linking import link_one
from helpers_messaging import load, make_account, messengers, shown

from lockstep.client.messenger import Received
from lockstep.client.primary import PrimarySession
from lockstep.server.store import sqlite_url
from lockstep.server.store.schema import TABLES
from lockstep_cli import LOCKSTEP
from lockstep_servers import start_server, stored_bytes

pytestmark = pytest.mark.anyio


def texts(received: list[Received]) -> list[str]:
    return [m.text for m in received if m.kind == "text"]


async def test_a_sqlite_server_copied_to_postgresql_carries_on(postgres_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    sqlite = server = start_server(data, tmp_path / "sqlite.log")
    picture = tmp_path / "picture.png"
    picture.write_bytes(bytes(range(256)) * 300)
    try:
        alice = await make_account(server.url, tmp_path, "alice")
        bob = await make_account(server.url, tmp_path, "bob")
        carol = await make_account(server.url, tmp_path, "carol")
        async with messengers(alice.primary_dir, alice.companion_dir, carol.primary_dir) as (a, a2, c):
            group_id = await a.create_group("Climbing", ["bob", "carol"])
            await a.send("bob", "queued before the move")
            await a.send("bob", "a picture, queued", file=picture)
            await a.send("Climbing", "to the group, before the move")
            await a2.receive(wait=5, until=shown)  # alice's laptop keeps up; bob stays offline
            got = await c.receive(wait=5, until=shown)
            assert texts(got) == ["to the group, before the move"]
    finally:
        sqlite.stop()

    database = data / "lockstep.sqlite3"
    copy = subprocess.run(
        [LOCKSTEP, "db", "copy", "--from", sqlite_url(database), "--to", postgres_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert copy.returncode == 0, copy.stderr
    summary = copy.stdout.splitlines()[0].split(": ", 1)[1]
    counts = {table: int(count) for count, table in (part.split(" ") for part in summary.split(", "))}
    assert set(counts) == set(TABLES)
    assert counts["accounts"] == 3 and counts["devices"] == 6 and counts["chat_groups"] == 1
    assert counts["message_queue"] >= 6 and counts["media"] >= 1  # bob: two devices, three each
    for path in data.glob("lockstep.sqlite3*"):
        path.unlink()
    port = int(server.url.rsplit(":", 1)[1])
    server = start_server(data, tmp_path / "postgres.log", "--database", postgres_url, port=port)
    try:
        assert not database.exists()
        assert b"alice" in await stored_bytes(postgres_url)
        async with messengers(
            bob.primary_dir, bob.companion_dir, alice.primary_dir, alice.companion_dir, carol.companion_dir
        ) as (b, b2, a, a2, c2):
            # Bob's devices get what was queued for them, in order, the picture included.
            for device in (b, b2):
                got = await device.receive(
                    wait=10, until=lambda r: len(texts(r) + [m for m in r if m.file]) >= 3
                )
                assert texts(got) == ["queued before the move", "to the group, before the move"]
                (media,) = [m for m in got if m.kind == "media"]
                assert media.file is not None and media.file.read_bytes() == picture.read_bytes()
                assert device.store.group_names[group_id] == "Climbing"
            # Conversations go on: a reply, and the group, on the PostgreSQL instance.
            await b.send("alice", "got them all")
            for device in (a, a2):
                assert texts(await device.receive(wait=5, until=shown)) == ["got them all"]
            await b2.send(group_id, "the group still works")
            for device in (a, a2, c2):
                got = await device.receive(wait=5, until=lambda r: "the group still works" in texts(r))
                assert "the group still works" in texts(got)
        # The signed device list carries on from its version: the phone links another computer.
        phone = await PrimarySession.open(load(alice.primary_dir))
        try:
            before = phone.state.devices.version
            desk = await link_one(server.url, phone, tmp_path / "alice-desk", "Desk")
            await desk.close()
            assert (await phone.refresh())["device_list"] and phone.state.devices.version == before + 1
        finally:
            await phone.close()
    finally:
        server.stop()
