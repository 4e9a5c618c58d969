"""What tests read of a device's E2E state on disk (client/e2estate.py, client/e2edb.py): the bytes of the
database and SQLite's files beside it, and values as stored, to search the folder for them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lockstep.client import vault
from lockstep.client.e2edb import DB_FILE, DB_FILES, E2EDatabase


def stored_bytes(folder: Path) -> bytes:
    """Every byte of the E2E database and of its write-ahead log, index and journal, if any."""
    return b"".join((folder / name).read_bytes() for name in DB_FILES if (folder / name).is_file())


def stored_olm_pickle(folder: Path) -> bytes:
    """The Olm account's pickle exactly as the database keeps it (unsealed if the folder is sealed and
    unlocked by this process): a needle for searches of the folder."""
    db = E2EDatabase.open(folder)
    try:
        return str(db.load().kv["olm_account"]).encode()
    finally:
        db.close()


def unsealed_values(folder: Path) -> list[str]:
    """Where the database holds a value that is not sealed under the folder key (empty if all are)."""
    with sqlite3.connect(folder / DB_FILE) as db:
        found = []
        for table in ("kv", "rows", "messages", "in_flight"):
            for (value,) in db.execute(f"SELECT value FROM {table}"):
                if not bytes(value).startswith(vault.MAGIC):
                    found.append(table)
    return found
