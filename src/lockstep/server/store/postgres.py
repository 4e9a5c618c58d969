"""PostgreSQL through asyncpg: a connection pool, transactions, retries, and "unavailable" on outage.

Operations run at READ COMMITTED; the SQL takes the row locks it needs (``FOR UPDATE``, upserts), so
concurrent writers on any number of instances wait for each other where it matters. If PostgreSQL
still reports a serialization failure or a deadlock, the operation runs again from the start.

A full disk on the database server is :class:`StorageFull`, as on SQLite. When the database cannot be
reached (refused, reset, shut down, timed out), the operation fails with :class:`Unavailable` and
nothing else happens: the pool drops broken connections and makes new ones on the next request, so
the server recovers by itself when PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import random
import re
from functools import lru_cache
from typing import Any, TypeVar

import asyncpg

from lockstep.server.errors import StorageFull, Unavailable
from lockstep.server.store.backend import redact
from lockstep.server.store.sql import Work, WorkFactory

T = TypeVar("T")

POOL_SIZE = 10
CONNECT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 30.0
ATTEMPTS = 5
"""Runs of one operation when PostgreSQL asks for a retry (serialization failure, deadlock)."""

UNREACHABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, out of memory, connections
)
CLIENT_STATE = (asyncpg.InterfaceError, asyncpg.InternalClientError)
"""What asyncpg raises when the connection under an operation went away; unavailable if it is closed."""
RETRY = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)


@lru_cache(maxsize=1024)
def postgres_text(text: str) -> str:
    """``?`` parameters numbered the PostgreSQL way (``$1``, ``$2``, …); our SQL has no ``?`` in literals."""
    numbers = iter(range(1, text.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(numbers)}", text)


async def drive(connection: Any, work: Work[T]) -> T:
    try:
        statement = next(work)
        while True:
            text = postgres_text(statement.text)
            if statement.returns_rows:
                result: object = [tuple(r) for r in await connection.fetch(text, *statement.args)]
            else:
                status: str = await connection.execute(text, *statement.args)
                result = int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0
            statement = work.send(result)
    except StopIteration as done:
        value: T = done.value
        return value


def connection_lost(connection: Any, error: BaseException) -> bool:
    """Whether ``error`` comes from the database going away under ``connection``: an unreachable-kind
    error anywhere in its chain (the transaction's exit replaces the original), or a connection that is
    closed — or already detached by the pool, which it does as soon as the connection terminates."""
    seen: BaseException | None = error
    for _ in range(16):  # a chain is short; the bound only guards against a cycle
        if seen is None:
            break
        if isinstance(seen, UNREACHABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:  # "released back to the pool": the proxy lost its connection
        return True


async def _keep_session(_connection: Any) -> None:
    """What a connection needs before going back to the pool: nothing. Operations leave no session
    state behind (no ``SET``, ``LISTEN``, cursors or session-level advisory locks: migrations lock per
    transaction), and asyncpg itself still rolls back a transaction left open. The default reset runs
    ``RESET ALL`` and the rest as one more round trip after every operation (docs/benchmarks.md)."""


class PostgresBackend:
    postgres = True

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: Any = None

    @property
    def display_url(self) -> str:
        return redact(self.url)

    async def open(self) -> None:
        # No connection floor (min_size=0): the pool connects on demand, so while PostgreSQL is down
        # nothing retries in the background, and requests alone find out (and get ``unavailable``).
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=0,
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=STATEMENT_TIMEOUT_S,
                reset=_keep_session,
            )
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT_S * 2):
                pass  # reachable, and these credentials are accepted: fail at start otherwise
        except UNREACHABLE as error:
            await self.close()
            raise Unavailable(f"cannot reach {self.display_url}: {error}") from error
        except asyncpg.PostgresError as error:  # e.g. no such database, authentication failed
            await self.close()
            raise Unavailable(f"{self.display_url}: {error}") from error

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def run(self, work: WorkFactory[T], *, atomic: bool) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._run_once(work, atomic)
            except RETRY:
                if attempt == ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 - jitter, not a secret
        raise AssertionError("unreachable")

    async def _run_once(self, work: WorkFactory[T], atomic: bool) -> T:
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT_S * 2) as connection:
                try:
                    if not atomic:
                        return await drive(connection, work())
                    async with connection.transaction():
                        return await drive(connection, work())
                except CLIENT_STATE as error:
                    # A connection cut mid-statement surfaces as a client-state error (from the
                    # statement, or from the transaction's exit hiding the cut), not as the cut itself.
                    if connection_lost(connection, error):
                        raise self._unavailable(error) from error
                    raise
        except asyncpg.exceptions.DiskFullError as error:  # nothing written; reads go on working
            raise StorageFull(f"PostgreSQL: {error}") from error
        except UNREACHABLE as error:
            raise self._unavailable(error) from error

    @staticmethod
    def _unavailable(error: Exception) -> Unavailable:
        return Unavailable(f"PostgreSQL is unavailable: {error}")  # the caller logs it, once
