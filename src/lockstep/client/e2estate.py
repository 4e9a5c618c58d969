"""A device's end-to-end state on disk, beside its linking state (client/state.py).

Files added to the state folder, all mode 0600::

    pickle.key    32 random bytes: the key vodozemac encrypts every pickle with
    e2e.json      Olm account and sessions, Megolm sessions (vodozemac pickles under pickle.key), the
                  last queue sequence handled, message ids seen, known contacts and groups, the status
                  of sent messages, recent history (this device's own copy of its chats), and the
                  messages handled but not yet handed to the application (``unreported``)
    e2e.lock      held while a process uses the state, so two commands never race on the ratchets

The ratchets move on every message, so the state is saved after each batch *before* it is acknowledged
to the server: a crash re-delivers, and duplicates are dropped by message id. What a batch brought is
saved in the same write as ``unreported`` and leaves it only once the application has it, so a connection
lost between the save and the acknowledgement never hides a message: the re-delivery is dropped as a
duplicate, and the saved copy is what the next receive shows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockstep.client.errors import StateError
from lockstep.client.state import _write_private, read_private, wipe_folder
from lockstep.e2e.actions import TARGETED
from lockstep.e2e.dedup import SeenMessages
from lockstep.e2e.errors import E2EError
from lockstep.e2e.megolm import GroupSessions
from lockstep.e2e.olm import PICKLE_KEY_SIZE, OlmDevice
from lockstep.e2e.receipts import Position, Receipt
from lockstep.e2e.timeline import Timeline, forget_deleted

E2E_FILE = "e2e.json"
PICKLE_KEY_FILE = "pickle.key"
LOCK_FILE = "e2e.lock"
MAX_HISTORY = 1000
MAX_ACTIONS = 2000
MAX_OPEN_CALLS = 50
LOCK_TIMEOUT_S = 30.0

STATUS_ORDER = {"sent": 1, "delivered": 2, "read": 3}
TARGETED_KINDS = frozenset(kind.value for kind in TARGETED)


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
    """message id → {conversation, status, by: {account id: status}}, for ticks."""
    history: list[dict[str, Any]] = field(default_factory=list)
    bundle: dict[str, Any] | None = None
    """This device's signed key bundle as published (kept, so re-publishing changes nothing)."""
    history_dropped: int = 0
    """Messages that fell out of ``history`` (over :data:`MAX_HISTORY`): never transferable."""
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

    @classmethod
    def load_or_create(cls, directory: Path) -> E2EStore:
        key_path, path = directory / PICKLE_KEY_FILE, directory / E2E_FILE
        if not key_path.is_file():
            if path.is_file():
                raise StateError(f"{path} exists without {key_path}: the E2E state cannot be opened")
            key = secrets.token_bytes(PICKLE_KEY_SIZE)
            _write_private(key_path, key)
            return cls(directory, key, OlmDevice.create(), GroupSessions())
        key = read_private(key_path)
        if len(key) != PICKLE_KEY_SIZE:
            raise StateError(f"{key_path} is damaged")
        if not path.is_file():
            return cls(directory, key, OlmDevice.create(), GroupSessions())
        try:
            document = json.loads(read_private(path))
            return cls(
                directory,
                key,
                OlmDevice.from_pickle(document["olm"], key),
                GroupSessions.from_pickle(document["groups"], key),
                SeenMessages(document["seen"]),
                int(document["last_seq"]),
                document["contacts"],
                document["handles"],
                document["group_names"],
                document["sent"],
                document["history"],
                document["bundle"],
                int(document.get("history_dropped", 0)),
                list(document.get("history_sent_to", [])),
                document.get("history_note"),
                list(document.get("unreported", [])),
                list(document.get("actions", [])),
                list(document.get("open_calls", [])),
                dict(document.get("refused_members", {})),
            )
        except (OSError, ValueError, KeyError, TypeError, E2EError) as error:
            raise StateError(f"damaged E2E state {path}: {error}") from error

    def save(self) -> None:
        document = {
            "version": 1,
            "olm": self.olm.pickle(self.pickle_key),
            "groups": self.groups.pickle(self.pickle_key),
            "seen": self.seen.to_json(),
            "last_seq": self.last_seq,
            "contacts": self.contacts,
            "handles": self.handles,
            "group_names": self.group_names,
            "sent": dict(list(self.sent.items())[-MAX_HISTORY:]),
            "history": self.history[-MAX_HISTORY:],
            "bundle": self.bundle,
            "history_dropped": self.history_dropped,
            "history_sent_to": self.history_sent_to,
            "history_note": self.history_note,
            "unreported": self.unreported,
            "actions": self.actions[-MAX_ACTIONS:],
            "open_calls": self.open_calls[-MAX_OPEN_CALLS:],
            "refused_members": self.refused_members,
        }
        _write_private(self.directory / E2E_FILE, json.dumps(document).encode())

    def note_status(self, message_id: str, account_id: str, status: str) -> str | None:
        """Record a receipt; the message's status is the least advanced among recipients' accounts."""
        entry = self.sent.get(message_id)
        if entry is None:
            return None
        by: dict[str, str] = entry.setdefault("by", {})
        if STATUS_ORDER.get(status, 0) > STATUS_ORDER.get(by.get(account_id, "sent"), 0):
            by[account_id] = status
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
        for message_id, entry in self.sent.items():  # at most MAX_HISTORY once saved
            position = Position(int(entry.get("ts") or 0), message_id)
            if any(mark.covers(str(entry.get("conversation")), position) for mark in receipt.marks):
                self.note_status(message_id, account_id, receipt.status.value)

    def has_message(self, message_id: str) -> bool:
        """Whether a text or media message with this id is in this device's history or was sent by it."""
        return message_id in self.sent or any(r.get("id") == message_id for r in self.history)

    def remember(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        self.history_dropped += max(0, len(self.history) - MAX_HISTORY)
        del self.history[:-MAX_HISTORY]
        message_id = record.get("id")
        if any(a.get("kind") == "delete" and a["body"].get("target") == message_id for a in self.actions):
            forget_deleted(self.history, self.actions)  # its delete overtook it

    def merge_history(self, records: list[dict[str, Any]], actions: Sequence[object] = ()) -> int:
        """Add records from a history bundle that this device does not have; returns how many. Its
        reactions, edits and deletes join :attr:`actions` (§15.6)."""
        known = {r.get("id") for r in self.history}
        for action in actions:
            if isinstance(action, dict) and action.get("kind") in TARGETED_KINDS:
                self.keep_action(action, forget=False)
        fresh = [r for r in records if isinstance(r, dict) and r.get("id") not in known]
        self.history = sorted(self.history + fresh, key=lambda r: int(r.get("ts") or 0))[-MAX_HISTORY:]
        forget_deleted(self.history, self.actions)
        return len(fresh)

    def keep_action(self, record: dict[str, Any], *, forget: bool = True) -> None:
        """Keep a reaction, edit or delete (once per id); a delete that applies drops the target's
        content at once (§15.3)."""
        if any(r.get("id") == record.get("id") for r in self.actions):
            return
        self.actions.append(record)
        del self.actions[:-MAX_ACTIONS]
        if forget and record.get("kind") == "delete":
            forget_deleted(self.history, self.actions)

    def timeline(self) -> Timeline:
        """What this device shows: its history with every action applied."""
        return Timeline(self.history, self.actions)


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (atomically)."""
    _write_private(path, data)


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
