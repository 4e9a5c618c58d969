"""The embedded engine: SQLite on one connection in one thread, WAL mode (like datasette's writer).

One thread means one writer: an atomic operation runs between ``BEGIN IMMEDIATE`` and ``COMMIT``
without any other statement in between, so the row locks the SQL spells out for PostgreSQL
(``FOR UPDATE``) are dropped here. A full disk is :class:`StorageFull`; a folder or file that cannot
be written (read-only, I/O error) is :class:`Unavailable`.
"""

from __future__ import annotations

import asyncio
import errno
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from lockstep.server.errors import StorageFull, Unavailable
from lockstep.server.store.backend import sqlite_url
from lockstep.server.store.sql import Work, WorkFactory

T = TypeVar("T")
FULL = {sqlite3.SQLITE_FULL}
UNWRITABLE = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
ROW_LOCK = re.compile(r"\s+FOR (NO KEY )?UPDATE(\s+SKIP LOCKED)?\b")


@lru_cache(maxsize=1024)
def sqlite_text(text: str) -> str:
    return ROW_LOCK.sub("", text)


def storage_error(error: sqlite3.Error | OSError) -> Exception:
    """The typed error for a failed write: full (wait for space) or unavailable (fix the folder)."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
        if code in FULL:
            return StorageFull(str(error))
        if code in UNWRITABLE:
            return Unavailable(str(error))
        return error
    return (StorageFull if error.errno in DISK_FULL_ERRNOS else Unavailable)(str(error))


def drive(db: sqlite3.Connection, work: Work[T]) -> T:
    """Run one operation's statements on ``db``, feeding each result back."""
    try:
        statement = next(work)
        while True:
            cursor = db.execute(sqlite_text(statement.text), statement.args)
            statement = work.send(cursor.fetchall() if statement.returns_rows else cursor.rowcount)
    except StopIteration as done:
        result: T = done.value
        return result


class SqliteBackend:
    postgres = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    @property
    def display_url(self) -> str:
        return sqlite_url(self.path)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            self._db = db
        return self._db

    async def _call(self, function: Callable[[], T]) -> T:
        def call() -> T:
            try:
                return function()
            except (sqlite3.Error, OSError) as error:
                raise storage_error(error) from error

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        await self._call(self._connection)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    async def run(self, work: WorkFactory[T], *, atomic: bool) -> T:
        def call() -> T:
            db = self._connection()
            if not atomic:
                return drive(db, work())
            db.execute("BEGIN IMMEDIATE")
            try:
                result = drive(db, work())
                db.execute("COMMIT")
                return result
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back by itself (SQLITE_FULL does)
                    db.execute("ROLLBACK")
                raise

        return await self._call(call)
