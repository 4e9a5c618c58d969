"""Sealed records (web/src/store/atRest.ts) in real Chromium: round trips, binding to their place, and the
migration of stores written before sealing (re-encrypted on first open). The disk itself is searched in
tests/webmsg/test_webmsg_at_rest.py."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROUND_TRIP = """
async () => {
  const { atRest, ed25519 } = window.lockstep;
  await atRest.openAtRest();
  const pair = await ed25519.generateEd25519();                        // kept wrapped
  const nested = [{ $bytes: "not a marker", $key: 1 }];
  const value = { text: "hello", bytes: new Uint8Array([1, 2, 3]), key: pair.privateKey, nested };
  const sealed = await atRest.seal(value, "db/store/one");
  const back = await atRest.unseal(sealed, "db/store/one");
  let moved = "opened";
  try { await atRest.unseal(sealed, "db/store/another"); } catch (e) { moved = e.name; }
  const signature = await ed25519.sign(back.key, new Uint8Array([7]));
  const publicKey = await ed25519.exportEd25519Public(pair.publicKey);
  return {
    text: back.text, bytes: [...back.bytes], nested: back.nested,
    keyExtractable: back.key.extractable, clearKeys: sealed.clearKeys.length,
    verifies: await ed25519.verify(publicKey, Uint8Array.of(7), signature),
    moved, plaintextVisible: new TextDecoder().decode(sealed.data).includes("hello"),
  };
}
"""


def test_a_sealed_record_round_trips_and_is_bound_to_its_place(harness: Any) -> None:
    out = harness.evaluate(ROUND_TRIP)
    assert out["text"] == "hello" and out["bytes"] == [1, 2, 3]
    assert out["nested"] == [{"$bytes": "not a marker", "$key": 1}]  # a body cannot pose as a marker
    assert out["keyExtractable"] is False and out["verifies"] is True and out["clearKeys"] == 0
    assert out["moved"] == "AtRestError"
    assert out["plaintextVisible"] is False


# Stores as the previous version wrote them (plain records, a non-extractable key as a CryptoKey), then
# opened by this version: the values come back, and the records on disk are sealed from then on.
MIGRATION = """
async () => {
  const { stateStore, messageStore } = window.lockstep;
  const put = (name, store, key, value) => new Promise((ok, fail) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => {
      const tx = r.result.transaction(store, "readwrite");
      tx.objectStore(store).put(value, key);
      tx.oncomplete = () => { r.result.close(); ok(); };
      tx.onerror = () => fail(tx.error);
    };
  });
  const raw = (name, store) => new Promise((ok) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => {
      const g = r.result.transaction(store).objectStore(store).getAll();
      g.onsuccess = () => { r.result.close(); ok(g.result); };
    };
  });
  const legacy = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const legacyKey = legacy.privateKey;
  // A page state (StateStore) of the previous version.
  const states = new stateStore.StateStore("lockstep-migration-test");
  await states.save({ placeholder: true });                          // creates the database
  const oldState = { v: 1, deviceKey: legacyKey, name: "old laptop" };
  await put("lockstep-migration-test", "state", "current", oldState);
  const state = await states.load();
  const [sealedState] = await raw("lockstep-migration-test", "state");
  // A messenger database of the version before sealing (its first version).
  const db = await messageStore.MessageStore.open("migration-device");
  db.close();
  const name = messageStore.databaseName("migration-device");
  await put(name, "kv", "state", { v: 1, lastSeq: 7 });
  const oldMessage = { id: "old-message-0001", text: "an old plaintext", conversation: "direct:a:b", ts: 5 };
  await put(name, "messages", undefined, oldMessage);
  const reopened = await messageStore.MessageStore.open("migration-device");
  const loaded = await reopened.load();
  // The messenger splits the old record and writes everything back sealed (Messenger.open).
  await reopened.commit({
    sections: { core: { lastSeq: loaded.legacy.lastSeq } }, messages: loaded.legacyMessages, dropLegacy: true,
  });
  reopened.close();
  const kv = await raw(name, "kv");
  const [sealedMessage] = await raw(name, "messages");
  const loaded2 = { state: loaded.legacy, messages: loaded.legacyMessages };
  return {
    stateName: state.name, stateKeyKept: state.deviceKey instanceof CryptoKey,
    stateSealed: sealedState.sealed === 1, stateClearKeys: sealedState.clearKeys.map((k) => k.type),
    lastSeq: loaded2.state.lastSeq, texts: loaded2.messages.map((m) => m.text),
    kvSealed: kv.length > 0 && kv.every((record) => record.sealed === 1),
    messageSealed: sealedMessage.sealed.sealed === 1,
    messageKeys: Object.keys(sealedMessage).sort(),
  };
}
"""


def test_stores_written_before_sealing_are_sealed_on_first_open(harness: Any) -> None:
    out = harness.evaluate(MIGRATION)
    assert out["stateName"] == "old laptop" and out["stateKeyKept"]
    assert out["stateSealed"] and out["stateClearKeys"] == ["private"]  # cannot be wrapped: kept as it was
    assert out["lastSeq"] == 7 and out["texts"] == ["an old plaintext"]
    assert out["kvSealed"] and out["messageSealed"] and out["messageKeys"] == ["chat", "id", "sealed", "ts"]


# Keys made side by side (a key share's new Olm sessions) are wrapped under one read of the store key;
# keys made one after another each read it again (a tab never wraps under a key another tab deleted).
SHARED_READS = """
async () => {
  const { atRest, ed25519 } = window.lockstep;
  await atRest.openAtRest();
  const open = IDBFactory.prototype.open;
  let opens = 0;
  IDBFactory.prototype.open = function (name, version) {
    if (name === "lockstep-at-rest") opens += 1;
    return open.call(this, name, version);
  };
  try {
    const together = await Promise.all(Array.from({ length: 45 }, () => ed25519.generateEd25519()));
    const sideBySide = opens;
    opens = 0;
    for (let i = 0; i < 3; i++) await ed25519.generateEd25519();
    const oneAfterAnother = opens;
    const sealed = await atRest.seal({ key: together[44].privateKey }, "db/store/shared");
    const back = await atRest.unseal(sealed, "db/store/shared");
    return { sideBySide, oneAfterAnother, clearKeys: sealed.clearKeys.length, kept: back.key.type };
  } finally {
    IDBFactory.prototype.open = open;
  }
}
"""


def test_keys_made_side_by_side_share_one_read_of_the_store_key(harness: Any) -> None:
    out = harness.evaluate(SHARED_READS)
    assert 1 <= out["sideBySide"] <= 10, out  # one read per key before: 45
    assert out["oneAfterAnother"] == 3
    assert out["clearKeys"] == 0 and out["kept"] == "private"  # wrapped, not kept in the clear


def test_a_save_after_logging_out_makes_no_new_store_key(harness: Any) -> None:
    """Once a tab logs out (stopAtRest) and the store key is deleted, a save or key read that lands late
    (a pending commit, the background unsealer, the key keeper) fails instead of making a fresh store key:
    "logged out" leaves no database. Linking again (openAtRest) makes one anew."""
    out = harness.evaluate(
        """async () => {
          const { atRest } = window.lockstep;
          const names = async () => (await indexedDB.databases()).map((db) => db.name);
          await atRest.openAtRest();
          atRest.stopAtRest();
          await new Promise((resolve, reject) => {
            const req = indexedDB.deleteDatabase("lockstep-at-rest");
            req.onsuccess = resolve;
            req.onerror = reject;
          });
          const late = await atRest.seal({ text: "late" }, "db/store/late").then(
            () => "sealed",
            (error) => error.name,
          );
          const left = await names();
          await atRest.openAtRest();
          const again = await atRest.seal({ text: "again" }, "db/store/again").then(() => "sealed");
          return { late, left, again, after: await names() };
        }"""
    )
    assert out["late"] == "AtRestError"
    assert "lockstep-at-rest" not in out["left"]
    assert out["again"] == "sealed" and "lockstep-at-rest" in out["after"]
