"""Queueing a send (``Store.send``): a few multi-row statements whatever the number of devices (members
who never wrote into the group included), and numbers without gaps when a retry reaches devices that
already hold the message. Acknowledgements arriving together are deleted a few statements at a time."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from store_helpers import CountingBackend, RefusingBackend, TestAccount, opened

from lockstep.server.errors import StrangerLimit
from lockstep.server.store import Audience, Conversation, Delivery, Store, StrangerLimits
from lockstep.server.store.queues import deleted_by_each
from lockstep.server.store.sql import ROWS_PER_STATEMENT, execute, json_text

pytestmark = pytest.mark.anyio
ROOMY = StrangerLimits(per_sender_bytes=1 << 20, all_strangers_bytes=1 << 20)


def to_every_device(message_id: str, sender: TestAccount, payload: dict[str, Any]) -> Any:
    """A plan that sends ``payload`` to every device of the conversation but the sender's."""

    def plan(audience: Audience | None) -> Delivery:
        assert audience is not None
        devices = sorted(set().union(*audience.devices.values()) - {sender.primary_id})
        group_id = "g" if len(audience.devices) > 2 else None
        to = None if group_id else next(a for a in audience.devices if a != sender.account_id)
        return Delivery(
            message_id, sender.account_id, sender.primary_id, group_id, [(d, payload) for d in devices], to
        )

    return plan


async def wrote_to(store: Store, account: TestAccount, peer: TestAccount) -> None:
    await store.backend.run(
        lambda: execute(
            "INSERT INTO known_peers (account_id, peer_id) VALUES (?, ?)", account.account_id, peer.account_id
        ),
        atomic=True,
    )


async def keyed(store: Store, *accounts: TestAccount) -> None:
    for account in accounts:
        await account.register(store)
        await store.put_device_keys(account.primary_id, {"bundle": 1}, None, [], 1)


async def test_a_send_is_three_statements_and_grows_only_by_chunks_of_devices(database_url: str) -> None:
    async with opened(database_url) as (store,):
        alice, bob = TestAccount("alice"), TestAccount("bob")
        await keyed(store, alice, bob)
        await store.change_device_list(bob.linking("Laptop"), 2)  # a companion without E2E keys
        members = [TestAccount(f"member{i}") for i in range(ROWS_PER_STATEMENT + 40)]
        await keyed(store, *members)
        for account in (*members, bob):  # each wrote to alice, so no stranger check applies to them
            await wrote_to(store, account, alice)
        await store.create_group("g", alice.account_id, [m.account_id for m in members], 3)
        counter = CountingBackend(store)

        direct = Conversation(alice.account_id, to_account=bob.account_id)
        _, queued = await store.send(direct, to_every_device("direct0000000001", alice, {"c": 1}), 4, ROOMY)
        assert [device for device, _ in queued] == [bob.primary_id]  # not the keyless laptop
        # The audience (devices, and who wrote into the chat), the numbers, the copies, and, the first
        # time alice writes to bob, the note that she did.
        assert len(counter.statements) == 4, counter.statements
        counter.statements.clear()
        await store.send(direct, to_every_device("direct0000000002", alice, {"c": 2}), 5, ROOMY)
        assert len(counter.statements) == 3, counter.statements

        counter.statements.clear()
        group = Conversation(alice.account_id, group_id="g")
        _, queued = await store.send(group, to_every_device("group00000000001", alice, {"m": 1}), 6, ROOMY)
        assert len(queued) == len(members)
        # Past ROWS_PER_STATEMENT devices, the upsert of numbers and the insert each take one more.
        assert len(counter.statements) == 3 + 2, counter.statements


async def large_group(store: Store) -> tuple[TestAccount, list[TestAccount], Conversation]:
    """Alice's group "g" of more members than one statement takes; none of them wrote into it."""
    alice = TestAccount("alice")
    members = [TestAccount(f"member{i}") for i in range(ROWS_PER_STATEMENT + 40)]
    await keyed(store, alice, *members)
    await store.create_group("g", alice.account_id, [m.account_id for m in members], 3)
    return alice, members, Conversation(alice.account_id, group_id="g")


async def test_members_who_never_wrote_are_checked_against_the_stranger_limits_by_chunks(
    database_url: str,
) -> None:
    """A large group's silent members are strangers to it (messaging.md §7.7): their queues are read
    a chunk of devices per statement, not one query per device, and the limits hold all the same."""
    async with opened(database_url) as (store,):
        alice, members, group = await large_group(store)
        payload = {"megolm": "x" * 200}
        two_and_a_half = 5 * len(json_text(payload)) // 2
        limits = StrangerLimits(per_sender_bytes=two_and_a_half, all_strangers_bytes=1 << 20)
        counter = CountingBackend(store)

        _, queued = await store.send(group, to_every_device("group00000000001", alice, payload), 4, limits)
        assert len(queued) == len(members)
        # The audience; then per chunk of devices: the numbers, which hold the message already (a
        # retry), the strangers' queued bytes, the copies.
        assert len(counter.statements) == 1 + 4 * 2, counter.statements
        await store.send(group, to_every_device("group00000000002", alice, payload), 5, limits)
        with pytest.raises(StrangerLimit) as refused:
            await store.send(group, to_every_device("group00000000003", alice, payload), 6, limits)
        first = min(members, key=lambda m: m.primary_id)
        assert refused.value.details.recipient == first.account_id and refused.value.details.sender_share
        # A retry of a message every device holds adds nothing, so it is not refused.
        _, queued = await store.send(group, to_every_device("group00000000002", alice, payload), 7, limits)
        assert queued == []
        for member in (members[0], members[-1]):
            held = await store.fetch_messages(member.primary_id, 0, 10)
            assert [m.message_id for m in held] == ["group00000000001", "group00000000002"]


async def test_a_retry_that_reaches_one_more_device_numbers_only_that_one(database_url: str) -> None:
    async with opened(database_url) as (store,):
        alice, bob, carol = TestAccount("alice"), TestAccount("bob"), TestAccount("carol")
        await keyed(store, alice, bob, carol)

        def send(message_id: str, *devices: str) -> Delivery:
            return Delivery(
                message_id,
                alice.account_id,
                alice.primary_id,
                None,
                [(d, {"id": message_id}) for d in devices],
            )

        await store.enqueue(send("first", bob.primary_id), 2)
        # The retry of "first" now also lists carol (whose queue was empty): bob already holds it.
        queued = await store.enqueue(send("first", carol.primary_id, bob.primary_id), 3)
        assert [(device, message.seq) for device, message in queued] == [(carol.primary_id, 1)]
        await store.enqueue(send("second", bob.primary_id, carol.primary_id), 4)
        for device in (bob.primary_id, carol.primary_id):
            held = await store.fetch_messages(device, 0, 10)
            assert [(m.seq, m.message_id) for m in held] == [(1, "first"), (2, "second")]  # no gap


async def test_acks_arriving_together_are_deleted_together_and_each_gets_its_own_count(
    database_url: str,
) -> None:
    async with opened(database_url) as (store,):
        alice, members, group = await large_group(store)
        for number in (1, 2, 3):
            await store.send(group, to_every_device(f"group0000000000{number}", alice, {"m": number}), 4)
        counter = CountingBackend(store)
        devices = sorted(m.primary_id for m in members)
        # Every device acknowledges its first two (as after a group message at scale), and the first
        # device, on a second socket, all three in the same turn: that one deletes only the third.
        acks = [store.ack_messages(device_id, 2) for device_id in devices]
        counts = await asyncio.gather(*acks, store.ack_messages(devices[0], 3))
        assert counts == [2] * len(devices) + [1]
        assert len(counter.statements) == 2, counter.statements  # ROWS_PER_STATEMENT acks a statement
        assert await store.fetch_messages(devices[0], 0, 10) == []
        (left,) = await store.fetch_messages(devices[-1], 0, 10)
        assert (left.seq, left.message_id) == (3, "group00000000003")


async def test_a_batch_of_acks_refused_part_way_deletes_nothing_so_every_count_stays_right(
    database_url: str,
) -> None:
    """A batch of more acks than one statement takes is one transaction: when the database refuses its
    second statement, PostgreSQL's retry runs all of it again (each ack still gets its count), and on
    SQLite every ack fails with nothing deleted (acking again gets the full counts)."""
    async with opened(database_url) as (store,):
        alice, members, group = await large_group(store)
        for number in (1, 2):
            await store.send(group, to_every_device(f"group0000000000{number}", alice, {"m": number}), 4)
        devices = sorted(m.primary_id for m in members)
        postgres = store.backend.postgres
        refused = asyncpg.exceptions.SerializationError if postgres else sqlite3.OperationalError
        RefusingBackend(store, "DELETE FROM message_queue", 2, refused("refused for the test"))
        first = await asyncio.gather(*(store.ack_messages(d, 2) for d in devices), return_exceptions=True)
        again = await asyncio.gather(*(store.ack_messages(d, 2) for d in devices))
        if postgres:
            assert first == [2] * len(devices)
            assert again == [0] * len(devices)
        else:
            assert all(isinstance(result, sqlite3.OperationalError) for result in first), first
            assert again == [2] * len(devices)
        assert [await store.fetch_messages(d, 0, 10) for d in (devices[0], devices[-1])] == [[], []]


@given(
    st.dictionaries(st.sampled_from("abcd"), st.sets(st.integers(1, 12), max_size=8)),
    st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 14)), max_size=12),
)
def test_a_batchs_deleted_rows_are_shared_out_as_if_its_acks_ran_one_by_one(
    queued: dict[str, set[int]], acks: list[tuple[str, int]]
) -> None:
    held = {device_id: set(seqs) for device_id, seqs in queued.items()}
    one_by_one = []
    for device_id, up_to in acks:
        gone = {seq for seq in held.get(device_id, set()) if seq <= up_to}
        held[device_id] = held.get(device_id, set()) - gone
        one_by_one.append(len(gone))
    deleted = [
        (device_id, seq)
        for device_id, seqs in queued.items()
        for seq in seqs
        if seq <= max((up_to for d, up_to in acks if d == device_id), default=-1)
    ]
    assert deleted_by_each(acks, deleted) == one_by_one
