"""The E2E state's database: ``e2e.db`` in the device's state folder, one SQLite file (stdlib sqlite3) with
its ``-wal`` and ``-shm`` beside it. All SQL is here; what the rows mean is client/e2estate.py's.

Tables::

    kv         name → value: small sections (queue position, bundle, group names, the Olm account, ...)
    rows       (section, key) → value: one row per item of a keyed section (the Olm sessions with one peer
               device, a Megolm inbound or outbound session, a contact, a sent message's status, an action,
               an unreported message); ``n`` keeps the order items were added in
    messages   id → ts, value: every text and media message the device keeps, indexed by (ts, id)
    seen       id → n: message ids handled, the newest SeenMessages.limit of them
    in_flight  n → value: ``messages.send`` requests that left and were not answered yet (messaging.md §11)

A save writes only what changed, in one transaction (:meth:`E2EDatabase.write`).

**Durability**: WAL mode. Every commit survives the process being killed (it is in the log, which the
OS holds), and the database stays whole through a power cut. A commit made *before something leaves
the device* — a ``messages.send`` with the ratchet steps it used, one-time keys about to be published —
is written with ``synchronous=FULL`` (:meth:`E2EDatabase.write` ``durable``): on disk, the log fsynced,
before the request goes. Otherwise a power cut could roll the ratchet back after its ciphertext left,
and the next message would reuse that message key (the same AES key and IV for another plaintext,
messaging.md §11) — a confidentiality failure, not only an undecryptable message. Other commits (a
received batch, before its acknowledgement) use ``NORMAL``, as Signal Desktop's database does: a power
cut may lose the last batches on this device (its other devices and the sender keep them), never its
sessions' consistency, and a receiving device does not pay an fsync (about 6 ms on this box's disk) per
batch. ``secure_delete`` zeroes what a delete or an update frees in the database file.

**Sealing**: in a folder sealed with a passphrase (client/vault.py) every value is AES-256-GCM under the
folder key, with the row's place (``e2e.db/<table>/<key>``) as additional data, so a value moved to
another row does not open; keys that say whom the device talks to (account ids, peers' identity keys,
device, session and group ids) are replaced by keyed pseudonyms (:meth:`FolderKey.pseudonym`). What
stays readable without the passphrase: message and seen ids (128 random bits) and message times, for
the index, as in the browser's store (messaging.md §11.1); the ``kv`` names and the ``rows`` section
names, and so the number of rows per section (contacts, peer devices with Olm sessions, Megolm
sessions, sent statuses, actions, unreported messages) and of requests in flight; the ``n`` columns
(the order rows were written in); every value's length; and, between two copies of the file, which
rows changed (a key's pseudonym does not change).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockstep.client import vault
from lockstep.client.errors import StateError

DB_FILE = "e2e.db"
DB_FILES = (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm", DB_FILE + "-journal")
"""The database and what SQLite keeps beside it: all hold secrets (client/state.py wipes them)."""
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    section TEXT NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (section, key)
);
CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, ts INTEGER NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (ts, id);
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_n ON seen (n);
CREATE TABLE IF NOT EXISTS in_flight (n INTEGER PRIMARY KEY, value BLOB NOT NULL);
"""


@dataclass(slots=True)
class Change:
    """What one save writes, in one transaction: only what changed since the last."""

    kv: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    """section → key → value, added or replaced (an item keeps its place in the section's order)."""
    gone: dict[str, list[str]] = field(default_factory=dict)
    """section → keys removed."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """History records (each with ``id`` and ``ts``), added or replaced."""
    seen: list[str] = field(default_factory=list)
    seen_limit: int = 0
    in_flight: dict[int, Any] = field(default_factory=dict)
    in_flight_done: list[int] = field(default_factory=list)
    replace_all: bool = False
    """Everything but the messages is in this change: what the tables held before goes."""
    forgets: bool = False
    """It drops content that must not stay on disk (a message deleted for everyone, §15.3): the log's
    older copies of those pages go too."""

    def __bool__(self) -> bool:
        parts = (self.kv, self.rows, self.gone, self.messages, self.seen, self.in_flight, self.in_flight_done)
        return self.replace_all or self.forgets or any(parts)


@dataclass(slots=True)
class Loaded:
    """Everything but the messages, as :meth:`E2EDatabase.load` read it; keyed sections in their order."""

    kv: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    seen: list[str]
    in_flight: dict[int, Any]


@dataclass(frozen=True, slots=True)
class Sealing:
    """How values and keys are kept: as they are, or sealed under the folder's key (see the module)."""

    key: vault.FolderKey | None

    def row_key(self, section: str, key: str) -> str:
        return key if self.key is None else self.key.pseudonym(f"{section}/{key}")

    def pack(self, place: str, value: Any) -> bytes:
        data = json.dumps(value, separators=(",", ":")).encode()
        return data if self.key is None else self.key.seal(f"{DB_FILE}/{place}", data)

    def unpack(self, place: str, blob: object) -> Any:
        """A stored value; StateError for anything that is not one (damaged, moved, or not sealed)."""
        if not isinstance(blob, bytes):
            raise StateError(f"{DB_FILE}: {place} is not a stored value")
        data = blob if self.key is None else self.key.open(f"{DB_FILE}/{place}", blob)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError) as error:
            raise StateError(f"{DB_FILE}: {place} is damaged") from error


def keyed(value: Any, place: str) -> tuple[str, Any]:
    """A keyed row's value, ``{"k": key, "v": value}`` (its key may be a pseudonym in the table)."""
    if not isinstance(value, dict) or not isinstance(value.get("k"), str) or "v" not in value:
        raise StateError(f"{DB_FILE}: {place} is damaged")
    return value["k"], value["v"]


class E2EDatabase:
    def __init__(self, connection: sqlite3.Connection, sealing: Sealing) -> None:
        self._db = connection
        self._sealing = sealing
        self._n = int(connection.execute("SELECT COALESCE(MAX(n), 0) FROM rows").fetchone()[0])
        self._seen_n = int(connection.execute("SELECT COALESCE(MAX(n), 0) FROM seen").fetchone()[0])

    @classmethod
    def open(cls, directory: Path) -> E2EDatabase:
        """Open (or make, mode 0600) the folder's database; FolderLocked if the folder is sealed and
        was not unlocked by this process."""
        path = directory / DB_FILE
        sealing = vault.key_for(path)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives -wal and -shm its mode
        try:
            # isolation_level=None: transactions are this module's own BEGIN/COMMIT. Not tied to the
            # opening thread: a store may be opened before the event loop's thread uses it (the
            # e2e.lock, not sqlite3, keeps one user at a time).
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # FULL for a durable write
            connection.execute("PRAGMA secure_delete=ON")
            connection.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise StateError(f"cannot open {path}: {error}") from error
        return cls(connection, Sealing(sealing[0] if sealing else None))

    def close(self) -> None:
        self._db.close()

    @property
    def rows_written(self) -> int:
        """Rows inserted, changed or deleted through this connection so far (what a save costs)."""
        return self._db.total_changes

    # --- reading ---------------------------------------------------------------------------------
    def is_new(self) -> bool:
        return self._db.execute("SELECT 1 FROM kv LIMIT 1").fetchone() is None

    def load(self) -> Loaded:
        unpack = self._sealing.unpack
        kv = {
            name: unpack(f"kv/{name}", value)
            for name, value in self._db.execute("SELECT name, value FROM kv")
        }
        rows: dict[str, dict[str, Any]] = {}
        for section, key, value in self._db.execute("SELECT section, key, value FROM rows ORDER BY n"):
            place = f"rows/{section}/{key}"
            original, item = keyed(unpack(place, value), place)
            rows.setdefault(section, {})[original] = item
        seen = [str(row[0]) for row in self._db.execute("SELECT id FROM seen ORDER BY n")]
        in_flight = {
            int(n): unpack(f"in_flight/{n}", value)
            for n, value in self._db.execute("SELECT n, value FROM in_flight ORDER BY n")
        }
        return Loaded(kv, rows, seen, in_flight)

    def _records(self, rows: Iterable[tuple[str, bytes]]) -> list[dict[str, Any]]:
        records = []
        for message_id, value in rows:
            record = self._sealing.unpack(f"messages/{message_id}", value)
            if not isinstance(record, dict) or record.get("id") != message_id:
                raise StateError(f"{DB_FILE}: message {message_id} is damaged")
            records.append(record)
        return records

    def has_message(self, message_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is not None

    def stored_ids(self, message_ids: Collection[str]) -> set[str]:
        """Those of ``message_ids`` stored here: one query per 500 (a history bundle holds up to 1,000)."""
        ids = list(message_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ", ".join("?" * len(part))
            rows = self._db.execute(f"SELECT id FROM messages WHERE id IN ({marks})", part)  # noqa: S608
            found.update(str(row[0]) for row in rows)
        return found

    def message(self, message_id: str) -> dict[str, Any] | None:
        found = self._records(self._db.execute("SELECT id, value FROM messages WHERE id = ?", (message_id,)))
        return found[0] if found else None

    def oldest_position(self) -> tuple[int, str] | None:
        """(ts, id) of the oldest message, read from the index alone."""
        row = self._db.execute("SELECT ts, id FROM messages ORDER BY ts, id LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def newest_messages(
        self,
        limit: int,
        *,
        before: tuple[int, str] | None = None,
        since: int | None = None,
        counted: bool = True,
    ) -> tuple[list[dict[str, Any]], int]:
        """The newest ``limit`` messages in (ts, id) order, oldest first, of those before the position
        ``before`` and at or after the time ``since``; and how many there are in all (0 unless
        ``counted``: a reader going page by page has no use for it)."""
        where, args = self._window(before, since)
        # ``where`` is made of this module's literal clauses; the values are bound parameters.
        query = f"SELECT id, value FROM messages{where} ORDER BY ts DESC, id DESC LIMIT ?"  # noqa: S608
        records = self._records(self._db.execute(query, (*args, limit)))
        if not counted:
            return records[::-1], 0
        (count,) = self._db.execute(f"SELECT COUNT(*) FROM messages{where}", args).fetchone()  # noqa: S608
        return records[::-1], int(count)

    @staticmethod
    def _window(before: tuple[int, str] | None, since: int | None) -> tuple[str, tuple[Any, ...]]:
        clauses: list[str] = []
        args: list[Any] = []
        if before is not None:
            clauses.append("(ts < ? OR (ts = ? AND id < ?))")
            args += [before[0], before[0], before[1]]
        if since is not None:
            clauses.append("ts >= ?")
            args.append(since)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)

    # --- writing ---------------------------------------------------------------------------------
    def write(self, change: Change, *, durable: bool = False) -> None:
        """Everything in ``change``, in one transaction (all or nothing); ``durable``: on disk, fsynced,
        when this returns (see the module: before anything leaves the device)."""
        if not change:
            return
        pack, row_key, db = self._sealing.pack, self._sealing.row_key, self._db
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        counters = self._n, self._seen_n  # as they were, if this transaction rolls back
        db.execute("BEGIN IMMEDIATE")
        try:
            if change.replace_all:
                for table in ("kv", "rows", "seen", "in_flight"):
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 (names from this tuple)
            for name, value in change.kv.items():
                db.execute(
                    "INSERT INTO kv VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, pack(f"kv/{name}", value)),
                )
            for section, items in change.rows.items():
                for key, value in items.items():
                    stored = row_key(section, key)
                    self._n += 1
                    db.execute(
                        "INSERT INTO rows VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (section, key) DO UPDATE SET value = excluded.value",
                        (section, stored, self._n, pack(f"rows/{section}/{stored}", {"k": key, "v": value})),
                    )
            for section, keys in change.gone.items():
                db.executemany(
                    "DELETE FROM rows WHERE section = ? AND key = ?",
                    [(section, row_key(section, k)) for k in keys],
                )
            db.executemany(
                "INSERT INTO messages VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET ts = excluded.ts, value = excluded.value",
                [(r["id"], int(r.get("ts") or 0), pack(f"messages/{r['id']}", r)) for r in change.messages],
            )
            if change.seen:
                first = self._seen_n + 1
                self._seen_n += len(change.seen)
                db.executemany(
                    "INSERT INTO seen VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET n = excluded.n",
                    [(message_id, first + i) for i, message_id in enumerate(change.seen)],
                )
                db.execute("DELETE FROM seen WHERE n <= ?", (self._seen_n - change.seen_limit,))
            for n, value in change.in_flight.items():
                db.execute(
                    "INSERT OR REPLACE INTO in_flight VALUES (?, ?)", (n, pack(f"in_flight/{n}", value))
                )
            db.executemany("DELETE FROM in_flight WHERE n = ?", [(n,) for n in change.in_flight_done])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._n, self._seen_n = counters
            raise
        if change.forgets:
            # secure_delete zeroed the old content in the database file; the write-ahead log still has
            # earlier images of its pages until it is copied back and emptied.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
