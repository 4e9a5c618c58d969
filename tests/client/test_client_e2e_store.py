"""The Python client's E2E store (client/e2estate.py, client/e2edb.py): a state folder of the version
before the database opens and is converted once, its Olm and Megolm sessions going on both ways; a save
writes what changed and no more; every message is kept and found past the newest 1,000 held in memory;
a sealed folder's database holds no value in the clear; a wipe leaves none of SQLite's files; and the
stored rows' decoder takes any bytes without failing other than with a StateError."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2e_state import stored_bytes, unsealed_values
from lockstep.client import vault
from lockstep.client.e2edb import DB_FILES, Change, E2EDatabase, Sealing, keyed
from lockstep.client.e2estate import MAX_HISTORY, SEARCH_PAGE, E2EStore
from lockstep.client.errors import StateError
from lockstep.client.state import wipe_folder
from lockstep.e2e.olm import OlmDevice
from lockstep.e2e.receipts import Position
from lockstep.e2e.timeline import Timeline

FIXTURES = Path(__file__).parent / "fixtures" / "e2e-json-v1"
PASSPHRASE = "fixture passphrase"  # tests/client/fixtures/make_e2e_json.py
SECRET_TEXT = b"fixture plaintext 1b2c"
SYNCHRONOUS_FULL = 2  # what PRAGMA synchronous reads for FULL (sqlite.org/pragma.html#pragma_synchronous)


def text_record(number: int, ts: int | None = None) -> dict[str, Any]:
    return {
        "id": f"msg-{number:06d}",
        "kind": "text",
        "conversation": "direct:acct-a:acct-b",
        "sender": {"account_id": "acct-a", "device_id": "dev-a"},
        "ts": 1_000_000 + number if ts is None else ts,
        "body": {"text": f"text {number}"},
    }


def exchange(sender: OlmDevice, receiver: OlmDevice, text: bytes) -> None:
    """One Olm message each way decrypts: the sessions go on."""
    assert receiver.decrypt(sender.identity_key, sender.encrypt(receiver.identity_key, text)) == text
    assert sender.decrypt(receiver.identity_key, receiver.encrypt(sender.identity_key, text)) == text


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_a_folder_of_the_json_version_is_converted_once_and_its_sessions_go_on(
    tmp_path: Path, sealed: bool
) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    shutil.copytree(FIXTURES / "alice", alice_dir)
    shutil.copytree(FIXTURES / ("bob-sealed" if sealed else "bob"), bob_dir)
    if sealed:
        vault.unlock(bob_dir, PASSPHRASE)
    try:
        bob = E2EStore.load_or_create(bob_dir)
        alice = E2EStore.load_or_create(alice_dir)
        assert not (bob_dir / "e2e.json").exists() and (bob_dir / "e2e.db").is_file()
        # Everything the file held came over.
        assert bob.last_seq == 7 and all(m in bob.seen for m in ("m-1", "m-2", "m-3"))
        assert [r["body"]["text"] for r in bob.history] == [SECRET_TEXT.decode(), "two", "three"]
        assert bob.sent["m-2"]["status"] == "delivered" and bob.history_dropped == 4
        assert [r["message_id"] for r in bob.unreported] == ["m-3"]
        assert [a["id"] for a in bob.actions] == ["r-1"]
        assert bob.handles == {"alice": "acct-alice"} and bob.group_names == {"group-1": "Lunch"}
        assert bob.contacts["acct-alice"]["display_name"] == "Alice"
        # The ratchets came over: the Olm sessions go on both ways, and so does the group session.
        exchange(alice.olm, bob.olm, b"after the conversion")
        session_id = alice.groups.session_id("group-1")
        later = bob.groups.decrypt("dev-alice", session_id, alice.groups.encrypt("group-1", b"g1"))
        assert (later.plaintext, later.message_index) == (b"g1", 1)
        for store in (alice, bob):
            store.save()
        if sealed:  # nothing in the clear while the database is open either (its log and index too)
            assert (bob_dir / "e2e.db-wal").is_file() and SECRET_TEXT not in stored_bytes(bob_dir)
        for store in (alice, bob):
            store.close()
        # Reopened from the database: what the last save wrote is what goes on.
        bob, alice = E2EStore.load_or_create(bob_dir), E2EStore.load_or_create(alice_dir)
        exchange(alice.olm, bob.olm, b"after reopening")
        again = bob.groups.decrypt("dev-alice", session_id, alice.groups.encrypt("group-1", b"g2"))
        assert again.message_index == 2
        assert bob.has_message("m-1") and not bob.has_message("m-9")
        bob.close()
        alice.close()
    finally:
        vault.forget(bob_dir)
    files = b"".join(p.read_bytes() for p in bob_dir.iterdir() if p.is_file())
    if sealed:
        assert SECRET_TEXT not in files and b"acct-alice" not in files and b"Lunch" not in files
        assert unsealed_values(bob_dir) == []
    else:
        assert SECRET_TEXT in stored_bytes(bob_dir)  # the search is real: a plain folder is readable


def test_the_converted_state_is_on_disk_before_the_json_file_is_wiped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut right after the conversion must not lose both copies: the commit that holds the
    converted state runs with synchronous=FULL (fsynced) while e2e.json is still there."""
    folder = tmp_path / "alice"
    shutil.copytree(FIXTURES / "alice", folder)
    commits: list[tuple[int, bool]] = []  # (PRAGMA synchronous the commit ran under, e2e.json still there)
    write = E2EDatabase.write

    def observed(db: E2EDatabase, change: Change, *, durable: bool = False) -> None:
        write(db, change, durable=durable)
        (synchronous,) = db._db.execute("PRAGMA synchronous").fetchone()
        commits.append((synchronous, (folder / "e2e.json").exists()))

    monkeypatch.setattr(E2EDatabase, "write", observed)
    E2EStore.load_or_create(folder).close()
    assert not (folder / "e2e.json").exists()
    assert commits == [(SYNCHRONOUS_FULL, True)]


def test_a_sealed_folder_does_not_open_without_its_passphrase(tmp_path: Path) -> None:
    folder = tmp_path / "bob"
    shutil.copytree(FIXTURES / "bob-sealed", folder)
    with pytest.raises(vault.FolderLocked):
        E2EStore.load_or_create(folder)
    assert (folder / "e2e.json").is_file()  # nothing converted, nothing lost


def test_a_save_writes_what_changed_and_not_what_the_device_already_holds(tmp_path: Path) -> None:
    store = E2EStore.load_or_create(tmp_path)
    peers = [OlmDevice.create() for _ in range(20)]
    for peer in peers:  # sessions with 20 devices, 1,000 messages
        (key,) = peer.new_one_time_keys(1)
        store.olm.encrypt(peer.identity_key, b"hi", key.key)
    for number in range(MAX_HISTORY):
        store.remember(text_record(number))
        store.seen.add(f"msg-{number:06d}")
    store.save()
    before = store.rows_written
    store.remember(text_record(MAX_HISTORY))  # one message arrives: its record, its id, the queue position
    store.seen.add(f"msg-{MAX_HISTORY:06d}")
    store.last_seq += 1
    store.save()
    assert store.rows_written - before <= 4, store.rows_written - before
    before = store.rows_written
    store.olm.encrypt(peers[3].identity_key, b"one more")  # one session moved: its row, and the counter
    store.save()
    assert store.rows_written - before <= 2
    store.close()


def test_a_save_that_fails_for_any_reason_leaves_its_change_for_the_next_save(tmp_path: Path) -> None:
    """Not only a database error: whatever stops a save, what it took from the bookkeeping (a seen id,
    a contact, the Olm account's counter) is written by the next one and is there after reopening."""
    store = E2EStore.load_or_create(tmp_path)
    store.seen.add("m-seen-before-the-failure")
    store.contacts["acct-good"] = {"handle": "good"}
    store.last_seq = 41
    store.contacts["acct-bad"] = {"handle": object()}  # not JSON: the save fails with a TypeError
    with pytest.raises(TypeError):
        store.save()
    del store.contacts["acct-bad"]
    store.save()
    store.close()
    again = E2EStore.load_or_create(tmp_path)
    assert "m-seen-before-the-failure" in again.seen
    assert again.contacts == {"acct-good": {"handle": "good"}} and again.last_seq == 41
    again.close()


def test_a_message_deleted_for_everyone_is_written_again_only_when_its_content_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save after a delete rewrites the deleted message and empties the log (forgets); later saves
    write only what is new, not every deleted message again with a wal_checkpoint(TRUNCATE) each."""
    saved: list[tuple[list[str], bool]] = []  # (messages a save wrote, whether it emptied the log)
    write = E2EDatabase.write

    def observed(db: E2EDatabase, change: Change, *, durable: bool = False) -> None:
        saved.append(([r["id"] for r in change.messages], change.forgets))
        write(db, change, durable=durable)

    def message(number: int) -> dict[str, Any]:
        return {**text_record(number), "id": f"message-number-{number:04d}"}  # ids as actions need them

    store = E2EStore.load_or_create(tmp_path)
    monkeypatch.setattr(E2EDatabase, "write", observed)
    store.remember(message(1))
    store.save()
    delete = {
        **message(2),
        "id": "delete-of-number-1",
        "kind": "delete",
        "body": {"target": message(1)["id"]},
    }
    store.keep_action(delete)
    store.save()
    store.remember(message(3))
    store.save()
    assert store.merge_history([message(4)]) == 1
    store.save()
    first, third, fourth = (message(n)["id"] for n in (1, 3, 4))
    assert saved == [([first], False), ([first], True), ([third], False), ([fourth], False)]
    store.close()
    again = E2EStore.load_or_create(tmp_path)
    assert again.history[0]["body"] == {}  # the content is gone on disk too
    again.close()


def test_every_message_is_kept_and_found_past_the_newest_held_in_memory(tmp_path: Path) -> None:
    store = E2EStore.load_or_create(tmp_path)
    for number in range(2_500):
        store.remember(text_record(number, ts=5_000 + number // 3))  # three to a millisecond
    assert len(store.history) == MAX_HISTORY
    unsaved, count = store.newest_messages(10, before=Position(5_001, "msg-000004"))
    assert [r["id"] for r in unsaved] == ["msg-000000", "msg-000001", "msg-000002", "msg-000003"]
    store.save()
    store.close()

    store = E2EStore.load_or_create(tmp_path)
    assert [r["id"] for r in store.history] == [f"msg-{n:06d}" for n in range(1_500, 2_500)]
    assert store.message_count() == 2_500 and store.oldest_position() == Position(5_000, "msg-000000")
    oldest_held = Position(store.history[0]["ts"], store.history[0]["id"])
    older, count = store.newest_messages(10_000, before=oldest_held)
    assert count == 1_500 and [r["id"] for r in older] == [f"msg-{n:06d}" for n in range(1_500)]
    page, count = store.newest_messages(100, before=oldest_held)
    assert count == 1_500 and [r["id"] for r in page] == [f"msg-{n:06d}" for n in range(1_400, 1_500)]
    assert store.has_message("msg-000000")
    # A search covers every message kept, not only those held in memory.
    assert [hit.text for hit in store.search("text 777", 3)] == ["text 777"]
    assert store.timeline().search("text 777", 3) == []
    store.close()


def test_a_search_finds_every_match_newest_first_reading_a_page_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across pages of SEARCH_PAGE messages (ties of time included): what a search of all of them in one
    go finds, in the same order, and never more than a page read from the database at once."""
    store = E2EStore.load_or_create(tmp_path)
    for number in range(2 * SEARCH_PAGE + 300):
        store.remember(text_record(number, ts=1_000_000 + number // 3))  # three messages per millisecond
    store.save()
    pages: list[int] = []
    newest_messages = store.newest_messages

    def read(limit: int, **window: Any) -> tuple[list[dict[str, Any]], int]:
        pages.append(limit)
        return newest_messages(limit, **window)

    monkeypatch.setattr(store, "newest_messages", read)
    everything = newest_messages(10_000)[0]
    expected = [s.message_id for s in Timeline(everything, store.actions).search("text 1", 10_000)]
    assert len(expected) == 411  # "text 1", "text 10".."text 19", "text 100".."text 199", "text 1000"..
    assert [s.message_id for s in store.search("text 1", 10_000)] == expected
    assert [s.message_id for s in store.search("TEXT 1", 5)] == expected[:5]
    assert pages and max(pages) == SEARCH_PAGE
    store.close()


def test_in_flight_requests_are_kept_until_done(tmp_path: Path) -> None:
    store = E2EStore.load_or_create(tmp_path)
    store.in_flight[1] = {"fields": {"message_id": "x", "to": "acct-b", "payloads": []}, "then": {}}
    store.save()
    store.close()
    store = E2EStore.load_or_create(tmp_path)
    assert store.in_flight == {1: {"fields": {"message_id": "x", "to": "acct-b", "payloads": []}, "then": {}}}
    del store.in_flight[1]
    store.save()
    store.close()
    assert E2EStore.load_or_create(tmp_path).in_flight == {}


KILLED_WITH_ITS_LOG = """
import os, sys
from pathlib import Path
from lockstep.client.e2estate import E2EStore
store = E2EStore.load_or_create(Path(sys.argv[1]))
store.remember({"id": "m", "kind": "text", "conversation": "c", "ts": 1, "body": {"text": sys.argv[2]}})
store.save()
os._exit(0)  # as if killed: SQLite's write-ahead log and its index stay
"""


def test_a_wipe_leaves_no_database_file_even_after_a_killed_process(tmp_path: Path) -> None:
    secret = "wiped with the log 5e1f"
    subprocess.run([sys.executable, "-c", KILLED_WITH_ITS_LOG, str(tmp_path), secret], check=True, timeout=60)
    left_by_the_kill = {p.name for p in tmp_path.iterdir()}
    assert {"e2e.db", "e2e.db-wal", "e2e.db-shm"} <= left_by_the_kill  # what the wipe must remove
    assert secret.encode() in stored_bytes(tmp_path)
    wipe_folder(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name in DB_FILES or p.name == "pickle.key"] == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
SEALED = Sealing(vault.FolderKey(b"\x01" * 32))


@given(json_values, st.sampled_from([Sealing(None), SEALED]))
def test_stored_values_come_back_as_they_were_written(value: Any, sealing: Sealing) -> None:
    assert sealing.unpack("rows/contacts/k", sealing.pack("rows/contacts/k", value)) == value


@given(st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
def test_a_damaged_stored_value_is_a_state_error_never_another(blob: bytes) -> None:
    for sealing in (Sealing(None), SEALED):
        with contextlib.suppress(StateError):
            sealing.unpack("kv/last_seq", blob)


@given(json_values)
def test_a_keyed_row_is_its_key_and_value_or_a_state_error(value: Any) -> None:
    with contextlib.suppress(StateError):
        key, _ = keyed(value, "rows/contacts/k")
        assert isinstance(key, str) and isinstance(value, dict) and value["k"] == key
    assert keyed({"k": "acct", "v": value}, "rows/contacts/k") == ("acct", value)


def test_a_sealed_value_moved_to_another_row_does_not_open() -> None:
    moved = SEALED.pack("rows/contacts/one", {"k": "one", "v": 1})
    with pytest.raises(StateError):
        SEALED.unpack("rows/contacts/two", moved)
    assert Sealing(None).row_key("contacts", "acct-alice") == "acct-alice"
    assert "acct-alice" not in SEALED.row_key("contacts", "acct-alice")  # a pseudonym in a sealed folder
