"""A device's end-to-end state, beside its linking state (client/state.py): the model, and what a save
writes of it.

Files added to the state folder, all mode 0600::

    pickle.key    32 random bytes: the key vodozemac encrypts every pickle with
    e2e.db        the state, one row per item (client/e2edb.py): the Olm account and sessions, Megolm
                  sessions (vodozemac pickles under pickle.key), the last queue sequence handled, message
                  ids seen, known contacts and groups, the status of sent messages, every text and media
                  message (this device's own copy of its chats), the messages handled but not yet handed
                  to the application (``unreported``) and the requests sent but not answered (``in_flight``)
    e2e.db-wal, e2e.db-shm   SQLite's write-ahead log and its index
    e2e.lock      held while a process uses the state, so two commands never race on the ratchets

A state folder of an earlier version keeps it all in ``e2e.json``, rewritten whole on every save: it is
read once (client/e2emigrate.py), written into ``e2e.db`` in one durable transaction and then
overwritten and removed.

The ratchets move on every message, so the state is saved after each batch *before* it is acknowledged
to the server: a crash re-delivers, and duplicates are dropped by message id. What a batch brought is
saved in the same transaction as ``unreported`` and leaves it only once the application has it, so a
connection lost between the save and the acknowledgement never hides a message: the re-delivery is
dropped as a duplicate, and the saved copy is what the next receive shows.

A save writes only what changed since the last one: the Olm and Megolm sessions that moved (they say so,
:meth:`OlmDevice.take_changed`), the messages remembered or changed, the seen ids added, the items of
keyed sections that were added, replaced or removed (an item is replaced, never changed in place, except
a sent message's status, which :meth:`E2EStore.note_status` marks), and the small sections whose JSON
differs from what was last written. Only the newest :data:`MAX_HISTORY` messages are held in memory
(:attr:`E2EStore.history`); the rest are read from the database when asked for.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockstep.client.e2edb import DB_FILE, Change, E2EDatabase
from lockstep.client.e2emigrate import E2E_FILE, earlier_state
from lockstep.client.errors import StateError
from lockstep.client.state import overwrite_and_remove, read_private, wipe_folder, write_private
from lockstep.e2e.actions import TARGETED
from lockstep.e2e.dedup import SeenMessages
from lockstep.e2e.errors import E2EError
from lockstep.e2e.megolm import GroupSessions
from lockstep.e2e.olm import PICKLE_KEY_SIZE, OlmDevice
from lockstep.e2e.receipts import Position, Receipt
from lockstep.e2e.timeline import Shown, Timeline, forget_deleted

PICKLE_KEY_FILE = "pickle.key"
LOCK_FILE = "e2e.lock"
MAX_HISTORY = 1000
"""Messages held in memory (the newest), and sent messages whose status is kept."""
MAX_ACTIONS = 2000
MAX_OPEN_CALLS = 50
SEARCH_PAGE = 500
"""Messages a search reads from the database at a time."""
LOCK_TIMEOUT_S = 30.0

STATUS_ORDER = {"sent": 1, "delivered": 2, "read": 3}
TARGETED_KINDS = frozenset(kind.value for kind in TARGETED)


def position(record: dict[str, Any]) -> Position:
    """Where a history record is in its chat's order (time, then id), the order bundles are cut in
    (messaging.md §12.1): many messages of a burst share one millisecond."""
    return Position(int(record.get("ts") or 0), str(record.get("id") or ""))


def _storable(record: object) -> bool:
    """A history record the database can index: a string id and an integer time (or none)."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        return False
    ts = record.get("ts")
    return ts is None or (isinstance(ts, int) and not isinstance(ts, bool))


@dataclass(slots=True)
class _Written:
    """What the database holds, as far as a save needs to know to write only what changed."""

    kv: dict[str, bytes] = field(default_factory=dict)
    """Small section → its JSON as last written."""
    items: dict[str, dict[str, object]] = field(default_factory=dict)
    """Keyed section → key → the very object last written (items are replaced, not changed in place)."""
    touched: set[str] = field(default_factory=set)
    """Sent messages whose status changed in place since the last save."""
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Records remembered or changed since the last save (not yet in the database)."""
    everything: bool = True
    """Write it all (a new or migrated state, or after a save that failed)."""
    forgot: bool = False
    """A message's content was dropped (deleted for everyone) since the last save."""


@dataclass
class E2EStore:
    directory: Path
    pickle_key: bytes
    olm: OlmDevice
    groups: GroupSessions
    seen: SeenMessages = field(default_factory=SeenMessages)
    last_seq: int = 0
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """account id → {handle, display_name, key, device_list_version, devices: {device id: identity key}}."""
    handles: dict[str, str] = field(default_factory=dict)
    """handle → account id, pinned at first contact (a change is refused, like a safety-number change)."""
    group_names: dict[str, str] = field(default_factory=dict)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    """message id → {conversation, status, by: {account id: status}}, for ticks (the newest MAX_HISTORY)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """The newest :data:`MAX_HISTORY` messages, oldest first; all of them are in the database."""
    bundle: dict[str, Any] | None = None
    """This device's signed key bundle as published (kept, so re-publishing changes nothing)."""
    history_dropped: int = 0
    """Messages an earlier version dropped (it kept only 1,000): never transferable."""
    history_sent_to: list[str] = field(default_factory=list)
    """Primary only: companions that got a history bundle from this device."""
    history_note: str | None = None
    """Companion only: what the primary said about the history it sent (what was not transferred)."""
    unreported: list[dict[str, Any]] = field(default_factory=list)
    """Messages saved (and so acknowledgeable) but not yet handed to the application, oldest first."""
    actions: list[dict[str, Any]] = field(default_factory=list)
    """Reactions, edits and deletes as history records with ``server_time`` (messaging.md §15.3),
    whether or not their target is here yet; bounded by :data:`MAX_ACTIONS`."""
    open_calls: list[dict[str, Any]] = field(default_factory=list)
    """Calls ``lockstep receive`` showed that were not over yet (ringing, or on another device), with
    their signals, so a later receive can say how they ended (messaging.md §14.7); at most
    :data:`MAX_OPEN_CALLS`."""
    refused_members: dict[str, list[str]] = field(default_factory=dict)
    """group id → accounts this device refused as members: a device on probation added them (or made
    the group), linking.md §4.6. They get no group key from this device."""
    in_flight: dict[int, dict[str, Any]] = field(default_factory=dict)
    """``messages.send`` requests that left (saved first) and got no answer yet: resent as they are
    after a crash (messaging.md §11), and what to record once one is accepted (client/messaging/outbox.py)."""
    _db: E2EDatabase | None = field(default=None, repr=False)
    _written: _Written = field(default_factory=_Written, repr=False)

    # --- opening and saving ------------------------------------------------------------------------
    @classmethod
    def load_or_create(cls, directory: Path) -> E2EStore:
        """The folder's state: from ``e2e.db``, from an earlier version's ``e2e.json`` (converted in
        one transaction, then the file wiped), or new."""
        key_path, json_path = directory / PICKLE_KEY_FILE, directory / E2E_FILE
        if not key_path.is_file():
            if json_path.is_file() or (directory / DB_FILE).is_file():
                raise StateError(f"{directory} holds E2E state without {key_path}: it cannot be opened")
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(key_path, secrets.token_bytes(PICKLE_KEY_SIZE))
        key = read_private(key_path)
        if len(key) != PICKLE_KEY_SIZE:
            raise StateError(f"{key_path} is damaged")
        db = E2EDatabase.open(directory)
        try:
            if not db.is_new():
                store = cls._from_database(directory, key, db)
            elif json_path.is_file():
                fields = earlier_state(json_path, key)
                fields["history"] = sorted(filter(_storable, fields["history"]), key=position)
                store = cls(directory=directory, pickle_key=key, **fields)
            else:
                store = cls(
                    directory=directory, pickle_key=key, olm=OlmDevice.create(), groups=GroupSessions()
                )
            store._db = db
            if store._written.everything:
                # Durable: the JSON file is wiped next, and a power cut must not leave neither copy.
                store.save(durable=True)
        except BaseException:
            db.close()
            raise
        overwrite_and_remove(json_path)  # converted (now, or by a run that stopped before this)
        return store

    @classmethod
    def _from_database(cls, directory: Path, key: bytes, db: E2EDatabase) -> E2EStore:
        loaded = db.load()
        kv, rows = loaded.kv, loaded.rows
        try:
            olm = OlmDevice.from_pickle(
                {"account": kv["olm_account"], "counter": kv["olm_counter"], "sessions": rows.get("olm", {})},
                key,
            )
            groups = GroupSessions.from_pickle(
                {"outbound": rows.get("megolm_out", {}), "inbound": list(rows.get("megolm_in", {}).values())},
                key,
            )
            store = cls(
                directory=directory,
                pickle_key=key,
                olm=olm,
                groups=groups,
                seen=SeenMessages(loaded.seen),
                last_seq=int(kv["last_seq"]),
                contacts=dict(rows.get("contacts", {})),
                handles=dict(kv["handles"]),
                group_names=dict(kv["group_names"]),
                sent=dict(rows.get("sent", {})),
                history=db.newest_messages(MAX_HISTORY)[0],
                bundle=kv["bundle"],
                history_dropped=int(kv["history_dropped"]),
                history_sent_to=list(kv["history_sent_to"]),
                history_note=kv["history_note"],
                unreported=list(rows.get("unreported", {}).values()),
                actions=list(rows.get("actions", {}).values()),
                open_calls=list(kv["open_calls"]),
                refused_members=dict(kv["refused_members"]),
                in_flight={int(n): value for n, value in loaded.in_flight.items()},
            )
        except (KeyError, TypeError, ValueError, E2EError) as error:
            raise StateError(f"damaged E2E state {directory / DB_FILE}: {error}") from error
        written = store._written
        written.everything = False
        written.kv = {name: _encode(value) for name, value in store._small_sections().items()}
        written.items = {name: dict(items) for name, items in store._keyed_sections().items()}
        written.items["in_flight"] = {str(n): v for n, v in store.in_flight.items()}
        return store

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def rows_written(self) -> int:
        """Database rows this store inserted, changed or deleted since it opened (tests and bench/)."""
        return self._database().rows_written

    def _database(self) -> E2EDatabase:
        if self._db is None:
            raise StateError("the E2E state is closed")
        return self._db

    def _small_sections(self) -> dict[str, Any]:
        return {
            "version": 2,
            "last_seq": self.last_seq,
            "olm_counter": self.olm.counter,
            "handles": self.handles,
            "group_names": self.group_names,
            "bundle": self.bundle,
            "history_dropped": self.history_dropped,
            "history_sent_to": self.history_sent_to,
            "history_note": self.history_note,
            "open_calls": self.open_calls[-MAX_OPEN_CALLS:],
            "refused_members": self.refused_members,
        }

    def _keyed_sections(self) -> dict[str, dict[str, Any]]:
        return {
            "contacts": self.contacts,
            "sent": self.sent,
            "actions": {str(a.get("id")): a for a in self.actions},
            "unreported": {str(r.get("message_id")): r for r in self.unreported},
        }

    def save(self, *, durable: bool = False) -> None:
        """Write what changed since the last save, in one transaction. ``durable`` before something
        leaves the device (a request with the ratchet steps it used, keys to publish): then it is on
        disk, not only in the log the OS holds, when this returns (client/e2edb.py, "Durability")."""
        written = self._written
        try:
            self._database().write(self._change(), durable=durable)
        except BaseException as error:
            # The change was taken from the bookkeeping (sessions that moved, seen ids added, sections
            # diffed): whatever failed, it is not known to be on disk, so the next save writes it all.
            written.everything = True
            if isinstance(error, sqlite3.Error | OSError):
                where = self.directory / DB_FILE
                raise StateError(f"cannot save the E2E state in {where}: {error}") from error
            raise
        written.messages = {}
        written.everything = written.forgot = False

    def _change(self) -> Change:
        """What changed since the last save (all of it after a failed one), taken from the bookkeeping."""
        written = self._written
        change = Change(seen=self.seen.take_added(), seen_limit=self.seen.limit, forgets=written.forgot)
        if written.everything:
            change.replace_all, change.seen = True, self.seen.to_json()
            written.kv, written.items = {}, {}
            written.messages.update((r["id"], r) for r in self.history)
        self._changed_sessions(change, everything=written.everything)
        for name, value in self._small_sections().items():
            encoded = _encode(value)
            if written.kv.get(name) != encoded:
                change.kv[name], written.kv[name] = value, encoded
        for name, items in self._keyed_sections().items():
            fresh, gone = self._diff(name, items, written.touched if name == "sent" else set())
            if fresh:
                change.rows[name] = fresh
            if gone:
                change.gone[name] = gone
        written.touched = set()
        fresh, gone = self._diff("in_flight", {str(n): v for n, v in self.in_flight.items()}, set())
        change.in_flight = {int(n): v for n, v in fresh.items()}
        change.in_flight_done = [int(n) for n in gone]
        change.messages = list(written.messages.values())
        return change

    def _changed_sessions(self, change: Change, *, everything: bool) -> None:
        """The Olm and Megolm sessions that moved (all of them if ``everything``), pickled into ``change``."""
        key, olm, groups = self.pickle_key, self.olm.take_changed(), self.groups.take_changed()
        if everything:
            olm.account, olm.peers = True, set(self.olm.peers)
            groups.outbound, groups.inbound = set(self.groups.outbound), set(self.groups.inbound)
        if olm.account:
            change.kv["olm_account"] = self.olm.pickle_account(key)
        for peer in olm.peers:
            if sessions := self.olm.pickle_peer(peer, key):
                change.rows.setdefault("olm", {})[peer] = sessions
            else:
                change.gone.setdefault("olm", []).append(peer)
        for group_id in groups.outbound:
            if group_id in self.groups.outbound:
                outbound = self.groups.pickle_outbound(group_id, key)
                change.rows.setdefault("megolm_out", {})[group_id] = outbound
            else:
                change.gone.setdefault("megolm_out", []).append(group_id)
        for pair in groups.inbound:
            change.rows.setdefault("megolm_in", {})[" ".join(pair)] = self.groups.pickle_inbound(pair, key)

    def _diff(self, name: str, items: dict[str, Any], touched: set[str]) -> tuple[dict[str, Any], list[str]]:
        """A keyed section's items added or replaced since the last save (or ``touched``: changed in
        place), and the keys gone; what is current becomes what was written."""
        before = self._written.items.get(name, {})
        fresh = {k: v for k, v in items.items() if before.get(k) is not v or k in touched}
        gone = [k for k in before if k not in items]
        self._written.items[name] = dict(items)
        return fresh, gone

    # --- sent messages and receipts ----------------------------------------------------------------
    def record_sent(self, message_id: str, entry: dict[str, Any]) -> None:
        """Keep a sent message's status (the newest :data:`MAX_HISTORY`)."""
        self.sent[message_id] = entry
        while len(self.sent) > MAX_HISTORY:
            del self.sent[next(iter(self.sent))]

    def note_status(self, message_id: str, account_id: str, status: str) -> str | None:
        """Record a receipt; the message's status is the least advanced among recipients' accounts."""
        entry = self.sent.get(message_id)
        if entry is None:
            return None
        by: dict[str, str] = entry.setdefault("by", {})
        if STATUS_ORDER.get(status, 0) > STATUS_ORDER.get(by.get(account_id, "sent"), 0):
            by[account_id] = status
            self._written.touched.add(message_id)
        recipients = entry.get("recipients") or list(by)
        statuses = [by.get(a, "sent") for a in recipients]
        entry["status"] = min(statuses, key=lambda s: STATUS_ORDER[s]) if statuses else entry["status"]
        return str(entry["status"])

    def note_receipt(self, account_id: str, receipt: Receipt) -> None:
        """Record a receipt of either form (messaging.md §5.3) for the sent messages it covers."""
        for message_id in receipt.message_ids:
            self.note_status(message_id, account_id, receipt.status.value)
        if not receipt.marks:
            return
        for message_id, entry in self.sent.items():  # at most MAX_HISTORY
            position = Position(int(entry.get("ts") or 0), message_id)
            if any(mark.covers(str(entry.get("conversation")), position) for mark in receipt.marks):
                self.note_status(message_id, account_id, receipt.status.value)

    # --- messages ----------------------------------------------------------------------------------
    def has_message(self, message_id: str) -> bool:
        """Whether a text or media message with this id is in this device's history or was sent by it."""
        return (
            message_id in self.sent
            or message_id in self._written.messages
            or self._database().has_message(message_id)
        )

    def _known_ids(self, message_ids: set[str]) -> set[str]:
        """Those of ``message_ids`` :meth:`has_message` says yes to, with one query for the lot."""
        here = {i for i in message_ids if i in self.sent or i in self._written.messages}
        return here | self._database().stored_ids(message_ids - here)

    def remember(self, record: dict[str, Any]) -> None:
        if not _storable(record):
            return
        self.history.append(record)
        del self.history[:-MAX_HISTORY]
        self._written.messages[record["id"]] = record
        message_id = record.get("id")
        if any(a.get("kind") == "delete" and a["body"].get("target") == message_id for a in self.actions):
            self._forget_deleted([])  # its delete overtook it

    def merge_history(self, records: list[dict[str, Any]], actions: Sequence[object] = ()) -> int:
        """Add records from a history bundle that this device does not have; returns how many. Its
        reactions, edits and deletes join :attr:`actions` (§15.6)."""
        for action in actions:
            if isinstance(action, dict) and action.get("kind") in TARGETED_KINDS:
                self.keep_action(action, forget=False)
        storable = [record for record in records if _storable(record)]
        known = self._known_ids({record["id"] for record in storable})
        fresh: dict[str, dict[str, Any]] = {}
        for record in storable:
            if record["id"] not in fresh and record["id"] not in known:
                fresh[record["id"]] = record
        self._written.messages.update(fresh)
        self.history = sorted([*self.history, *fresh.values()], key=position)[-MAX_HISTORY:]
        self._forget_deleted(list(fresh.values()))
        return len(fresh)

    def newest_messages(
        self, limit: int, *, before: Position | None = None, since: int | None = None, counted: bool = True
    ) -> tuple[list[dict[str, Any]], int]:
        """The newest ``limit`` messages this device keeps (all of them, not only those in memory) before
        ``before`` in (time, id) order and not older than ``since``, oldest first; and how many match
        (0 unless ``counted``)."""
        db = self._database()
        end = None if before is None else (before.ts, before.message_id)
        stored, count = db.newest_messages(limit, before=end, since=since, counted=counted)

        def matches(record: dict[str, Any]) -> bool:
            at = position(record)
            return (before is None or at < before) and (since is None or at.ts >= since)

        unsaved = [r for r in self._written.messages.values() if matches(r)]
        if counted:
            stored_already = db.stored_ids({r["id"] for r in unsaved})
            count += sum(1 for r in unsaved if r["id"] not in stored_already)
        merged = {r["id"]: r for r in stored} | {r["id"]: r for r in unsaved}
        return sorted(merged.values(), key=position)[max(0, len(merged) - limit) :] if limit else [], count

    def message_count(self) -> int:
        """How many text and media messages this device keeps."""
        return self.newest_messages(0)[1]

    def oldest_position(self) -> Position | None:
        """Where the oldest message this device keeps is (None if it keeps none)."""
        candidates = [position(r) for r in self._written.messages.values()]
        stored = self._database().oldest_position()
        if stored is not None:
            candidates.append(Position(*stored))
        return min(candidates, default=None)

    def keep_action(self, record: dict[str, Any], *, forget: bool = True) -> None:
        """Keep a reaction, edit or delete (once per id); a delete that applies drops the target's
        content at once (§15.3)."""
        if any(r.get("id") == record.get("id") for r in self.actions):
            return
        self.actions.append(record)
        del self.actions[:-MAX_ACTIONS]
        if forget and record.get("kind") == "delete":
            target = record["body"].get("target") if isinstance(record.get("body"), dict) else None
            held = any(r.get("id") == target for r in self.history)
            stored = None if held or not isinstance(target, str) else self._database().message(target)
            self._forget_deleted([stored] if stored is not None else [])

    def _forget_deleted(self, also: list[dict[str, Any]]) -> None:
        """Apply deletes (timeline.forget_deleted) to the messages held and ``also``; the next save
        writes what changed."""
        records = {r["id"]: r for r in [*self.history, *also] if _storable(r)}
        for message_id in forget_deleted(list(records.values()), self.actions):
            self._written.messages[message_id] = records[message_id]
            self._written.forgot = True

    def timeline(self) -> Timeline:
        """What this device shows of the newest :data:`MAX_HISTORY` messages (held in memory), with
        every action applied."""
        return Timeline(self.history, self.actions)

    def search(self, query: str, limit: int) -> list[Shown]:
        """Every message this device keeps whose text, caption or file name as shown contains ``query``
        (messaging.md §15.7), newest first, at most ``limit``: read from the database
        :data:`SEARCH_PAGE` messages at a time, newest first, so a long history is never all in memory."""
        hits: list[Shown] = []
        before: Position | None = None
        while len(hits) < limit:
            page = self.newest_messages(SEARCH_PAGE, before=before, counted=False)[0]
            if not page:
                break
            hits += Timeline(page, self.actions).search(query, limit - len(hits))
            before = position(page[0])
        return hits


def _encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def exists(directory: Path) -> bool:
    """Whether the folder holds E2E state (of this version or an earlier one)."""
    return (directory / DB_FILE).is_file() or (directory / E2E_FILE).is_file()


def wipe(directory: Path) -> None:
    """Forget the E2E state (an unlinked device), and with it everything else the device kept."""
    wipe_folder(directory)


@contextlib.contextmanager
def locked(directory: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the state folder's E2E lock (another `lockstep send/receive` on it waits)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StateError(f"{directory} is in use by another lockstep command") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
