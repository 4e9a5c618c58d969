"""SQLite runs on the event loop's thread and leaves checkpoints to a thread of its own
(store/sqlite.py): writes still reach the database file, soon, and all of them by closing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from store_helpers import TestAccount, opened

from lockstep.server.store import Delivery, sqlite_url
from lockstep.server.store.sqlite import CHECKPOINT_EVERY_S

pytestmark = pytest.mark.anyio


async def test_queued_copies_reach_the_database_file_by_a_checkpoint_soon_and_on_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lockstep.sqlite3"
    async with opened(sqlite_url(path)) as (store,):
        alice, bob = TestAccount("alice"), TestAccount("bob")
        await alice.register(store)
        await bob.register(store)
        await asyncio.sleep(3 * CHECKPOINT_EVERY_S)  # what set-up wrote is checkpointed by now
        marker = "m" * 40
        send = Delivery("first", alice.account_id, alice.primary_id, None, [(bob.primary_id, {"c": marker})])
        await store.enqueue(send, 2)
        wal = path.with_name(path.name + "-wal")
        assert marker.encode() in wal.read_bytes() and marker.encode() not in path.read_bytes()
        for _ in range(50):  # the serving connection does not checkpoint: the thread does, within seconds
            if marker.encode() in path.read_bytes():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("not checkpointed within 5 s")

        later = "l" * 40
        send = Delivery("second", alice.account_id, alice.primary_id, None, [(bob.primary_id, {"c": later})])
        await store.enqueue(send, 3)
    assert later.encode() in path.read_bytes()  # closing checkpointed the rest
    assert not wal.exists() or wal.stat().st_size == 0
