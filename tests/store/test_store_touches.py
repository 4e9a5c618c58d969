"""Last-active times (``Store.touch``): touches that arrive together are written a few statements at a
time, each device keeps the latest time it was seen, and on PostgreSQL their rows are locked in device
id order, as a device-list change locks them, so the two cannot deadlock."""

from __future__ import annotations

import asyncio

import asyncpg
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


async def test_touches_lock_devices_in_id_order_so_a_device_list_change_does_not_deadlock_them(
    postgres_url: str,
) -> None:
    async with opened(postgres_url) as (store,):
        accounts = sorted((TestAccount("first"), TestAccount("second")), key=lambda a: a.primary_id)
        low, high = (account.primary_id for account in accounts)
        for account in reversed(accounts):  # the table's own order is not the id order
            await account.register(store)
        counter = CountingBackend(store)
        # A device-list change (accounts.change_device_list) deletes devices in id order, in one
        # transaction: it holds the lower one while touches of both arrive, then wants the higher.
        change = await asyncpg.connect(postgres_url)
        try:
            async with change.transaction():
                await change.execute("UPDATE devices SET role = role WHERE device_id = $1", low)
                touches = asyncio.gather(store.touch(high, 7), store.touch(low, 7))
                for _ in range(500):  # until the touch waits for the lower device's row
                    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    if await change.fetchval(waiting):
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the touch never waited for the device-list change")
                await change.execute("UPDATE devices SET role = role WHERE device_id = $1", high)
            await touches
        finally:
            await change.close()
        assert len(counter.statements) == 1, counter.statements  # not run again after a deadlock
        assert [(await store.last_active(a.account_id))[a.primary_id] for a in accounts] == [7, 7]
