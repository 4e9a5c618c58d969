"""The embedded engine: SQLite on one connection, driven on the event loop's thread, WAL mode.

Operations run synchronously where they are awaited: one thread means one writer, so an atomic
operation runs between ``BEGIN IMMEDIATE`` and ``COMMIT`` without any other statement in between, and
the row locks the SQL spells out for PostgreSQL (``FOR UPDATE``) are dropped here. In WAL mode with
``synchronous=NORMAL`` a statement and its commit are library calls into the page cache, tens of
microseconds; handing each to a worker thread and back cost more CPU than the statements (a fifth of
the server's CPU per delivered message, docs/benchmarks.md). The one part that waits on the disk is
the checkpoint (copying the WAL into the database and syncing it), so the serving connection never
checkpoints by itself (``wal_autocheckpoint=0``): a second connection in a thread of its own does, a
``PASSIVE`` checkpoint that never blocks the writer, once a second after writes.

A full disk is :class:`StorageFull`; a folder or file that cannot be written (read-only, I/O error)
is :class:`Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
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

log = logging.getLogger(__name__)
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


CHECKPOINT_EVERY_S = 1.0
"""At most this long of writes waits in the WAL (a few MB at full speed) before it is checkpointed."""


class SqliteBackend:
    postgres = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._checkpoint_db: sqlite3.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._written = asyncio.Event()

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
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's thread does it
            self._db = db
        return self._db

    def _call(self, function: Callable[[], T]) -> T:
        try:
            return function()
        except (sqlite3.Error, OSError) as error:
            raise storage_error(error) from error

    async def open(self) -> None:
        self._call(self._connection)
        self._checkpoints = asyncio.create_task(self._checkpoint_after_writes(), name="sqlite-checkpoint")

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        if self._db is not None:
            self._db.close()  # the last connection to close checkpoints everything itself
            self._db = None
        await asyncio.get_running_loop().run_in_executor(self._checkpointer, self._close_checkpointer)
        self._checkpointer.shutdown(wait=True)

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

        try:
            return self._call(call)
        finally:
            self._written.set()  # a read costs the checkpointer one cheap look at an empty WAL

    # --- checkpoints, in a thread of their own ----------------------------------------------------
    async def _checkpoint_after_writes(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._written.wait()
            self._written.clear()
            try:
                await loop.run_in_executor(self._checkpointer, self._checkpoint)
            except (sqlite3.Error, OSError) as error:  # e.g. a full disk: the WAL waits for the next try
                log.warning("SQLite checkpoint failed: %s", error)
            await asyncio.sleep(CHECKPOINT_EVERY_S)

    def _checkpoint(self) -> None:
        if self._checkpoint_db is None:
            self._checkpoint_db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _close_checkpointer(self) -> None:
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
            self._checkpoint_db = None
