"""Last-active times (``Store.touch``): touches that arrive together are written a few statements at a
time, and each device keeps the latest time it was seen."""

from __future__ import annotations

import asyncio

import pytest
from store_helpers import CountingBackend, TestAccount, opened

from lockstep.server.store.sql import ROWS_PER_STATEMENT

pytestmark = pytest.mark.anyio


async def test_touches_arriving_together_are_one_statement_per_chunk_and_the_latest_time_wins(
    database_url: str,
) -> None:
    async with opened(database_url) as (store,):
        accounts = [TestAccount(f"member{i}") for i in range(ROWS_PER_STATEMENT + 40)]
        for account in accounts:
            await account.register(store)
        counter = CountingBackend(store)
        # Every device acknowledges a group message at once and is touched; two of them twice, on
        # another socket, with an older and a newer time.
        touches = [store.touch(a.primary_id, 1_000 + number) for number, a in enumerate(accounts)]
        await asyncio.gather(
            *touches, store.touch(accounts[0].primary_id, 5), store.touch(accounts[1].primary_id, 9_999)
        )
        assert len(counter.statements) == 2, counter.statements
        seen = [(await store.last_active(a.account_id))[a.primary_id] for a in accounts]
        assert seen[0] == 1_000 and seen[1] == 9_999
        assert seen[2:] == [1_000 + number for number in range(2, len(accounts))]
