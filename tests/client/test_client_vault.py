"""The passphrase-sealed state folder (client/vault.py): the sealing core by properties, the folder
registry on real files."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.client import vault
from lockstep.client.errors import StateError
from lockstep.client.state import read_private, write_private

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@given(data=st.binary(max_size=2000), name=names)
def test_what_is_sealed_opens_under_its_name_only(data: bytes, name: str) -> None:
    key = vault.FolderKey(secrets.token_bytes(32))
    sealed = key.seal(name, data)
    assert key.open(name, sealed) == data
    assert data not in sealed[len(vault.MAGIC) :] or len(data) < 4
    with pytest.raises(StateError):
        key.open(name + "x", sealed)  # moved to another file's place
    with pytest.raises(StateError):
        vault.FolderKey(secrets.token_bytes(32)).open(name, sealed)  # another folder's key


@given(data=st.binary(max_size=200), at=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_changed_bit_is_refused(data: bytes, at: int, bit: int) -> None:
    key = vault.FolderKey(secrets.token_bytes(32))
    sealed = bytearray(key.seal("e2e.json", data))
    sealed[at % len(sealed)] ^= 1 << bit
    with pytest.raises(StateError):
        key.open("e2e.json", bytes(sealed))


FIELDS = st.sampled_from(["version", "kdf", "n", "r", "p", "salt", "check"])


@settings(max_examples=200)
@given(header=st.dictionaries(FIELDS, st.integers() | st.text(max_size=30)))
def test_a_damaged_header_is_a_state_error_and_never_a_crash(header: dict[str, object]) -> None:
    with pytest.raises(StateError):
        vault.key_from_header(header, "a passphrase")


def test_the_passphrase_finds_the_key_and_a_wrong_one_is_told_apart() -> None:
    key, header = vault.new_header("correct horse battery staple")
    assert header["n"] >= 2**17 and header["r"] == 8 and header["p"] == 1
    assert vault.key_from_header(header, "correct horse battery staple") == key
    with pytest.raises(vault.WrongPassphrase):
        vault.key_from_header(header, "correct horse battery stapler")


def test_files_of_a_sealed_folder_are_sealed_on_disk_and_locked_until_unlocked(tmp_path: Path) -> None:
    folder, plain = tmp_path / "sealed", tmp_path / "plain"
    vault.seal_new_folder(folder, "correct horse battery staple")
    secret = b'{"text": "meet at noon"}'
    write_private(folder / "e2e.json", secret)
    write_private(folder / ".history" / "bundle.json", secret)  # a sub-folder: sealed too
    write_private(plain / "e2e.json", secret)
    assert (folder / "e2e.json").read_bytes().startswith(vault.MAGIC)
    assert secret not in (folder / ".history" / "bundle.json").read_bytes()
    assert (plain / "e2e.json").read_bytes() == secret  # a folder without a passphrase is as before
    assert oct((folder / "e2e.json").stat().st_mode & 0o777) == "0o600"

    vault.forget(folder)  # a new process: nothing opens, nothing is written
    with pytest.raises(vault.FolderLocked):
        read_private(folder / "e2e.json")
    with pytest.raises(vault.FolderLocked):
        write_private(folder / "e2e.json", b"overwritten")
    with pytest.raises(vault.WrongPassphrase):
        vault.unlock(folder, "wrong horse")
    vault.unlock(folder, "correct horse battery staple")
    assert read_private(folder / "e2e.json") == secret
    assert read_private(folder / ".history" / "bundle.json") == secret
    # A sealed file copied over another is refused: each is bound to its own name.
    (folder / "pickle.key").write_bytes((folder / "e2e.json").read_bytes())
    with pytest.raises(StateError, match="damaged or moved"):
        read_private(folder / "pickle.key")
    assert json.loads((folder / "vault.json").read_text())["kdf"] == "scrypt"
    vault.forget(folder)
