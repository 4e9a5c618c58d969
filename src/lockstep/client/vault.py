"""A state folder sealed under a passphrase: ``lockstep primary init --passphrase`` (linking.md §11.4).

A sealed folder holds ``vault.json``::

    {"version": 1, "kdf": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": b64u(16 bytes),
     "check": b64u(nonce ‖ AES-256-GCM(key, nonce, "lockstep vault", aad = "lockstep-vault:vault.json"))}

The folder key is scrypt(passphrase, salt, n, r, p) (RFC 7914; n = 2¹⁷, r = 8, p = 1 is OWASP's figure:
128 MiB and a fraction of a second), 32 bytes for AES-256-GCM. ``check`` tells a wrong passphrase from
a damaged file before anything is read or written. Every file Lockstep keeps in the folder or its
sub-folders is then

    MAGIC ‖ nonce (12 random bytes) ‖ AES-256-GCM(key, nonce, contents, aad = "lockstep-vault:" + its path
    relative to the folder)

so a file cannot be swapped for another's ciphertext. Files given to the person (``downloads/``) are theirs
and are written in the clear, as they asked.

:class:`FolderKey` is the pure core. The rest is this process's registry of unlocked folders: a command
unlocks its folder once (cli/common.py), and :func:`read_file` / :func:`write_file`, which the file
stores use (client/state.py, messaging/history.py), seal and open through it; the E2E database
(client/e2edb.py) seals each value it keeps with :func:`key_for`'s key, under the name of its row.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from lockstep.client.errors import StateError
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.errors import LinkError

VAULT_FILE = "vault.json"
MAGIC = b"LOCKSTEP-SEALED-1\n"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
_SALT_SIZE, _NONCE_SIZE = 16, 12
_CHECK = b"lockstep vault"


class WrongPassphrase(StateError):
    """The passphrase does not open this folder (nothing was read or changed)."""


class FolderLocked(StateError):
    """A sealed folder was used before its passphrase was given."""


def _aad(name: str) -> bytes:
    return b"lockstep-vault:" + name.encode()


@dataclass(frozen=True, slots=True)
class FolderKey:
    """The AES-256-GCM key of one sealed folder: seals and opens its files by name."""

    key: bytes
    _names: bytes = field(init=False, repr=False)
    """A key of its own (HKDF) for :meth:`pseudonym`: one key, one job."""

    def __post_init__(self) -> None:
        names = HKDF(SHA256(), 32, salt=None, info=b"lockstep-vault names").derive(self.key)
        object.__setattr__(self, "_names", names)

    @classmethod
    def derive(cls, passphrase: str, salt: bytes, n: int, r: int, p: int) -> FolderKey:
        return cls(Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode()))

    def seal(self, name: str, data: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return MAGIC + nonce + AESGCM(self.key).encrypt(nonce, data, _aad(name))

    def pseudonym(self, name: str) -> str:
        """A stable stand-in for a name that says who a record is about (a contact's account id, a peer's
        key), so a sealed database can find a row by it without showing it (client/e2edb.py)."""
        mac = HMAC(self._names, SHA256())
        mac.update(name.encode())
        return b64u_encode(mac.finalize()[:18])

    def open(self, name: str, sealed: bytes) -> bytes:
        """The contents of ``sealed``, the file called ``name``; StateError if it was not sealed by this
        key under that name (changed, moved, or from another folder)."""
        if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + _NONCE_SIZE:
            raise StateError(f"{name} is not a sealed file: the folder was changed by something else")
        body = sealed[len(MAGIC) :]
        try:
            return AESGCM(self.key).decrypt(body[:_NONCE_SIZE], body[_NONCE_SIZE:], _aad(name))
        except InvalidTag:
            raise StateError(f"{name} does not open with this folder's key: damaged or moved") from None


def new_header(passphrase: str) -> tuple[FolderKey, dict[str, Any]]:
    """A new folder key for ``passphrase`` and the ``vault.json`` document that finds it again."""
    salt = secrets.token_bytes(_SALT_SIZE)
    key = FolderKey.derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    check = key.seal(VAULT_FILE, _CHECK)
    header = {"version": 1, "kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
    return key, {**header, "salt": b64u_encode(salt), "check": b64u_encode(check)}


def key_from_header(header: dict[str, Any], passphrase: str) -> FolderKey:
    """The folder key ``passphrase`` gives under ``header``: WrongPassphrase if it is not the one."""
    try:
        if header["version"] != 1 or header["kdf"] != "scrypt":
            raise StateError(f"{VAULT_FILE} is of an unknown kind")
        n, r, p = int(header["n"]), int(header["r"]), int(header["p"])
        # Bounded, so a tampered header cannot make us allocate gigabytes (scrypt uses 128·n·r bytes).
        if not (2**14 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4):
            raise StateError(f"{VAULT_FILE} asks for scrypt parameters out of range")
        salt = b64u_decode(header["salt"], length=_SALT_SIZE, what="salt")
        check = b64u_decode(header["check"], what="check")
    except (KeyError, TypeError, ValueError, LinkError) as error:
        raise StateError(f"damaged {VAULT_FILE}: {error}") from error
    key = FolderKey.derive(passphrase, salt, n, r, p)
    try:
        if key.open(VAULT_FILE, check) != _CHECK:
            raise WrongPassphrase("wrong passphrase")
    except WrongPassphrase:
        raise
    except StateError:
        raise WrongPassphrase("wrong passphrase") from None
    return key


# --- this process's unlocked folders ---------------------------------------------------------------

_unlocked: dict[Path, FolderKey] = {}


def is_sealed(directory: Path) -> bool:
    return (directory / VAULT_FILE).is_file()


def seal_new_folder(directory: Path, passphrase: str) -> None:
    """Make ``directory`` (empty of Lockstep files) a sealed folder, unlocked for this process."""
    if is_sealed(directory):
        raise StateError(f"{directory} is already sealed")
    key, header = new_header(passphrase)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_atomically(directory / VAULT_FILE, json.dumps(header, indent=2).encode())
    _unlocked[directory.resolve()] = key


def unlock(directory: Path, passphrase: str) -> None:
    """Open ``directory`` for this process; WrongPassphrase (nothing read or changed) if it does not."""
    try:
        header = json.loads((directory / VAULT_FILE).read_bytes())
    except (OSError, ValueError) as error:
        raise StateError(f"cannot read {directory / VAULT_FILE}: {error}") from error
    if not isinstance(header, dict):
        raise StateError(f"damaged {directory / VAULT_FILE}")
    _unlocked[directory.resolve()] = key_from_header(header, passphrase)


def forget(directory: Path) -> None:
    """Drop the folder's key from this process (after a wipe)."""
    _unlocked.pop(directory.resolve(), None)


def _folder_of(path: Path) -> tuple[Path, str] | None:
    """The sealed folder ``path`` is in (itself or a sub-folder of it) and its name there, if any."""
    resolved = path.resolve()
    folder = resolved.parent
    if not is_sealed(folder) and not (folder / "state.json").is_file():  # a sub-folder such as .history/
        folder = folder.parent
    return (folder, resolved.relative_to(folder).as_posix()) if is_sealed(folder) else None


def key_for(path: Path) -> tuple[FolderKey, str] | None:
    """The key that seals ``path`` and its name under it; None if its folder is not sealed, FolderLocked
    if it is but was not unlocked by this process."""
    found = _folder_of(path)
    if found is None:
        return None
    folder, name = found
    key = _unlocked.get(folder)
    if key is None:
        raise FolderLocked(f"{folder} is sealed with a passphrase: give it to open the folder")
    return key, name


def read_file(path: Path) -> bytes:
    """A state file's contents, opened if its folder is sealed."""
    data = path.read_bytes()
    sealing = key_for(path)
    return data if sealing is None else sealing[0].open(sealing[1], data)


def write_file(path: Path, data: bytes) -> None:
    """Write a state file only its owner can read (atomically), sealed if its folder is."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    sealing = key_for(path)
    _write_atomically(path, data if sealing is None else sealing[0].seal(sealing[1], data))


def _write_atomically(path: Path, data: bytes) -> None:
    """Never, even briefly, readable by others; never half-written."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
