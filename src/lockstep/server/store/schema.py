"""The schema, as numbered migrations applied in order at start (and by ``lockstep db migrate``).

Each migration is written once in SQLite's DDL; :func:`postgres_ddl` gives PostgreSQL's (64-bit
integers, ``BYTEA``, no ``WITHOUT ROWID``). The ``schema_migrations`` table records what was applied.
A database whose schema is newer than this code knows is refused (:class:`SchemaTooNew`): an older
Lockstep must not write into tables it does not understand.

Rules for a new migration: append to :data:`MIGRATIONS`, never edit an applied one; keep it valid in
both engines; add its tables to :data:`TABLES` (``lockstep db copy`` copies those, in that order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lockstep.server.errors import StorageError
from lockstep.server.store.sql import Work, execute, query, query_one

# Version 1 is the schema from before migrations existed, so it is written to be a no-op on such a
# database (IF NOT EXISTS) and only stamps it as version 1.
ACCOUNTS_AND_DEVICES = """
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
MESSAGING = """
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
QUOTAS = """
CREATE TABLE IF NOT EXISTS known_peers (
    account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    peer_id TEXT NOT NULL,              -- an account this account sent to, or a group it sent into
    PRIMARY KEY (account_id, peer_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS media_by_device ON media(device_id, created_at);
"""


# Unlinked devices (docs/protocol/messaging.md §3.1): what a receiver needs to read a message a device
# sent just before it was unlinked. Public material only, kept FORMER_DEVICE_DAYS (store/accounts.py).
FORMER_DEVICES = """
CREATE TABLE IF NOT EXISTS former_devices (
    device_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    bundle TEXT NOT NULL,               -- its last E2E key bundle (envelope JSON)
    listed_in TEXT NOT NULL,            -- the last signed device list that had it (envelope JSON)
    removed_by TEXT NOT NULL,           -- the signed list, one version later, that removed it
    removed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS former_devices_by_account ON former_devices(account_id, removed_at);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    sqlite: str


MIGRATIONS = (
    Migration(
        1,
        "accounts, devices, keys, queues, groups, media, known peers",
        ACCOUNTS_AND_DEVICES + MESSAGING + QUOTAS,
    ),
    Migration(
        2, "former devices: unlinked devices' last keys and lists, for messages in flight", FORMER_DEVICES
    ),
)
LATEST = MIGRATIONS[-1].version

TABLES: dict[str, tuple[str, ...]] = {
    "accounts": (
        "account_id",
        "handle",
        "display_name",
        "account_key",
        "device_list",
        "device_list_version",
        "created_at",
    ),
    "devices": ("device_id", "account_id", "device_key", "role", "certificate", "linked_at", "last_active"),
    "device_keys": ("device_id", "bundle", "fallback_key", "updated_at"),
    "one_time_keys": ("device_id", "key_id", "one_time_key"),
    "device_sequences": ("device_id", "last_seq"),
    "message_queue": (
        "device_id",
        "seq",
        "message_id",
        "sender_account",
        "sender_device",
        "group_id",
        "payload",
        "server_time",
    ),
    "chat_groups": ("group_id", "created_by", "created_at", "version"),
    "group_members": ("group_id", "account_id", "role", "added_at"),
    "media": ("media_id", "device_id", "size", "sha256", "created_at"),
    "known_peers": ("account_id", "peer_id"),
    "former_devices": ("device_id", "account_id", "bundle", "listed_in", "removed_by", "removed_at"),
}
"""Every table with its columns, parents before children (the order ``lockstep db copy`` loads them)."""

MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version BIGINT PRIMARY KEY, summary TEXT NOT NULL, applied_at BIGINT NOT NULL)"
)
MIGRATION_LOCK = 0x6C6F636B73746570 >> 1  # "lockstep", as a positive 64-bit advisory lock key


class SchemaTooNew(StorageError):
    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the database's schema is version {found}, newer than the {known} this Lockstep knows: "
            "run the newer Lockstep (or restore a backup)"
        )


def postgres_ddl(sqlite_ddl: str) -> str:
    """SQLite DDL made PostgreSQL's: times in ms need 64 bits, blobs are BYTEA, no WITHOUT ROWID."""
    ddl = re.sub(r"\bINTEGER\b", "BIGINT", sqlite_ddl)
    ddl = re.sub(r"\bBLOB\b", "BYTEA", ddl)
    return re.sub(r"\)\s*WITHOUT ROWID", ")", ddl)


def statements(ddl: str) -> list[str]:
    """One DDL script as statements (no ``;`` inside any of ours), comments dropped."""
    without_comments = re.sub(r"--[^\n]*", "", ddl)
    return [part.strip() for part in without_comments.split(";") if part.strip()]


def schema_version() -> Work[int]:
    """The version applied (0 for an empty database)."""
    yield from execute(MIGRATIONS_TABLE)
    row = yield from query_one("SELECT coalesce(max(version), 0) FROM schema_migrations")
    assert row is not None
    return int(row[0])


def migrate(postgres: bool, now: int) -> Work[tuple[int, int]]:
    """Apply what is missing, in one transaction; returns (version before, version after).

    On PostgreSQL an advisory lock makes instances that start together migrate one after the other.
    """
    if postgres:
        yield from query("SELECT pg_advisory_xact_lock(?)", MIGRATION_LOCK)
    found = yield from schema_version()
    if found > LATEST:
        raise SchemaTooNew(found, LATEST)
    for migration in MIGRATIONS[found:]:
        ddl = postgres_ddl(migration.sqlite) if postgres else migration.sqlite
        for statement in statements(ddl):
            yield from execute(statement)
        yield from execute(
            "INSERT INTO schema_migrations (version, summary, applied_at) VALUES (?, ?, ?)",
            migration.version,
            migration.summary,
            now,
        )
    return found, LATEST
