"""What the Python client's E2E store costs per received message (issue 15): a device that already keeps
``--history`` messages and ``--seen`` seen ids receives ``--messages`` group (Megolm) and direct (Olm)
messages one batch each, as the inbox handles them: decrypt, remember the message, mark its id seen,
move the queue position, save (client/messaging/inbox.py); and the save before a sent request leaves
(outbox.py: durable, fsynced, in the database version); then a sender's saves around the ~42 requests
of a first group message's key share to 2,047 devices. No server: the sender is in this process.

    .venv/bin/python bench/client_store.py [--messages 500] [--history 1000] [--seen 5000]

It uses only what both store versions have (E2EStore.load_or_create, remember, seen, save), so the same
file measures an earlier checkout too: ``PYTHONPATH=<checkout>/src .venv/bin/python bench/client_store.py``
(the version before the database rewrote one e2e.json per save).
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockstep.client.e2estate import E2EStore
from lockstep.e2e.megolm import GroupSessions
from lockstep.e2e.olm import OlmDevice


def record(number: int, text: str) -> dict[str, Any]:
    return {
        "id": f"msg-{number:08d}",
        "kind": "text",
        "conversation": "group:bench",
        "sender": {"account_id": "acct-sender", "device_id": "dev-sender"},
        "ts": 1_700_000_000_000 + number,
        "body": {"text": text},
    }


def filled_store(folder: Path, history: int, seen: int) -> E2EStore:
    """A device that has been in use: ``history`` messages kept, ``seen`` ids seen."""
    store = E2EStore.load_or_create(folder)
    for number in range(history):
        store.remember(record(number, f"an earlier message of about the usual length, number {number}"))
    for number in range(seen):
        store.seen.add(f"seen-{number:08d}")
    store.save()
    return store


def measure(handle: Callable[[int], None], count: int, first: int) -> tuple[float, float]:
    """Median and 90th percentile, in ms, of ``handle(number)`` for ``count`` messages."""
    times = []
    for number in range(first, first + count):
        start = time.perf_counter()
        handle(number)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


def key_share(devices: int, per_request: int) -> tuple[int, float, float]:
    """A sender with 1,024 contacts starts an Olm session with each of ``devices`` devices in requests of
    ``per_request`` (a first group message's key share, outbox.fan_out), saving as it does around each
    request: the requests, and the seconds in all and in saves."""
    peers = [OlmDevice.create() for _ in range(devices)]
    keys = [peer.new_one_time_keys(1)[0].key for peer in peers]
    with tempfile.TemporaryDirectory() as folder:
        store = E2EStore.load_or_create(Path(folder))
        for number in range(1024):
            store.handles[f"person{number}"] = f"acct-{number}"
            devices_of = {f"dev-{number}-{d}": "k" * 43 for d in ("phone", "laptop")}
            store.contacts[f"acct-{number}"] = {"handle": f"person{number}", "devices": devices_of}
        store.save()
        durable = "durable" in inspect.signature(store.save).parameters
        start, saving, requests = time.perf_counter(), 0.0, 0
        for first in range(0, devices, per_request):
            batch = zip(peers[first : first + per_request], keys[first : first + per_request], strict=True)
            payloads = [store.olm.encrypt(p.identity_key, b"k" * 900, k).body.hex() for p, k in batch]
            saved = time.perf_counter()
            if durable:  # outbox.send_saved: kept with its ratchets, then forgotten with the answer
                store.in_flight[1] = {"fields": {"payloads": payloads}, "then": {}}
                store.save(durable=True)
                del store.in_flight[1]
            else:  # the file version saved before the request and after it
                store.save()
            store.save()
            saving += time.perf_counter() - saved
            requests += 1
        if hasattr(store, "close"):
            store.close()
        return requests, time.perf_counter() - start, saving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500, help="messages of each kind received")
    parser.add_argument("--history", type=int, default=1000, help="messages the device keeps already")
    parser.add_argument("--seen", type=int, default=5000, help="message ids it has seen already")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = filled_store(Path(folder), args.history, args.seen)
        sender, sender_groups = OlmDevice.create(), GroupSessions()
        (one_time,) = store.olm.new_one_time_keys(1)
        store.olm.decrypt(sender.identity_key, sender.encrypt(store.olm.identity_key, b"hello", one_time.key))
        share = sender_groups.prepare("bench", {"dev-receiver"})
        store.groups.add_inbound("dev-sender", "sender-key", share.body)
        store.save()
        session_id = share.body["session_id"]
        total = args.messages
        group = [sender_groups.encrypt("bench", b"a group message " * 4) for _ in range(total)]
        direct = [sender.encrypt(store.olm.identity_key, b"a direct message " * 4) for _ in range(total)]
        saves: list[float] = []

        def received(number: int, plaintext: bytes) -> None:
            store.remember(record(number, plaintext.decode()))
            store.seen.add(f"msg-{number:08d}")
            store.last_seq += 1
            start = time.perf_counter()
            store.save()
            saves.append((time.perf_counter() - start) * 1000)

        def group_message(number: int) -> None:
            opened = store.groups.decrypt("dev-sender", session_id, group[number - first_group])
            received(number, opened.plaintext)

        def direct_message(number: int) -> None:
            received(number, store.olm.decrypt(sender.identity_key, direct[number - first_direct]))

        durable = "durable" in inspect.signature(store.save).parameters  # the database's FULL commit

        def sent_message(number: int) -> None:
            store.olm.encrypt(sender.identity_key, b"a direct message " * 4)
            start = time.perf_counter()
            store.save(durable=True) if durable else store.save()
            saves.append((time.perf_counter() - start) * 1000)

        first_group = args.history
        first_direct = first_group + total
        results = {
            "group (Megolm)": measure(group_message, total, first_group),
            "direct (Olm)": measure(direct_message, total, first_direct),
            "sent direct (saved before it leaves)": measure(sent_message, min(total, 100), 0),
        }
        files = {p.name: p.stat().st_size for p in Path(folder).iterdir() if p.is_file()}
        if hasattr(store, "close"):
            store.close()
    print(f"a device keeping {args.history} messages and {args.seen} seen ids receives {total} of each:")
    print("| message | handle + save, median | 90th percentile | save alone, median |")
    print("|---|---|---|---|")
    cuts = (saves[:total], saves[total : 2 * total], saves[2 * total :])
    for (kind, (median, p90)), kind_saves in zip(results.items(), cuts, strict=True):
        print(f"| {kind} | {median:.2f} ms | {p90:.2f} ms | {statistics.median(kind_saves):.2f} ms |")
    print("files:", ", ".join(f"{name} {size // 1024} KiB" for name, size in sorted(files.items())))
    requests, total, saving = key_share(2 * 1024 - 1, 49)
    print(f"a first message's key share to {2 * 1024 - 1} devices in {requests} requests (1,024 contacts):")
    per_request = saving / requests * 1000
    print(f"{total:.2f} s in all, {saving:.2f} s of it saving ({per_request:.1f} ms per request)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
