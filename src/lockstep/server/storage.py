"""Accounts and devices on SQLite: one connection on one thread, WAL mode (like datasette's writer).

The store keeps only public material: account and device public keys, the signed device list and
certificates as the primary produced them, and activity times. It is written through
:class:`DeviceListChange`, which is applied in one transaction guarded by the list's version, so two
concurrent updates cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lockstep.link.devices import DeviceEntry, DeviceList
from lockstep.link.envelope import Envelope
from lockstep.link.grant import AccountInfo
from lockstep.server.errors import (
    HandleTaken,
    MediaQuotaExceeded,
    StaleDeviceList,
    StorageFull,
    StrangerLimit,
    StrangerLimitDetails,
    Unavailable,
)

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

# Messaging (docs/protocol/messaging.md §8): public keys, ciphertext queues, group routing, media index.
# Every per-device row cascades from `devices`, so unlinking a device deletes its keys and its queue.
MESSAGING_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_keys (
    device_id TEXT PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
    bundle TEXT NOT NULL,               -- envelope signed by the device key (lockstep/device-keys/v1)
    fallback_key TEXT,                  -- signed one-time key JSON, handed out when none are left
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS one_time_keys (
    device_id TEXT NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
    key_id TEXT NOT NULL,
    one_time_key TEXT NOT NULL,         -- signed one-time key JSON
    PRIMARY KEY (device_id, key_id)
);
CREATE TABLE IF NOT EXISTS device_sequences (
    device_id TEXT PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS message_queue (
    device_id TEXT NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    sender_account TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    group_id TEXT,
    payload TEXT NOT NULL,              -- ciphertext and its routing fields, JSON; never plaintext
    server_time INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS message_queue_once
    ON message_queue(device_id, sender_device, message_id);
CREATE TABLE IF NOT EXISTS chat_groups (
    group_id TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL REFERENCES chat_groups(group_id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    role TEXT NOT NULL,                 -- admin | member
    added_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, account_id)
);
CREATE INDEX IF NOT EXISTS group_members_by_account ON group_members(account_id);
CREATE TABLE IF NOT EXISTS media (
    media_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
"""


# Abuse limits (SECURITY.md "Server, network and disk"): which conversations each account has taken
# part in, from routing metadata only, so what strangers queue to its devices can be bounded.
QUOTA_SCHEMA = """
CREATE TABLE IF NOT EXISTS known_peers (
    account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    peer_id TEXT NOT NULL,              -- an account this account sent to, or a group it sent into
    PRIMARY KEY (account_id, peer_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS media_by_device ON media(device_id, created_at);
"""

_FULL = {sqlite3.SQLITE_FULL}
_UNAVAILABLE = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _storage_error(error: Exception) -> Exception:
    """The typed error for a failed write: full (wait for space) or unavailable (fix the folder)."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
        if code in _FULL:
            return StorageFull(str(error))
        if code in _UNAVAILABLE:
            return Unavailable(str(error))
    elif isinstance(error, OSError):
        return (StorageFull if error.errno in _DISK_FULL_ERRNOS else Unavailable)(str(error))
    return error


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

    SQLite may already have rolled back by itself (SQLITE_FULL does), so ROLLBACK runs only if a
    transaction is still open: the original error, not "no transaction is active", reaches the caller.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@dataclass(frozen=True, slots=True)
class StrangerLimits:
    """What accounts a recipient never wrote to may keep queued for each of its devices (bytes)."""

    per_sender_bytes: int
    all_strangers_bytes: int


@dataclass(frozen=True, slots=True)
class MediaQuota:
    """What one device may upload: per rolling day, and kept on the server at once (bytes)."""

    daily_bytes: int
    stored_bytes: int


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
class QueuedMessage:
    """One ciphertext waiting in a device's queue."""

    seq: int
    message_id: str
    sender_account: str
    sender_device: str
    group_id: str | None
    payload: dict[str, Any]
    server_time: int

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "message",
            "seq": self.seq,
            "message_id": self.message_id,
            "sender": {"account_id": self.sender_account, "device_id": self.sender_device},
            "group_id": self.group_id,
            "payload": self.payload,
            "server_time": self.server_time,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """What to enqueue for one send: per-device payloads, in order, sharing one message id."""

    message_id: str
    sender_account: str
    sender_device: str
    group_id: str | None
    payloads: list[tuple[str, dict[str, Any]]]
    to_account: str | None = None
    """The recipient account of a direct send (None for groups)."""
    introduces: bool = True
    """Whether this send makes its conversation known to the sender (False for receipts)."""

    @property
    def peer(self) -> str:
        """The conversation as a recipient sees it: the group, or the sending account."""
        return self.group_id or self.sender_account


@dataclass(frozen=True, slots=True)
class ClaimedKeys:
    bundle: dict[str, Any] | None
    one_time_key: dict[str, Any] | None
    one_time_keys_left: int


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group_id: str
    created_by: str
    version: int
    members: dict[str, str]
    """account id → role (admin or member)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "created_by": self.created_by,
            "version": self.version,
            "members": [{"account_id": a, "role": r} for a, r in sorted(self.members.items())],
        }


@dataclass(frozen=True, slots=True)
class DeviceListChange:
    """Replace an account's list with ``new_list`` (version ``expected_version + 1``)."""

    account_id: str
    expected_version: int
    new_list: DeviceList
    envelope: Envelope
    added_certificate: Envelope | None = None


def _json(value: Any) -> str:
    """Strict JSON (RFC 8259): requests are parsed strictly, so NaN or Infinity here is a bug to refuse."""
    return json.dumps(value, allow_nan=False)


def _envelope_json(envelope: Envelope) -> str:
    return _json(envelope.to_json())


class SqliteStore:
    """The embedded default store. All calls run on one thread, so SQLite sees one writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            try:
                if self._db is None:
                    self._db = self._connect()
                return work(self._db)
            except (sqlite3.Error, OSError) as error:
                raise _storage_error(error) from error

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        db.executescript(MESSAGING_SCHEMA)
        db.executescript(QUOTA_SCHEMA)
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
                with _transaction(db):
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
                        (
                            primary.device_id,
                            info.account_id,
                            primary.device_key,
                            primary.role.value,
                            now,
                            now,
                        ),
                    )
            except sqlite3.IntegrityError as error:
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
            with _transaction(db):
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

    # --- messaging: keys ------------------------------------------------------------------------
    async def put_device_keys(
        self,
        device_id: str,
        bundle: dict[str, Any],
        fallback_key: dict[str, Any] | None,
        one_time_keys: list[dict[str, Any]],
        now: int,
    ) -> int:
        """Store a device's bundle (a changed identity drops its old one-time keys) and new keys."""

        def work(db: sqlite3.Connection) -> int:
            with _transaction(db):
                row = db.execute(
                    "SELECT bundle FROM device_keys WHERE device_id = ?", (device_id,)
                ).fetchone()
                bundle_json = _json(bundle)
                if row is not None and row[0] != bundle_json:
                    db.execute("DELETE FROM one_time_keys WHERE device_id = ?", (device_id,))
                db.execute(
                    "INSERT INTO device_keys VALUES (?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                    "bundle = excluded.bundle, fallback_key = coalesce(excluded.fallback_key, fallback_key), "
                    "updated_at = excluded.updated_at",
                    (device_id, bundle_json, _json(fallback_key) if fallback_key else None, now),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO one_time_keys VALUES (?, ?, ?)",
                    [(device_id, key["key_id"], _json(key)) for key in one_time_keys],
                )
                count: int = db.execute(
                    "SELECT count(*) FROM one_time_keys WHERE device_id = ?", (device_id,)
                ).fetchone()[0]
            return count

        return await self._run(work)

    async def device_bundles(self, device_ids: list[str]) -> dict[str, dict[str, Any]]:
        def work(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            marks = ",".join("?" * len(device_ids))
            rows = db.execute(
                f"SELECT device_id, bundle FROM device_keys WHERE device_id IN ({marks})",  # noqa: S608
                device_ids,
            )
            return {device_id: json.loads(bundle) for device_id, bundle in rows}

        return await self._run(work)

    async def claim_keys(
        self, device_ids: list[str], one_time_allowed: Collection[str] | None = None
    ) -> dict[str, ClaimedKeys]:
        """Take one one-time key per device (the fallback key when none are left).

        Devices not in ``one_time_allowed`` (when given) get the fallback key and keep their one-time
        keys: the caller used up its share of them (SECURITY.md, one-time key drain).
        """

        def work(db: sqlite3.Connection) -> dict[str, ClaimedKeys]:
            claimed: dict[str, ClaimedKeys] = {}
            with _transaction(db):
                for device_id in device_ids:
                    row = db.execute(
                        "SELECT bundle, fallback_key FROM device_keys WHERE device_id = ?", (device_id,)
                    ).fetchone()
                    if row is None:
                        claimed[device_id] = ClaimedKeys(None, None, 0)
                        continue
                    key = None
                    if one_time_allowed is None or device_id in one_time_allowed:
                        key = db.execute(
                            "DELETE FROM one_time_keys WHERE rowid = (SELECT rowid FROM one_time_keys "
                            "WHERE device_id = ? ORDER BY key_id LIMIT 1) RETURNING one_time_key",
                            (device_id,),
                        ).fetchone()
                    left = db.execute(
                        "SELECT count(*) FROM one_time_keys WHERE device_id = ?", (device_id,)
                    ).fetchone()[0]
                    one_time_key = key[0] if key is not None else row[1]
                    claimed[device_id] = ClaimedKeys(
                        json.loads(row[0]), json.loads(one_time_key) if one_time_key else None, left
                    )
            return claimed

        return await self._run(work)

    async def one_time_keys_left(self, device_id: str) -> int | None:
        """How many one-time keys a device has left; None if it never published keys."""

        def work(db: sqlite3.Connection) -> int | None:
            if db.execute("SELECT 1 FROM device_keys WHERE device_id = ?", (device_id,)).fetchone() is None:
                return None
            left: int = db.execute(
                "SELECT count(*) FROM one_time_keys WHERE device_id = ?", (device_id,)
            ).fetchone()[0]
            return left

        return await self._run(work)

    async def devices_of(self, account_ids: list[str], *, with_keys: bool = False) -> dict[str, set[str]]:
        """The devices of some accounts; ``with_keys``: only those that published E2E keys."""

        def work(db: sqlite3.Connection) -> dict[str, set[str]]:
            marks = ",".join("?" * len(account_ids))
            join = "JOIN device_keys USING (device_id)" if with_keys else ""
            found: dict[str, set[str]] = {account_id: set() for account_id in account_ids}
            for account_id, device_id in db.execute(
                f"SELECT account_id, device_id FROM devices {join} WHERE account_id IN ({marks})",  # noqa: S608
                account_ids,
            ):
                found[account_id].add(device_id)
            return found

        return await self._run(work)

    async def account_by_handle(self, handle: str) -> str | None:
        def work(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT account_id FROM accounts WHERE handle = ?", (handle,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(work)

    # --- messaging: queues ----------------------------------------------------------------------
    async def enqueue(
        self, delivery: Delivery, now: int, strangers: StrangerLimits | None = None
    ) -> list[tuple[str, QueuedMessage]]:
        """Append each payload to its device's queue with that device's next sequence number.

        A (device, sender device, message id) already queued is skipped, so a retried send is not
        delivered twice while it waits. With ``strangers``, the whole send is refused
        (:class:`StrangerLimit`) if it would queue more than they allow from accounts a recipient
        never wrote to; a send that ``introduces`` makes its conversation known to the sender.
        """

        def work(db: sqlite3.Connection) -> list[tuple[str, QueuedMessage]]:
            queued: list[tuple[str, QueuedMessage]] = []
            with _transaction(db):
                stranger_check = None if strangers is None else _StrangerCheck(db, delivery, strangers)
                for device_id, payload in delivery.payloads:
                    duplicate = db.execute(
                        "SELECT 1 FROM message_queue WHERE device_id = ? AND sender_device = ? "
                        "AND message_id = ?",
                        (device_id, delivery.sender_device, delivery.message_id),
                    ).fetchone()
                    if duplicate:
                        continue
                    encoded = _json(payload)
                    if stranger_check is not None:
                        stranger_check.admit(device_id, len(encoded))
                    (seq,) = db.execute(
                        "INSERT INTO device_sequences VALUES (?, 1) ON CONFLICT(device_id) "
                        "DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
                        (device_id,),
                    ).fetchone()
                    message = QueuedMessage(
                        seq,
                        delivery.message_id,
                        delivery.sender_account,
                        delivery.sender_device,
                        delivery.group_id,
                        payload,
                        now,
                    )
                    db.execute(
                        "INSERT INTO message_queue VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            device_id,
                            seq,
                            message.message_id,
                            message.sender_account,
                            message.sender_device,
                            message.group_id,
                            encoded,
                            now,
                        ),
                    )
                    queued.append((device_id, message))
                _introduce(db, delivery)
            return queued

        return await self._run(work)

    async def fetch_messages(self, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
        def work(db: sqlite3.Connection) -> list[QueuedMessage]:
            rows = db.execute(
                "SELECT seq, message_id, sender_account, sender_device, group_id, payload, server_time "
                "FROM message_queue WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (device_id, after, limit),
            )
            return [QueuedMessage(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

        return await self._run(work)

    async def ack_messages(self, device_id: str, up_to: int) -> int:
        def work(db: sqlite3.Connection) -> int:
            return db.execute(
                "DELETE FROM message_queue WHERE device_id = ? AND seq <= ?", (device_id, up_to)
            ).rowcount

        return await self._run(work)

    # --- messaging: groups ----------------------------------------------------------------------
    @staticmethod
    def _group(db: sqlite3.Connection, group_id: str) -> GroupRecord | None:
        row = db.execute(
            "SELECT created_by, version FROM chat_groups WHERE group_id = ?", (group_id,)
        ).fetchone()
        if row is None:
            return None
        members = dict(
            db.execute(
                "SELECT account_id, role FROM group_members WHERE group_id = ?", (group_id,)
            ).fetchall()
        )
        return GroupRecord(group_id, row[0], row[1], members)

    async def create_group(self, group_id: str, creator: str, members: list[str], now: int) -> GroupRecord:
        def work(db: sqlite3.Connection) -> GroupRecord:
            with _transaction(db):
                db.execute("INSERT INTO chat_groups VALUES (?, ?, ?, 1)", (group_id, creator, now))
                db.executemany(
                    "INSERT OR IGNORE INTO group_members VALUES (?, ?, ?, ?)",
                    [(group_id, creator, "admin", now)]
                    + [(group_id, member, "member", now) for member in members],
                )
                _introduce_group(db, group_id, creator, [creator, *members])
            record = self._group(db, group_id)
            assert record is not None
            return record

        return await self._run(work)

    async def group(self, group_id: str) -> GroupRecord | None:
        return await self._run(lambda db: self._group(db, group_id))

    async def groups_of(self, account_id: str) -> list[GroupRecord]:
        def work(db: sqlite3.Connection) -> list[GroupRecord]:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT group_id FROM group_members WHERE account_id = ? ORDER BY group_id", (account_id,)
                )
            ]
            return [g for g in (self._group(db, group_id) for group_id in ids) if g is not None]

        return await self._run(work)

    async def change_member(
        self, group_id: str, account_id: str, *, add: bool, now: int, by: str | None = None
    ) -> GroupRecord | None:
        """Add or remove one member and bump the group's version; None if nothing changed.

        ``by``: who adds; the group becomes known to the new member if it had written to them.
        """

        def work(db: sqlite3.Connection) -> GroupRecord | None:
            with _transaction(db):
                if add:
                    changed = db.execute(
                        "INSERT OR IGNORE INTO group_members VALUES (?, ?, 'member', ?)",
                        (group_id, account_id, now),
                    ).rowcount
                else:
                    changed = db.execute(
                        "DELETE FROM group_members WHERE group_id = ? AND account_id = ?",
                        (group_id, account_id),
                    ).rowcount
                if changed:
                    db.execute("UPDATE chat_groups SET version = version + 1 WHERE group_id = ?", (group_id,))
                if changed and add and by is not None:
                    _introduce_group(db, group_id, by, [account_id])
            return self._group(db, group_id) if changed else None

        return await self._run(work)

    # --- messaging: media -----------------------------------------------------------------------
    async def add_media(
        self,
        media_id: str,
        device_id: str,
        size: int,
        sha256: bytes,
        now: int,
        quota: MediaQuota | None = None,
    ) -> None:
        """Index an uploaded blob; :class:`MediaQuotaExceeded` (nothing indexed) if over ``quota``."""

        def work(db: sqlite3.Connection) -> None:
            with _transaction(db):
                if quota is not None:
                    _media_usage(db, device_id, now).check(size, quota)
                db.execute(
                    "INSERT INTO media VALUES (?, ?, ?, ?, ?)", (media_id, device_id, size, sha256, now)
                )

        await self._run(work)

    async def media_usage(self, device_id: str, now: int) -> MediaUsage:
        return await self._run(lambda db: _media_usage(db, device_id, now))

    async def expire_media(self, created_before: int) -> list[str]:
        """Forget blobs uploaded before a time; returns their ids so their files can be deleted."""

        def work(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("DELETE FROM media WHERE created_at < ? RETURNING media_id", (created_before,))
            return [str(row[0]) for row in rows.fetchall()]

        return await self._run(work)

    async def media_exists(self, media_id: str) -> bool:
        return await self._run(
            lambda db: (
                db.execute("SELECT 1 FROM media WHERE media_id = ?", (media_id,)).fetchone() is not None
            )
        )


# --- abuse limits: strangers' queued bytes, media quotas (SECURITY.md "Server, network and disk") ------
STRANGER_BYTES = """
SELECT coalesce(sum(length(q.payload)), 0),
       coalesce(sum(CASE WHEN q.sender_account = :sender THEN length(q.payload) ELSE 0 END), 0)
FROM message_queue q
WHERE q.device_id = :device AND q.sender_account != :owner
  AND NOT EXISTS (SELECT 1 FROM known_peers k
                  WHERE k.account_id = :owner AND k.peer_id = coalesce(q.group_id, q.sender_account))
"""
"""Bytes waiting in a device's queue from conversations its account never wrote to, and the share of
one sender among them (payloads are ASCII JSON: characters are bytes)."""


class _StrangerCheck:
    """Refuses a payload that would take a device past what strangers may queue for it."""

    def __init__(self, db: sqlite3.Connection, delivery: Delivery, limits: StrangerLimits) -> None:
        self._db, self._delivery, self._limits = db, delivery, limits
        device_ids = [device_id for device_id, _ in delivery.payloads]
        marks = ",".join("?" * len(device_ids))
        self._owners: dict[str, str] = dict(
            db.execute(
                f"SELECT device_id, account_id FROM devices WHERE device_id IN ({marks})",  # noqa: S608
                device_ids,
            ).fetchall()
        )
        self._known: dict[str, bool] = {delivery.sender_account: True}

    def _knows_peer(self, account_id: str) -> bool:
        known = self._known.get(account_id)
        if known is None:
            known = self._known[account_id] = (
                self._db.execute(
                    "SELECT 1 FROM known_peers WHERE account_id = ? AND peer_id = ?",
                    (account_id, self._delivery.peer),
                ).fetchone()
                is not None
            )
        return known

    def admit(self, device_id: str, size: int) -> None:
        owner = self._owners.get(device_id)
        if owner is None or self._knows_peer(owner):
            return
        all_bytes, sender_bytes = self._db.execute(
            STRANGER_BYTES, {"device": device_id, "owner": owner, "sender": self._delivery.sender_account}
        ).fetchone()
        for used, limit, sender_share in (
            (sender_bytes, self._limits.per_sender_bytes, True),
            (all_bytes, self._limits.all_strangers_bytes, False),
        ):
            if used + size > limit:
                raise StrangerLimit(StrangerLimitDetails(owner, sender_share, limit))


def _introduce(db: sqlite3.Connection, delivery: Delivery) -> None:
    """The sender has now written into this conversation (a direct chat or a group)."""
    peer = delivery.group_id or delivery.to_account
    if delivery.introduces and peer is not None and peer != delivery.sender_account:
        db.execute("INSERT OR IGNORE INTO known_peers VALUES (?, ?)", (delivery.sender_account, peer))


def _introduce_group(db: sqlite3.Connection, group_id: str, by: str, accounts: list[str]) -> None:
    """A group is known to the account that made it, and to members added by someone they wrote to."""
    db.executemany(
        "INSERT OR IGNORE INTO known_peers SELECT ?, ? WHERE ? = ? OR EXISTS "
        "(SELECT 1 FROM known_peers WHERE account_id = ? AND peer_id = ?)",
        [(account, group_id, account, by, account, by) for account in accounts],
    )


DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class MediaUsage:
    stored_bytes: int
    """Bytes of this device's blobs still kept."""
    last_day_bytes: int
    """Bytes it uploaded in the last 24 hours."""

    def plus(self, size: int) -> MediaUsage:
        return MediaUsage(self.stored_bytes + size, self.last_day_bytes + size)

    def check(self, size: int, quota: MediaQuota) -> None:
        """:class:`MediaQuotaExceeded` if ``size`` more bytes would pass the quota."""
        if self.last_day_bytes + size > quota.daily_bytes:
            raise MediaQuotaExceeded(daily=True, limit_bytes=quota.daily_bytes)
        if self.stored_bytes + size > quota.stored_bytes:
            raise MediaQuotaExceeded(daily=False, limit_bytes=quota.stored_bytes)


def _media_usage(db: sqlite3.Connection, device_id: str, now: int) -> MediaUsage:
    stored, last_day = db.execute(
        "SELECT coalesce(sum(size), 0), coalesce(sum(CASE WHEN created_at > ? THEN size ELSE 0 END), 0) "
        "FROM media WHERE device_id = ?",
        (now - DAY_MS, device_id),
    ).fetchone()
    return MediaUsage(stored, last_day)
