"""A browser companion with its chat open receives 2,000 messages in a burst (issue 15): every one is shown
and acknowledged, the sender gets "read" back for the newest, the open conversation's DOM stays bounded
(a window of rows, not one per message) and what IndexedDB is written per message stays small and does
not grow with the chat.

Bob writes from two Python devices at once, 1,000 messages each (a device may send 1,200 a minute), in
this process (tests/message_burst.py), into the one chat Alice's laptop has open.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    cli_account_with_companion,
    cli_primary_with_browser_companion,
    in_thread,
    send_text,
    start_chat,
)

from lockstep.client.messenger import Messenger, Received
from lockstep.client.state import DeviceState
from lockstep.e2e import receipts
from lockstep.e2e.envelope import Kind
from lockstep.link.devices import Role
from message_burst import Burst, send_burst

pytestmark = pytest.mark.browser

PER_DEVICE = 1000
ROWS_BOUND = 150  # web/src/messenger/timeline.ts MAX_ROWS

# Counts IndexedDB writes (puts, their bytes, read-write transactions, and per transaction the bytes of each
# of the messenger's state sections, its `kv` store's records by key: {"core": 2400, "summary/1": 310, …})
# and the most message rows ever in the open conversation's list.
WATCH = """
() => {
  const w = (window.burstWatch = { puts: 0, bytes: 0, transactions: 0, stateBytes: [], mostRows: 0 });
  const size = (value) => {
    if (value instanceof Uint8Array) return value.length;
    if (value === null || typeof value !== "object") return String(value).length;
    if (Array.isArray(value)) return value.reduce((n, v) => n + size(v), 0);
    return Object.entries(value).reduce((n, [k, v]) => n + k.length + size(v), 0);
  };
  const state = new WeakMap();
  const put = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function (value, key) {
    const bytes = size(value);
    w.puts += 1;
    w.bytes += bytes;
    if (this.name === "kv" && state.has(this.transaction)) {
      const sections = w.stateBytes[state.get(this.transaction)];
      sections[key] = (sections[key] ?? 0) + bytes;
    }
    return put.call(this, value, key);
  };
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (names, mode, options) {
    const tx = transaction.call(this, names, mode, options);
    if (mode === "readwrite") {
      w.transactions += 1;
      state.set(tx, w.stateBytes.push({}) - 1);
    }
    return tx;
  };
  const list = document.querySelector('[data-testid="messages"]');
  new MutationObserver(() => { w.mostRows = Math.max(w.mostRows, list.children.length); })
    .observe(list, { childList: true });
}
"""

# Scrolls from the newest message to the oldest, a window at a time, collecting every text shown.
READ_ALL = """
async () => {
  const list = document.querySelector('[data-testid="messages"]');
  const frame = () => new Promise((ok) => requestAnimationFrame(() => ok()));
  const seen = new Set();
  let most = 0;
  for (let step = 0; step < 400; step++) {
    for (const text of list.querySelectorAll('[data-testid="message-text"]')) seen.add(text.textContent);
    most = Math.max(most, list.children.length);
    const first = list.firstElementChild;
    list.scrollTop = 0;
    await frame(); await frame();
    if (list.firstElementChild === first) break;  // nothing older
  }
  return { texts: [...seen], most };
}
"""


def laptop_queue(database: Path) -> int:
    """Messages the server still holds for Alice's laptop (not acknowledged yet)."""
    with sqlite3.connect(database) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM message_queue WHERE device_id IN (SELECT d.device_id FROM devices d JOIN"
            " accounts a ON a.account_id = d.account_id WHERE a.handle = 'alice' AND d.role = 'companion')"
        ).fetchone()
    return int(count)


def test_a_burst_of_2000_messages_is_shown_acknowledged_and_read(
    server_process: Any, computer: Any, tmp_path: Path
) -> None:
    url = server_process.url
    _alice, laptop = cli_primary_with_browser_companion(url, computer, tmp_path, "alice", "Alice")
    bob = cli_account_with_companion(url, tmp_path, "bob", "Bob")
    assert bob.companion is not None
    start_chat(laptop, "@bob")
    send_text(laptop, "go ahead")  # Alice wrote first: Bob is no stranger (messaging.md §7.7)
    laptop.evaluate(WATCH)

    devices = {bob.primary: Role.PRIMARY, bob.companion: Role.COMPANION}
    texts = {state: [f"burst {n}-{i}" for i in range(PER_DEVICE)] for n, state in enumerate(devices)}
    bursts: list[Burst] = []

    async def burst(state: Path) -> None:
        async with Messenger.open(DeviceState.load(state, devices[state])) as messenger:
            await messenger.receive(receipts=False)  # Alice's first message
            bursts.append(await send_burst(messenger, "@alice", texts[state]))

    async def both() -> None:
        await asyncio.gather(*(burst(state) for state in devices))

    in_thread(both())
    assert len(bursts) == 2
    sent = {position: text for b in bursts for position, text in b.sent.items()}
    newest = max(sent)
    laptop.get_by_test_id("message-text").filter(has_text=sent[newest]).wait_for(timeout=60_000)

    # Acknowledged: the server holds nothing more for the laptop.
    deadline = time.monotonic() + 30
    while laptop_queue(server_process.database) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert laptop_queue(server_process.database) == 0

    # Read: a "read up to" reaches Bob that covers his newest message.
    def covers_newest(messages: list[Received]) -> bool:
        marks = [receipts.parse(m.body) for m in messages if m.kind is Kind.RECEIPT]
        return any(r.status.value == "read" and any(m.position >= newest for m in r.marks) for r in marks)

    async def read_marks() -> list[Received]:
        async with Messenger.open(DeviceState.load(bob.primary, Role.PRIMARY)) as messenger:
            return await messenger.receive(wait=30, receipts=False, until=covers_newest)

    got = in_thread(read_marks())
    assert covers_newest(got)
    count = sum(m.kind is Kind.RECEIPT for m in got)
    # One per sender and status per batch and RECEIPT_DELAY_MS (messenger.ts), not two per message.
    assert count <= 200, f"{count} receipts for 2,000 messages"

    # Shown: every message is in the conversation, reached by scrolling up a window at a time.
    shown = laptop.evaluate(READ_ALL)
    expected = {t for ts in texts.values() for t in ts}
    assert expected <= set(shown["texts"])
    watch = laptop.evaluate("window.burstWatch")
    assert watch["mostRows"] <= ROWS_BOUND and shown["most"] <= ROWS_BOUND
    # Written to IndexedDB: a batch at a time, and nothing per batch that grows with the chat (version 1
    # wrote five transactions per message, each with the whole list of seen ids: ~367 KB per message).
    assert watch["transactions"] < len(expected), watch
    assert watch["bytes"] / len(expected) < 10_000, watch
    # A batch's state is its core section, the senders' Olm sessions (one record per device, which grows to
    # a bound as the sessions keep their last receiving chains), the chat's summary and now and then the
    # Olm account (when one-time keys changed): a few KB, whatever the length of the chat. Version 1 wrote
    # every seen id with each: ~500 KB by the end of this burst.
    batches: list[dict[str, int]] = [sections for sections in watch["stateBytes"] if sections]
    assert max(sum(sections.values()) for sections in batches) <= 16_000, batches
    assert_steady(batches, ("core", "summary/"))


def assert_steady(batches: list[dict[str, int]], prefixes: tuple[str, ...]) -> None:
    """The state sections named by ``prefixes`` are about the same size (within 100 bytes: a counter's
    digits, the newest text) in the second half of the burst as in the first: they must not grow with the
    chat. The smallest of each half is compared: in some batches the core section also holds a receipt
    waiting for the server's answer (`inFlight`, ~2.3 KB), gone once answered."""
    sizes: dict[str, list[int]] = {}
    for sections in batches:
        for key, size in sections.items():
            if key.startswith(prefixes):
                sizes.setdefault(key, []).append(size)
    assert {key.split("/")[0] for key in sizes} == {p.rstrip("/") for p in prefixes}, sizes
    for key, written in sizes.items():
        half = len(written) // 2
        assert half >= 3, (key, written)  # written all through the burst, not once
        assert min(written[half:]) <= min(written[:half]) + 100, (key, written)
