"""Two server instances writing at the same instant: the database, not a lock in one process, keeps
the device-list version guard and every "exactly once" property.

Each test opens two stores on one database (two connection pools, as two `lockstep serve` instances
have) and races them with many concurrent operations. On SQLite the same tests run too (one
writer at a time by construction); on PostgreSQL they exercise row locks and upserts.
"""

from __future__ import annotations

import asyncio

import pytest
from store_helpers import TestAccount, opened

from lockstep.server.errors import HandleTaken, StaleDeviceList
from lockstep.server.store import Delivery

pytestmark = pytest.mark.anyio
ROUNDS = 8


async def test_two_instances_approving_links_of_one_version_exactly_one_wins(database_url: str) -> None:
    async with opened(database_url, database_url) as (a, b):
        alice = TestAccount("alice")
        await alice.register(a)
        for round_ in range(ROUNDS):
            changes = [alice.linking(f"Laptop {round_}.{i}") for i in range(4)]
            stores = [a, b, a, b]
            results = await asyncio.gather(
                *(store.change_device_list(change, 2) for store, change in zip(stores, changes, strict=True)),
                return_exceptions=True,
            )
            winners = [change for change, result in zip(changes, results, strict=True) if result is None]
            assert len(winners) == 1, results
            assert all(isinstance(r, StaleDeviceList) for r in results if r is not None), results
            record = await b.account(alice.account_id)
            assert record is not None and record.devices() == winners[0].new_list
            stored = await a.devices_of([alice.account_id])
            assert stored[alice.account_id] == {d.device_id for d in winners[0].new_list.devices}
            # The next round builds on the winner, as a primary that refreshed would. Unlink it again
            # so the list never reaches the companion limit the API enforces.
            alice.devices = winners[0].new_list.without(winners[0].new_list.companions[0].device_id, 3)
            unlink = winners[0].new_list.version
            from lockstep.server.store import DeviceListChange

            await a.change_device_list(
                DeviceListChange(alice.account_id, unlink, alice.devices, alice.devices.sign(alice.key)), 3
            )


async def test_two_instances_registering_one_handle_create_one_account(database_url: str) -> None:
    async with opened(database_url, database_url) as (a, b):
        for round_ in range(ROUNDS):
            rivals = [TestAccount(f"handle{round_}") for _ in range(4)]
            results = await asyncio.gather(
                *(rival.register(store) for rival, store in zip(rivals, [a, b, a, b], strict=True)),
                return_exceptions=True,
            )
            assert results.count(None) == 1, results
            assert all(isinstance(r, HandleTaken) for r in results if r is not None), results
            winner = rivals[results.index(None)]
            assert await a.account_by_handle(f"handle{round_}") == winner.account_id
            # The losers left nothing behind: no account, no device.
            for loser in rivals:
                if loser is not winner:
                    assert await b.account(loser.account_id) is None
                    assert await b.device(loser.primary_id) is None


async def test_concurrent_sends_to_one_device_get_every_sequence_number_once(database_url: str) -> None:
    async with opened(database_url, database_url) as (a, b):
        alice, bob = TestAccount("alice"), TestAccount("bob")
        await alice.register(a)
        await bob.register(a)
        sends = [
            Delivery(f"m{i}", alice.account_id, alice.primary_id, None, [(bob.primary_id, {"n": i})])
            for i in range(40)
        ]
        await asyncio.gather(*(store.enqueue(d, 5) for d, store in zip(sends, [a, b] * 20, strict=True)))
        queued = await b.fetch_messages(bob.primary_id, 0, 100)
        assert [m.seq for m in queued] == list(range(1, 41))  # no number twice, no gap
        assert sorted(m.message_id for m in queued) == sorted(d.message_id for d in sends)


async def test_a_send_retried_on_two_instances_at_once_is_queued_once_per_device(database_url: str) -> None:
    async with opened(database_url, database_url) as (a, b):
        alice, bob, carol = TestAccount("alice"), TestAccount("bob"), TestAccount("carol")
        for account in (alice, bob, carol):
            await account.register(a)
        for round_ in range(ROUNDS):
            # The same message to two devices, offered by both instances four times over, with the
            # payload order reversed on one side (as a group send may list devices in any order).
            payloads = [(bob.primary_id, {"r": round_}), (carol.primary_id, {"r": round_})]
            forward = Delivery(f"retry{round_}", alice.account_id, alice.primary_id, None, payloads)
            backward = Delivery(f"retry{round_}", alice.account_id, alice.primary_id, None, payloads[::-1])
            results = await asyncio.gather(
                *(store.enqueue(d, 5) for store in (a, b) for d in (forward, backward, forward, backward))
            )
            assert sorted(device for result in results for device, _ in result) == sorted(
                [bob.primary_id, carol.primary_id]
            )
        for device in (bob.primary_id, carol.primary_id):
            queued = await a.fetch_messages(device, 0, 100)
            assert [m.message_id for m in queued] == [f"retry{r}" for r in range(ROUNDS)]
            assert [m.seq for m in queued] == list(range(1, ROUNDS + 1))


async def test_each_one_time_key_goes_to_one_claimer_only(database_url: str) -> None:
    async with opened(database_url, database_url) as (a, b):
        bob = TestAccount("bob")
        await bob.register(a)
        keys = [{"key_id": f"k{i:03}", "key": f"public-{i}"} for i in range(30)]
        fallback = {"key_id": "fallback", "key": "fallback"}
        assert await a.put_device_keys(bob.primary_id, {"bundle": 1}, fallback, keys, 1) == 30
        claims = await asyncio.gather(*(store.claim_keys([bob.primary_id]) for store in [a, b] * 20))
        handed = [claim[bob.primary_id].one_time_key for claim in claims]
        one_time = [key for key in handed if key != fallback]
        assert sorted(k["key_id"] for k in one_time) == [k["key_id"] for k in keys]  # each once
        assert handed.count(fallback) == 10  # the rest got the fallback key
        assert (await b.claim_keys([bob.primary_id]))[bob.primary_id].one_time_keys_left == 0


async def test_concurrent_member_changes_each_bump_the_group_version_once(database_url: str) -> None:
    async with opened(database_url, database_url) as (a, b):
        owner = TestAccount("owner")
        members = [TestAccount(f"member{i}") for i in range(6)]
        for account in (owner, *members):
            await account.register(a)
        await a.create_group("g1", owner.account_id, [], 1)
        changes = [
            store.change_member("g1", m.account_id, add=True, now=2)
            for m, store in zip(members + members, [a, b] * 6, strict=True)
        ]
        results = await asyncio.gather(*changes)
        changed = [r for r in results if r is not None]
        assert len(changed) == len(members)  # each member added once, the repeat changed nothing
        assert sorted(r.version for r in changed) == list(range(2, 2 + len(members)))
        group = await b.group("g1")
        assert group is not None and group.version == 1 + len(members)
        assert set(group.members) == {owner.account_id, *(m.account_id for m in members)}
