"""copy_database: every row, into an empty database only, in either direction between engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import TestAccount, opened

from lockstep.server.store import Delivery, sqlite_url
from lockstep.server.store.copy import TargetNotEmpty, copy_database, read_all

pytestmark = pytest.mark.anyio


async def test_rows_survive_a_round_trip_sqlite_postgresql_sqlite(postgres_url: str, tmp_path: Path) -> None:
    first, back = sqlite_url(tmp_path / "first.sqlite3"), sqlite_url(tmp_path / "back.sqlite3")
    async with opened(first, postgres_url, back) as (source, middle, last):
        alice, bob = TestAccount("alice"), TestAccount("bob")
        await alice.register(source)
        await bob.register(source)
        await source.change_device_list(alice.linking("Laptop"), 2)
        await source.put_device_keys(bob.primary_id, {"b": 1}, {"key_id": "f"}, [{"key_id": "k1"}], 3)
        await source.create_group("g", alice.account_id, [bob.account_id], 4)
        send = Delivery("m1", alice.account_id, alice.primary_id, None, [(bob.primary_id, {"c": "x"})])
        await source.enqueue(send, 5)
        await source.add_media("blob", bob.primary_id, 10, b"\x00" * 32, 6)

        counts = await copy_database(source, middle)
        assert counts["accounts"] == 2 and counts["devices"] == 3 and counts["message_queue"] == 1
        await copy_database(middle, last)
        original = await source.backend.run(read_all, atomic=True)
        assert await last.backend.run(read_all, atomic=True) == original
        # The numbering goes on where it was: the next message to bob is number 2.
        later = Delivery("m2", alice.account_id, alice.primary_id, None, [(bob.primary_id, {"c": "y"})])
        ((_, message),) = await middle.enqueue(later, 7)
        assert message.seq == 2

        with pytest.raises(TargetNotEmpty, match="already holds accounts"):
            await copy_database(source, middle)
