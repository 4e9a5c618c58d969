"""A state folder of an earlier version (client/e2estate.py): its whole E2E state in ``e2e.json``,
rewritten on every save. It is read once, on the first open by this version, into the store's fields;
the store writes them into ``e2e.db`` durably and only then overwrites and removes the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lockstep.client.errors import StateError
from lockstep.client.state import read_private
from lockstep.e2e.dedup import SeenMessages
from lockstep.e2e.errors import E2EError
from lockstep.e2e.megolm import GroupSessions
from lockstep.e2e.olm import OlmDevice

E2E_FILE = "e2e.json"
"""Where earlier versions kept the whole state."""


def earlier_state(path: Path, pickle_key: bytes) -> dict[str, Any]:
    """An earlier version's ``e2e.json`` (plain, or sealed in a sealed folder) as the store's fields by
    name, its history as the file kept it (the store keeps what it can index, in order)."""
    try:
        document = json.loads(read_private(path))
        return {
            "olm": OlmDevice.from_pickle(document["olm"], pickle_key),
            "groups": GroupSessions.from_pickle(document["groups"], pickle_key),
            "seen": SeenMessages(document["seen"]),
            "last_seq": int(document["last_seq"]),
            "contacts": document["contacts"],
            "handles": document["handles"],
            "group_names": document["group_names"],
            "sent": document["sent"],
            "history": list(document["history"]),
            "bundle": document["bundle"],
            "history_dropped": int(document.get("history_dropped", 0)),
            "history_sent_to": list(document.get("history_sent_to", [])),
            "history_note": document.get("history_note"),
            "unreported": list(document.get("unreported", [])),
            "actions": list(document.get("actions", [])),
            "open_calls": list(document.get("open_calls", [])),
            "refused_members": dict(document.get("refused_members", {})),
        }
    except (OSError, ValueError, KeyError, TypeError, E2EError) as error:
        raise StateError(f"damaged E2E state {path}: {error}") from error
