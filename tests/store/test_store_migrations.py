"""Versioned schema migrations, `lockstep db migrate`, the refusal of a newer schema, and the one
transaction helper (an operation that fails leaves nothing behind and nothing open)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from store_helpers import TestAccount, opened

from lockstep.server.store import SchemaTooNew, Store, sqlite_url
from lockstep.server.store.schema import ACCOUNTS_AND_DEVICES, LATEST, MESSAGING
from lockstep.server.store.sql import Work, execute, query_one
from lockstep_cli import lockstep
from lockstep_servers import start_server

pytestmark = pytest.mark.anyio


async def test_a_new_database_gets_the_latest_schema_once(database_url: str) -> None:
    async with opened(database_url) as (store,):
        pass
    assert store.is_open is False
    async with opened(database_url) as (store,):
        await TestAccount("alice").register(store)
    again = Store.for_url(database_url)
    assert await again.open() == (LATEST, LATEST)  # nothing left to apply
    await again.close()


async def test_lockstep_db_migrate_reports_what_it_did(database_url: str) -> None:
    first = lockstep("db", "migrate", "--database", database_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(f"schema migrated from version 0 to {LATEST}")
    second = lockstep("db", "migrate", "--database", database_url)
    assert second.stdout.strip().endswith(f"schema is at version {LATEST}, nothing to do")


async def test_a_database_from_before_migrations_keeps_its_accounts(tmp_path: Path) -> None:
    # What Lockstep wrote before versioned migrations: the same tables, no schema_migrations.
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(ACCOUNTS_AND_DEVICES + MESSAGING)
    alice = TestAccount("alice")
    async with opened(sqlite_url(path)) as (store,):
        await alice.register(store)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE schema_migrations")
        db.execute("DROP TABLE known_peers")  # added by the stranger limits, after the first release
    store = Store.for_url(sqlite_url(path))
    assert await store.open() == (0, LATEST)
    try:
        assert await store.account_by_handle("alice") == alice.account_id
        assert (await store.device(alice.primary_id)) is not None
    finally:
        await store.close()


def _stamp_future_version() -> Work[None]:
    yield from execute(
        "INSERT INTO schema_migrations (version, summary, applied_at) VALUES (?, 'from the future', 0)",
        LATEST + 1,
    )


async def test_a_schema_newer_than_this_lockstep_is_refused_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    async with opened(database_url) as (store,):
        await store.backend.run(_stamp_future_version, atomic=True)
    with pytest.raises(SchemaTooNew, match=f"version {LATEST + 1}, newer than the {LATEST}"):
        await Store.for_url(database_url).open()
    migrate = lockstep("db", "migrate", "--database", database_url)
    assert migrate.returncode == 1
    with pytest.raises(RuntimeError) as refused:  # `lockstep serve` stops before it listens
        start_server(tmp_path / "data", tmp_path / "serve.log", "--database", database_url)
    for output in (migrate.stderr, str(refused.value).split("server exited: ", 1)[1]):
        assert output.startswith("lockstep: the database's schema is version"), output
        assert len(output.strip().splitlines()) == 1, output


def _insert_account(account: TestAccount) -> Work[None]:
    yield from execute(
        "INSERT INTO accounts (account_id, handle, display_name, account_key, device_list, "
        "device_list_version, created_at) VALUES (?, ?, ?, ?, '{}', 1, 1)",
        account.account_id,
        account.info.handle,
        account.info.display_name,
        account.info.account_key,
    )


def _fails_after_writing(account: TestAccount) -> Work[None]:
    yield from _insert_account(account)
    raise RuntimeError("a bug after the first write")


def _breaks_a_constraint_after_writing(account: TestAccount) -> Work[None]:
    yield from _insert_account(account)
    yield from execute(
        "INSERT INTO devices (device_id, account_id, device_key, role, linked_at) "
        "VALUES ('d', 'no such account', ?, 'primary', 1)",
        b"k",
    )


async def test_an_operation_that_fails_midway_leaves_nothing_and_no_open_transaction(
    database_url: str,
) -> None:
    async with opened(database_url) as (store,):
        ghost, other = TestAccount("ghost"), TestAccount("other")
        with pytest.raises(RuntimeError, match="a bug"):
            await store.backend.run(lambda: _fails_after_writing(ghost), atomic=True)
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            await store.backend.run(lambda: _breaks_a_constraint_after_writing(other), atomic=True)
        assert await store.account_by_handle("ghost") is None
        assert await store.account_by_handle("other") is None
        # The connection is usable, and outside any transaction: a write now commits for good.
        alice = TestAccount("alice")
        await alice.register(store)
        count = await store.backend.run(lambda: query_one("SELECT count(*) FROM accounts"), atomic=False)
        assert count == (1,)
    async with opened(database_url) as (reopened,):
        assert await reopened.account_by_handle("alice") == alice.account_id


async def test_a_pooled_postgresql_connection_goes_back_without_a_reset_round_trip(postgres_url: str) -> None:
    # asyncpg's default reset sends RESET ALL (and more) after every operation: a round trip each
    # time, for session state no operation sets.
    async with opened(postgres_url) as (store,):
        await TestAccount("alice").register(store)
        assert await store.account_by_handle("alice") is not None
        observer = await asyncpg.connect(postgres_url)
        try:
            pooled = await observer.fetch(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state = 'idle'"
            )
        finally:
            await observer.close()
    assert pooled, "the store's pooled connection is idle in the database"
    assert not [row["query"] for row in pooled if "RESET ALL" in row["query"]]
