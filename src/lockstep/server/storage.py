"""Accounts and devices on SQLite: one connection on one thread, WAL mode (like datasette's writer).

The store keeps only public material: account and device public keys, the signed device list and
certificates as the primary produced them, and activity times. It is written through
:class:`DeviceListChange`, which is applied in one transaction guarded by the list's version, so two
concurrent updates cannot both win.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lockstep.link.devices import DeviceEntry, DeviceList
from lockstep.link.envelope import Envelope
from lockstep.link.grant import AccountInfo
from lockstep.server.errors import HandleTaken, StaleDeviceList

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    handle TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    account_key BLOB NOT NULL,
    device_list TEXT NOT NULL,          -- the signed envelope, as JSON
    device_list_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    device_key BLOB NOT NULL,
    role TEXT NOT NULL,
    certificate TEXT,                   -- signed envelope as JSON; NULL for the primary
    linked_at INTEGER NOT NULL,
    last_active INTEGER
);
CREATE INDEX IF NOT EXISTS devices_by_account ON devices(account_id);
"""


@dataclass(frozen=True, slots=True)
class AccountRecord:
    info: AccountInfo
    device_list: Envelope
    device_list_version: int

    def devices(self) -> DeviceList:
        """The stored list; it was verified when stored, and is re-verified here for defence in depth."""
        return DeviceList.verify(self.device_list, self.info.account_key)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    account_id: str
    device_key: bytes
    role: str
    last_active: int | None


@dataclass(frozen=True, slots=True)
class DeviceListChange:
    """Replace an account's list with ``new_list`` (version ``expected_version + 1``)."""

    account_id: str
    expected_version: int
    new_list: DeviceList
    envelope: Envelope
    added_certificate: Envelope | None = None


def _envelope_json(envelope: Envelope) -> str:
    return json.dumps(envelope.to_json())


class SqliteStore:
    """The embedded default store. All calls run on one thread, so SQLite sees one writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                self._db = self._connect()
            return work(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        return db

    async def open(self) -> None:
        await self._run(lambda db: None)

    async def close(self) -> None:
        def close(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._run(close)
        self._executor.shutdown(wait=True)

    async def create_account(
        self, info: AccountInfo, envelope: Envelope, devices: DeviceList, now: int
    ) -> None:
        primary = devices.primary

        def work(db: sqlite3.Connection) -> None:
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        info.account_id,
                        info.handle,
                        info.display_name,
                        info.account_key,
                        _envelope_json(envelope),
                        devices.version,
                        now,
                    ),
                )
                db.execute(
                    "INSERT INTO devices VALUES (?, ?, ?, ?, NULL, ?, ?)",
                    (primary.device_id, info.account_id, primary.device_key, primary.role.value, now, now),
                )
                db.execute("COMMIT")
            except sqlite3.IntegrityError as error:
                db.execute("ROLLBACK")
                raise HandleTaken(info.handle) from error

        await self._run(work)

    async def account(self, account_id: str) -> AccountRecord | None:
        def work(db: sqlite3.Connection) -> AccountRecord | None:
            row = db.execute(
                "SELECT account_id, handle, display_name, account_key, device_list, device_list_version "
                "FROM accounts WHERE account_id = ?",
                (account_id,),
            ).fetchone()
            if row is None:
                return None
            info = AccountInfo(row[0], row[1], row[2], bytes(row[3]))
            return AccountRecord(info, Envelope.from_json(json.loads(row[4])), row[5])

        return await self._run(work)

    async def device(self, device_id: str) -> DeviceRecord | None:
        def work(db: sqlite3.Connection) -> DeviceRecord | None:
            row = db.execute(
                "SELECT device_id, account_id, device_key, role, last_active FROM devices "
                "WHERE device_id = ?",
                (device_id,),
            ).fetchone()
            return None if row is None else DeviceRecord(row[0], row[1], bytes(row[2]), row[3], row[4])

        return await self._run(work)

    async def last_active(self, account_id: str) -> dict[str, int | None]:
        def work(db: sqlite3.Connection) -> dict[str, int | None]:
            rows = db.execute(
                "SELECT device_id, last_active FROM devices WHERE account_id = ?", (account_id,)
            )
            return {device_id: last_active for device_id, last_active in rows}

        return await self._run(work)

    async def touch(self, device_id: str, now: int) -> None:
        await self._run(
            lambda db: db.execute("UPDATE devices SET last_active = ? WHERE device_id = ?", (now, device_id))
        )

    async def change_device_list(self, change: DeviceListChange, now: int) -> None:
        """Apply ``change`` atomically; :class:`StaleDeviceList` if another update got there first."""
        new_ids = {d.device_id for d in change.new_list.devices}

        def work(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                updated = db.execute(
                    "UPDATE accounts SET device_list = ?, device_list_version = ? "
                    "WHERE account_id = ? AND device_list_version = ?",
                    (
                        _envelope_json(change.envelope),
                        change.new_list.version,
                        change.account_id,
                        change.expected_version,
                    ),
                ).rowcount
                if updated != 1:
                    raise StaleDeviceList(change.account_id)
                stored = {
                    row[0]
                    for row in db.execute(
                        "SELECT device_id FROM devices WHERE account_id = ?", (change.account_id,)
                    )
                }
                for device_id in stored - new_ids:
                    db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
                for entry in change.new_list.devices:
                    if entry.device_id not in stored:
                        self._insert_device(db, change, entry, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(work)

    @staticmethod
    def _insert_device(
        db: sqlite3.Connection, change: DeviceListChange, entry: DeviceEntry, now: int
    ) -> None:
        certificate = _envelope_json(change.added_certificate) if change.added_certificate else None
        db.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.device_id, change.account_id, entry.device_key, entry.role.value, certificate, now, now),
        )
