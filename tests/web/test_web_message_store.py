"""The messenger's indexed store and windowed conversation view in real Chromium (issue 15): what a commit
writes does not grow with the history held, a conversation's newest messages are read by index, a store
of the first version is split on first open, and the DOM of a long conversation stays bounded while the
person scrolls through it."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

# Counts every put() into IndexedDB and the bytes of what it stored (sealed records: their ciphertext).
INSTRUMENT = """
() => {
  window.idbWrites = { puts: 0, bytes: 0, transactions: 0 };
  const size = (value) => {
    if (value instanceof Uint8Array) return value.length;
    if (value === null || typeof value !== "object") return String(value).length;
    if (Array.isArray(value)) return value.reduce((n, v) => n + size(v), 0);
    return Object.entries(value).reduce((n, [k, v]) => n + k.length + size(v), 0);
  };
  const put = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function (value, key) {
    window.idbWrites.puts += 1;
    window.idbWrites.bytes += size(value);
    return put.call(this, value, key);
  };
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (names, mode, options) {
    if (mode === "readwrite") window.idbWrites.transactions += 1;
    return transaction.call(this, names, mode, options);
  };
}
"""

COMMITS = """
async () => {
  const { messageStore } = window.lockstep;
  const store = await messageStore.MessageStore.open("store-test-device");
  const core = { lastSeq: 0, contacts: { someone: { handle: "someone" } } };
  const message = (i, conversation) => ({
    id: `message-${String(i).padStart(8, "0")}`, conversation, ts: 1000 + i,
    kind: "text", text: `text number ${i}`, outgoing: false, read: false,
  });
  const cost = async (i) => {
    const before = { ...window.idbWrites };
    core.lastSeq = i;
    await store.commit({
      sections: { core, olm: { ratchet: "x".repeat(2000) } },
      messages: [message(i, "direct:a:b")],
      seen: [message(i, "").id],
    });
    return { puts: window.idbWrites.puts - before.puts, bytes: window.idbWrites.bytes - before.bytes,
      transactions: window.idbWrites.transactions - before.transactions };
  };
  // The origin's store key is made on first use, and the conversation gets its number.
  await store.commit({ sections: { core }, messages: [message(0, "direct:a:b")] });
  const early = await cost(1);
  // 3,000 more messages in two conversations, committed in batches of 100.
  for (let batch = 0; batch < 30; batch++) {
    const messages = [];
    for (let i = 0; i < 100; i++) {
      messages.push(message(10 + batch * 100 + i, i % 3 ? "direct:a:b" : "group:g"));
    }
    await store.commit({ messages, seen: messages.map((m) => m.id) });
  }
  const late = await cost(5000);
  const unchanged = { ...window.idbWrites };
  await store.commit({ sections: { core, olm: { ratchet: "x".repeat(2000) } } }); // as written: no write
  const idle = window.idbWrites.puts - unchanged.puts;
  await store.commit({ sections: { core, olm: { ratchet: "y".repeat(2000) } } }); // a ratchet moved: olm only
  const ratchetMoved = window.idbWrites.puts - unchanged.puts - idle;
  const newest = await store.page("direct:a:b", 5);
  const older = await store.page("direct:a:b", 3, newest[4].ts);
  store.close();
  const reopened = await messageStore.MessageStore.open("store-test-device");
  const loaded = await reopened.load();
  const chats = await Promise.all(loaded.conversations.map((c) => reopened.chatMessages(c)));
  reopened.close();
  return { early, late, idle, ratchetMoved, newest: newest.map((m) => m.ts), older: older.map((m) => m.ts),
    conversations: loaded.conversations, loaded: chats.map((messages) => messages.length),
    inOrder: chats.every((messages) => messages.every((m, i) => i === 0 || messages[i - 1].ts <= m.ts)),
    seen: loaded.seen.length, lastSeq: loaded.sections.core.lastSeq };
}
"""


def test_a_commit_writes_the_same_whatever_the_history(harness: Any) -> None:
    harness.evaluate(INSTRUMENT)
    out = harness.evaluate(COMMITS)
    # One transaction: the core and olm sections (olm the first time only: it does not change after),
    # the message and its seen id; the same after 3,000 more.
    assert out["early"]["transactions"] == out["late"]["transactions"] == 1
    assert out["early"]["puts"] == 4 and out["late"]["puts"] == 3
    assert out["late"]["bytes"] <= out["early"]["bytes"] - 2000  # no olm; a longer lastSeq, nothing grows
    assert out["idle"] == 0 and out["ratchetMoved"] == 1
    assert out["newest"] == [6000, 4008, 4007, 4005, 4004]  # by the index: newest first, one chat only
    assert out["older"] == [4002, 4001, 3999]
    assert out["conversations"] == ["direct:a:b", "group:g"]
    assert out["loaded"] == [1983, 1020] and out["inOrder"]
    assert out["seen"] == 3002 and out["lastSeq"] == 5000


SEEN_PRUNED = """
async () => {
  const { messageStore } = window.lockstep;
  const store = await messageStore.MessageStore.open("seen-test-device");
  const max = messageStore.MAX_SEEN_IDS;
  for (let batch = 0; batch * 2000 < max + 3000; batch++) {
    await store.commit({ seen: Array.from({ length: 2000 }, (_, i) => `seen-${batch}-${i}`) });
  }
  store.close();
  const reopened = await messageStore.MessageStore.open("seen-test-device");
  const { seen } = await reopened.load();
  reopened.close();
  return {
    max, count: seen.length, oldestKept: seen.includes("seen-0-0"), newestKept: seen.includes("seen-11-1999"),
  };
}
"""


def test_seen_ids_are_kept_one_record_each_and_the_oldest_pruned(harness: Any) -> None:
    out = harness.evaluate(SEEN_PRUNED)
    assert out["max"] <= out["count"] <= out["max"] + 2000
    assert not out["oldestKept"] and out["newestKept"]


# A messenger database as version 1 wrote it: one sealed `state` record (seen ids inside) and sealed
# messages without index fields.
LEGACY = """
async () => {
  const { atRest, messageStore } = window.lockstep;
  const name = messageStore.databaseName("legacy-device");
  await new Promise((ok, fail) => {
    const r = indexedDB.open(name, 1);
    r.onupgradeneeded = () => {
      r.result.createObjectStore("kv");
      r.result.createObjectStore("messages", { keyPath: "id" });
    };
    r.onsuccess = () => { r.result.close(); ok(); };
    r.onerror = () => fail(r.error);
  });
  const legacy = { v: 1, lastSeq: 9, seen: ["legacy-seen-0001"], olm: {}, megolm: {} };
  const state = await atRest.seal(legacy, `${name}/kv/state`);
  const old = { id: "legacy-message-01", conversation: "direct:a:b", ts: 77, kind: "text", text: "before" };
  const sealed = await atRest.seal(old, `${name}/messages/${old.id}`);
  await new Promise((ok, fail) => {
    const r = indexedDB.open(name, 1);
    r.onsuccess = () => {
      const tx = r.result.transaction(["kv", "messages"], "readwrite");
      tx.objectStore("kv").put(state, "state");
      tx.objectStore("messages").put({ id: old.id, sealed });
      tx.oncomplete = () => { r.result.close(); ok(); };
      tx.onerror = () => fail(tx.error);
    };
  });
  const store = await messageStore.MessageStore.open("legacy-device");
  const first = await store.load();
  await store.commit({ sections: { core: { lastSeq: first.legacy.lastSeq } }, messages: first.legacyMessages,
    seen: first.legacy.seen, dropLegacy: true });
  const page = await store.page("direct:a:b", 10);
  store.close();
  const again = await messageStore.MessageStore.open("legacy-device");
  const second = await again.load();
  again.close();
  return {
    legacySeq: first.legacy.lastSeq, texts: first.legacyMessages.map((m) => m.text),
    page: page.map((m) => m.id),
    legacyAfter: second.legacy === undefined, core: second.sections.core, seen: second.seen,
  };
}
"""


def test_a_first_version_store_is_split_on_first_open(harness: Any) -> None:
    out = harness.evaluate(LEGACY)
    assert out["legacySeq"] == 9 and out["texts"] == ["before"]
    assert out["page"] == ["legacy-message-01"]  # indexed now
    assert out["legacyAfter"] and out["core"] == {"lastSeq": 9} and out["seen"] == ["legacy-seen-0001"]


# The conversation view over 2,000 messages in a 600 px list: bounded rows; scrolling to the top pages in
# older messages while the row the person reads stays where it was.
TIMELINE = """
async () => {
  const { timeline, chatIndex } = window.lockstep;
  const list = document.createElement("ol");
  list.style.cssText = "height: 600px; overflow-y: auto; position: relative; margin: 0; padding: 0";
  document.body.append(list);
  const index = new chatIndex.ChatIndex();
  const renderer = {
    create: (m) => {
      const li = document.createElement("li");
      li.style.height = "30px";
      li.textContent = m.text;
      return li;
    },
    update: (row, m) => { row.textContent = m.text; },
  };
  const view = new timeline.Timeline(list, renderer);
  const frame = () => new Promise((ok) => requestAnimationFrame(() => ok()));
  const add = (i) => index.put({ id: `m${String(i).padStart(6, "0")}`, conversation: "c", ts: i, kind: "text",
    text: `message ${i}`, outgoing: false, read: true });
  view.show(index.messagesOf("c"));
  let most = 0;
  for (let i = 0; i < 2000; i++) {
    add(i);
    if (i % 25 === 24) {
      view.refresh(index.messagesOf("c"), new Set());
      most = Math.max(most, list.children.length);
    }
  }
  view.refresh(index.messagesOf("c"), new Set());
  await frame();
  const lastShown = list.lastElementChild.textContent;
  const atBottom = Math.abs(list.scrollHeight - list.scrollTop - list.clientHeight) < 2;
  // The person scrolls to the top of what is shown: older messages come in above, the view stays put.
  const reading = list.firstElementChild;
  list.scrollTop = 0;
  await frame(); await frame();
  const readingTop = reading.getBoundingClientRect().top - list.getBoundingClientRect().top;
  const firstAfter = list.firstElementChild.textContent;
  // A tick changes on a shown message: that row is redrawn.
  const changed = index.messagesOf("c")[1990];
  changed.text = "edited";
  view.refresh(index.messagesOf("c"), new Set([changed.id]));
  const edited = [...list.children].some((li) => li.textContent === "edited");
  const rows = list.children.length;
  return { most, rows, lastShown, atBottom, readingTop, firstAfter, edited, max: timeline.MAX_ROWS };
}
"""


def test_a_long_conversation_keeps_a_bounded_window_of_rows(harness: Any) -> None:
    out = harness.evaluate(TIMELINE)
    assert out["most"] <= out["max"] and out["rows"] <= out["max"]
    assert out["lastShown"] == "message 1999" and out["atBottom"]
    assert out["firstAfter"] != "message 1940"  # older messages were paged in above
    assert abs(out["readingTop"]) < 2  # ...and the row at the top stayed at the top
    assert out["edited"]


# A companion's messenger with 6,000 stored messages in three chats, opened twice: once as the first version
# to write chat summaries finds them missing, then as every later start does.
LAZY_START = """
async () => {
  const { messenger: { Messenger }, messageStore } = window.lockstep;
  const identity = { accountId: "me", deviceId: "lazy-device", role: "companion", deviceKey: null,
    accountKey: new Uint8Array(32), listVersion: 1, handle: "me", displayName: "Me" };
  const alice = "direct:alice:me", bob = "direct:bob:me", group = "group:g";
  (await Messenger.open(identity)).close();  // a new device: keys and empty state
  const store = await messageStore.MessageStore.open("lazy-device");
  const message = (i, conversation, text, read) => ({ id: `m${String(i).padStart(6, "0")}`, conversation,
    ts: 1_000_000 + i, kind: "text", senderAccount: "x", senderDevice: "d", outgoing: false, text, read });
  for (let batch = 0; batch < 30; batch++) {
    const messages = [];
    for (let i = batch * 200; i < (batch + 1) * 200; i++) {
      const conversation = i % 12 === 0 ? bob : i % 4 === 0 ? group : alice;
      messages.push(message(i, conversation, i === 1 ? "the needle" : `text ${i}`, i < 5990));
    }
    await store.commit({ messages });
  }
  store.close();
  const summaries = (m) =>
    Object.fromEntries(m.conversations().map((c) => [c.id, [c.last?.text ?? null, c.unread]]));

  let m = await Messenger.open(identity);  // no summaries yet: they are written once the chats are unsealed
  await m.loaded();
  const migrated = summaries(m);
  m.close();

  const started = performance.now();
  m = await Messenger.open(identity);
  const openMs = performance.now() - started;
  const atOpen = { summaries: summaries(m), oldest: m.message("m000001") === undefined,
    newest: m.message("m005999") === undefined, search: m.search("needle").length,
    page: m.messagesOf(alice).length };
  // The person opens Bob's chat, the least recent: its newest page is read by index while the loader is
  // still unsealing Alice's 4,500 messages (the most recent chat: the loader starts there).
  const firstPage = await new Promise((resolve) => {
    m.messagesOf(bob);
    const stop = m.subscribe(() => {
      const shown = m.messagesOf(bob);
      if (shown.length) { stop(); resolve(shown.map((x) => x.text)); }
    });
  });
  const pageMs = performance.now() - started;
  await m.loaded();
  const loadedMs = performance.now() - started;
  const whole = m.messagesOf(alice).length;
  const found = m.search("needle").map((x) => x.id);
  // A new newest message in Bob's chat: its summary is written with it.
  await m.noteCall("bob", "call-1", "Missed voice call", 2_000_000, false);
  m.close();
  m = await Messenger.open(identity);
  const afterCall = summaries(m)[bob];
  m.close();
  return { migrated, atOpen, firstPage, whole, found, afterCall, openMs, pageMs, loadedMs };
}
"""


def test_the_messenger_starts_from_chat_summaries_and_unseals_a_chat_when_needed(harness: Any) -> None:
    """Issue 15: the page used to unseal every message before drawing (2.2 s at 10,000); now it starts
    from one sealed summary per chat, shows an opened chat's newest page read by index, and unseals whole
    chats afterwards, the opened one first — search then covers everything again."""
    out = harness.evaluate(LAZY_START)
    expected = {
        "direct:alice:me": ["text 5999", 8],  # 5990…5999 but 5992 and 5996 (the group's)
        "group:g": ["text 5996", 2],  # 5992 and 5996
        "direct:bob:me": ["text 5988", 0],
    }
    assert out["migrated"] == out["atOpen"]["summaries"] == expected
    at_open = out["atOpen"]
    assert at_open["oldest"] and at_open["newest"] and at_open["search"] == 0 and at_open["page"] == 0
    assert out["firstPage"] == [f"text {i}" for i in range(0, 6000, 12)][-60:]
    assert out["whole"] == 4500 and out["found"] == ["m000001"]
    assert out["afterCall"] == ["Missed voice call", 0]
    print(f"open {out['openMs']:.0f} ms, page {out['pageMs']:.0f} ms, all {out['loadedMs']:.0f} ms")


# A conversation read whole in chunks of 500 when 1,300 of its messages share one millisecond (a burst).
SAME_MILLISECOND = """
async () => {
  const { messageStore } = window.lockstep;
  const store = await messageStore.MessageStore.open("tie-device");
  const messages = Array.from({ length: 1500 }, (_, i) => ({
    id: `tie-${String((i * 7919) % 1500).padStart(5, "0")}`, conversation: "direct:a:b",
    ts: i < 100 ? i : i < 1400 ? 5000 : 9000 + i, kind: "text", text: `${i}`,
  }));
  await store.commit({ messages });
  const read = await store.chatMessages("direct:a:b");
  store.close();
  const before = (a, b) => a.ts < b.ts || (a.ts === b.ts && a.id < b.id);
  return { count: read.length, unique: new Set(read.map((m) => m.id)).size,
    inOrder: read.every((m, i) => i === 0 || before(read[i - 1], m)) };
}
"""


def test_a_whole_chat_is_read_in_chunks_even_when_a_burst_shares_one_millisecond(harness: Any) -> None:
    out = harness.evaluate(SAME_MILLISECOND)
    assert out == {"count": 1500, "unique": 1500, "inOrder": True}


def test_a_tab_taking_over_opens_only_a_database_that_is_there(harness: Any) -> None:
    """A tab that takes the messenger over from another tab (which deletes the database on an unlink before
    it lets go) must not make the database afresh: no database and no store key after "logged out"."""
    outcome = harness.evaluate(
        """async () => {
          const { messageStore } = window.lockstep;
          const names = async () => (await indexedDB.databases()).map((db) => db.name).sort();
          const before = await names();
          const gone = await messageStore.MessageStore.open("wiped-device", true).then(
            (store) => (store.close(), "opened"),
            (error) => error.name,
          );
          const afterGone = await names();
          const made = await messageStore.MessageStore.open("kept-device");
          made.close();
          const kept = await messageStore.MessageStore.open("kept-device", true).then(
            (store) => (store.close(), "opened"),
            (error) => error.name,
          );
          return { before, gone, afterGone, kept };
        }"""
    )
    assert outcome["gone"] == "DatabaseGone"
    assert outcome["afterGone"] == outcome["before"]  # nothing made, not even for a moment kept
    assert outcome["kept"] == "opened"
