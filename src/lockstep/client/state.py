"""A device's local state: its keys (files readable only by their owner) and what it knows of its account.

Layout of a state folder::

    state.json     role, server URL and origin, account, device id and name, the newest device list
    device.key     the device's Ed25519 private key (PKCS#8 PEM, mode 0600)
    account.key    the account's Ed25519 private key, primary only (PKCS#8 PEM, mode 0600)

Messaging adds its own files beside these (client/e2estate.py); :func:`wipe_folder` removes all of them.
A primary made with ``--passphrase`` keeps them all sealed (client/vault.py): every file is read and
written through :func:`read_private` and :func:`write_private`, which seal when the folder is sealed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.client import vault
from lockstep.client.e2edb import DB_FILES
from lockstep.client.errors import StateError
from lockstep.link.devices import DeviceList, ListUpdate, Role, list_update
from lockstep.link.envelope import Envelope
from lockstep.link.errors import LinkError
from lockstep.link.grant import AccountInfo

STATE_FILE = "state.json"

SECRET_FILES = ("account.key", "device.key", "pickle.key", *DB_FILES, "e2e.json")
"""Private keys, then the E2E pickles and plaintext (client/e2estate.py: the database, its write-ahead
log, its shared-memory index or rollback journal, and an earlier version's e2e.json): overwritten, then
removed."""
OTHER_FILES = (STATE_FILE, ".history-upload.json", "e2e.lock", vault.VAULT_FILE)
"""The link state (contacts' lists, account), a history bundle being uploaded, the E2E lock, and what
finds the passphrase's key (gone with the files it sealed)."""
FOLDERS = ("downloads", ".history")
"""Received files, decrypted (messenger.download), and history bundles being read."""


def default_state_dir(role: Role) -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lockstep" / role


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file that is never, even briefly, readable by others (sealed in a sealed folder)."""
    vault.write_file(path, data)


def read_private(path: Path) -> bytes:
    """What :func:`write_private` wrote (opened, in a sealed folder)."""
    return vault.read_file(path)


def save_key(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(read_private(path), password=None)
    except (OSError, ValueError) as error:
        raise StateError(f"cannot read key {path}: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise StateError(f"{path} is not an Ed25519 key")
    return key


@dataclass(frozen=True, slots=True)
class DeviceState:
    directory: Path
    role: Role
    server_url: str
    origin: str
    account: AccountInfo
    device_id: str
    device_name: str
    device_list: Envelope

    @property
    def devices(self) -> DeviceList:
        return DeviceList.verify(self.device_list, self.account.account_key)

    def device_key(self) -> Ed25519PrivateKey:
        return load_key(self.directory / "device.key")

    def account_key(self) -> Ed25519PrivateKey:
        if self.role is not Role.PRIMARY:
            raise StateError("only the primary holds the account key")
        return load_key(self.directory / "account.key")

    def with_device_list(self, envelope: Envelope) -> DeviceState:
        """Accept a newer valid list (§4.3): one of the same version is ignored (this state is kept,
        even if the list differs); an older or invalid one is refused."""
        new = DeviceList.verify(envelope, self.account.account_key)
        update = list_update(self.devices.version, new)
        if update is ListUpdate.STALE:
            raise StateError(f"refusing device list version {new.version}: older than {self.devices.version}")
        if update is ListUpdate.KEEP:
            return self
        return DeviceState(
            self.directory,
            self.role,
            self.server_url,
            self.origin,
            self.account,
            self.device_id,
            self.device_name,
            envelope,
        )

    def save(self) -> None:
        document: dict[str, Any] = {
            "version": 1,
            "role": self.role,
            "server_url": self.server_url,
            "origin": self.origin,
            "account": self.account.to_json(),
            "device_id": self.device_id,
            "device_name": self.device_name,
            "device_list": self.device_list.to_json(),
        }
        write_private(self.directory / STATE_FILE, json.dumps(document, indent=2).encode())

    @classmethod
    def load(cls, directory: Path, role: Role) -> DeviceState:
        path = directory / STATE_FILE
        if not path.is_file():
            raise StateError(f"no {role} state in {directory}: set one up first")
        try:
            document = json.loads(read_private(path))
            state = cls(
                directory,
                Role(document["role"]),
                document["server_url"],
                document["origin"],
                AccountInfo.from_json(document["account"]),
                document["device_id"],
                document["device_name"],
                Envelope.from_json(document["device_list"]),
            )
        except (OSError, ValueError, KeyError, TypeError, LinkError) as error:
            raise StateError(f"damaged state file {path}: {error}") from error
        if state.role != role:
            raise StateError(f"{directory} holds a {state.role} device, not a {role}")
        return state

    def wipe(self) -> None:
        """Forget everything this device kept (an unlinked device): see :func:`wipe_folder`."""
        wipe_folder(self.directory)


def overwrite_and_remove(path: Path) -> None:
    """Zero a file's bytes before unlinking it: best effort against reading it back from the disk
    (journaling and copy-on-write file systems or SSDs may still keep old blocks)."""
    with contextlib.suppress(FileNotFoundError):
        with path.open("r+b") as handle:
            handle.write(bytes(path.stat().st_size))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()


def wipe_folder(directory: Path) -> None:
    """Remove every secret and every plaintext a device keeps in its state folder: private keys
    first, then the E2E pickles and history (e2e.db and SQLite's files beside it), the link state,
    received files and any half-written file. Files Lockstep did not make are left alone (the folder
    may be shared). The database must be closed first (E2EStore.close): an open connection would
    write its log again."""
    for name in SECRET_FILES:
        overwrite_and_remove(directory / name)
    for leftover in sorted(directory.glob("*.tmp")):  # an interrupted write_private
        overwrite_and_remove(leftover)
    for name in OTHER_FILES:
        (directory / name).unlink(missing_ok=True)
    for name in FOLDERS:
        shutil.rmtree(directory / name, ignore_errors=True)
    vault.forget(directory)


def exists(directory: Path) -> bool:
    return (directory / STATE_FILE).is_file()
