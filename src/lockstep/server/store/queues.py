"""Per-device ciphertext queues: ordered sequence numbers, at most one copy of a message per device.

A send is a few multi-row statements whatever its number of devices (``enqueue``). First each
device's counter row (``device_sequences``) is counted up by one in an upsert that returns the new
numbers; that also locks the rows on PostgreSQL, so concurrent sends to a device take turns, in
device id order (two sends to overlapping groups cannot deadlock). Then the copies are inserted with
``ON CONFLICT DO NOTHING`` on the unique index ``message_queue_once``: a retried message a device
already holds is skipped, and its number is given back, so numbers have no gap. Under the row lock,
the insert sees every copy committed before, on any instance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lockstep.server.store.audience import audience
from lockstep.server.store.records import Audience, Conversation, Delivery, QueuedMessage, StrangerLimits
from lockstep.server.store.sql import (
    Row,
    Work,
    chunks,
    execute,
    json_text,
    marks,
    query,
    query_one,
)
from lockstep.server.store.strangers import StrangerCheck, introduce

Plan = Callable[[Audience | None], Delivery]
"""Checks a send against whom it may reach (None: its group or recipient does not exist) and gives what
to queue, or raises to refuse it (nothing is written)."""


def send(
    conversation: Conversation, plan: Plan, now: int, strangers: StrangerLimits | None
) -> Work[tuple[Delivery, list[tuple[str, QueuedMessage]]]]:
    """Read the conversation's devices, check the send against them and queue it: one transaction."""
    found = yield from audience(conversation)
    delivery = plan(found)
    return delivery, (yield from enqueue(delivery, now, strangers, found))


def enqueue(
    delivery: Delivery,
    now: int,
    strangers: StrangerLimits | None,
    known: Audience | None = None,
) -> Work[list[tuple[str, QueuedMessage]]]:
    """Append each payload to its device's queue with that device's next sequence number.

    A (device, sender device, message id) already queued is skipped, so a retried send is not
    delivered twice while it waits. With ``strangers``, the whole send is refused
    (:class:`StrangerLimit`) if it would queue more than they allow from accounts a recipient
    never wrote to; a send that ``introduces`` makes its conversation known to the sender.
    ``known``: the conversation's audience, if the caller has read it already (no need to read whose
    the devices are and who wrote into the conversation again).
    The result keeps the order of ``delivery.payloads``.
    """
    texts = _encoded(delivery.payloads)
    devices = sorted(texts)
    numbers = yield from _count_up(devices)
    if strangers is not None:  # a recipient who never wrote back: a large group's silent members
        check = yield from StrangerCheck.load(delivery, strangers, known)
        unknown = check.stranger_devices(devices)
        holding = yield from _holding(unknown, delivery)  # a retry's copies are counted already
        sizes = {device_id: len(texts[device_id]) for device_id in unknown if device_id not in holding}
        yield from check.admit(sizes)
    inserted: set[str] = set()
    for chunk in chunks(devices):
        rows = yield from query(
            _insert_copies(len(chunk)),
            *(
                value
                for device_id in chunk
                for value in (
                    device_id,
                    numbers[device_id],
                    delivery.message_id,
                    delivery.sender_account,
                    delivery.sender_device,
                    delivery.group_id,
                    texts[device_id],
                    now,
                )
            ),
        )
        inserted.update(row[0] for row in rows)
    if held := [device_id for device_id in devices if device_id not in inserted]:
        yield from _give_back(held)
    if known is None or delivery.sender_account not in known.knows:
        yield from introduce(delivery)
    return [
        (device_id, _message(delivery, numbers[device_id], payload, now))
        for device_id, payload in delivery.payloads
        if device_id in inserted
    ]


def _encoded(payloads: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Each device's payload as stored; one payload shared by many devices (a group's Megolm
    message) is encoded once."""
    texts: dict[int, str] = {}
    encoded: dict[str, str] = {}
    for device_id, payload in payloads:
        text = texts.get(id(payload))
        if text is None:
            text = texts[id(payload)] = json_text(payload)
        encoded[device_id] = text
    return encoded


def _insert_copies(count: int) -> str:
    """Insert ``count`` copies; returns the devices that did not hold the message yet."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    return (
        "INSERT INTO message_queue (device_id, seq, message_id, sender_account, sender_device, "  # noqa: S608 - only placeholders
        f"group_id, payload, server_time) VALUES {values} "
        "ON CONFLICT (device_id, sender_device, message_id) DO NOTHING RETURNING device_id"
    )


def _count_up_rows(count: int) -> str:
    """Count ``count`` devices' sequences up by one (a device's first message is number 1)."""
    values = ", ".join(["(?, 1)"] * count)
    return (
        f"INSERT INTO device_sequences (device_id, last_seq) VALUES {values} "  # noqa: S608 - only placeholders
        "ON CONFLICT (device_id) DO UPDATE SET last_seq = device_sequences.last_seq + 1 "
        "RETURNING device_id, last_seq"
    )


def _count_up(device_ids: list[str]) -> Work[dict[str, int]]:
    """Each device's next sequence number, taken (and its counter row locked) in id order."""
    numbers: dict[str, int] = {}
    for chunk in chunks(device_ids):
        rows = yield from query(_count_up_rows(len(chunk)), *chunk)
        numbers.update((device_id, int(seq)) for device_id, seq in rows)
    return numbers


def _give_back(device_ids: list[str]) -> Work[None]:
    """Undo ``_count_up`` for devices that already held the message (their rows are still locked)."""
    for chunk in chunks(device_ids):
        yield from execute(
            f"UPDATE device_sequences SET last_seq = last_seq - 1 WHERE device_id IN ({marks(len(chunk))})",  # noqa: S608
            *chunk,
        )


def _holding(device_ids: list[str], delivery: Delivery) -> Work[set[str]]:
    """Those of ``device_ids`` that hold this message already (a retry)."""
    holding: set[str] = set()
    for chunk in chunks(device_ids):
        rows = yield from query(
            "SELECT device_id FROM message_queue WHERE sender_device = ? AND message_id = ? "  # noqa: S608
            f"AND device_id IN ({marks(len(chunk))})",
            delivery.sender_device,
            delivery.message_id,
            *chunk,
        )
        holding.update(device_id for (device_id,) in rows)
    return holding


def _message(delivery: Delivery, seq: int, payload: dict[str, Any], now: int) -> QueuedMessage:
    return QueuedMessage(
        seq,
        delivery.message_id,
        delivery.sender_account,
        delivery.sender_device,
        delivery.group_id,
        payload,
        now,
    )


def fetch_messages(device_id: str, after: int, limit: int) -> Work[list[QueuedMessage]]:
    rows = yield from query(
        "SELECT seq, message_id, sender_account, sender_device, group_id, payload, server_time "
        "FROM message_queue WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        device_id,
        after,
        limit,
    )
    return [QueuedMessage(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]


def newest_queued(device_ids: list[str]) -> Work[dict[str, QueuedMessage]]:
    """Each device's last queued message, for devices with any: announcing it makes a client that
    missed events fetch everything before it (its sequence number shows the gap)."""
    newest: dict[str, QueuedMessage] = {}
    for device_id in device_ids:
        row = yield from query_one(
            "SELECT seq, message_id, sender_account, sender_device, group_id, payload, server_time "
            "FROM message_queue WHERE device_id = ? ORDER BY seq DESC LIMIT 1",
            device_id,
        )
        if row is not None:
            newest[device_id] = QueuedMessage(
                row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6]
            )
    return newest


Ack = tuple[str, int]
"""A device acknowledging everything queued for it up to a sequence number (messaging.md §7.2)."""


def ack_messages(acks: list[Ack]) -> Work[list[int]]:
    """Delete what each ack covers, ``ROWS_PER_STATEMENT`` acks to a statement; gives how many copies
    each deleted, as if they had run one after another in order (a device may ack twice in a batch).
    Run more than one statement's worth as one transaction: a rerun after a chunk had been committed
    would count that chunk's copies as deleted by nobody."""
    deleted: list[Row] = []
    for chunk in chunks(acks):
        covered = " OR ".join(["(device_id = ? AND seq <= ?)"] * len(chunk))
        deleted += yield from query(
            f"DELETE FROM message_queue WHERE {covered} RETURNING device_id, seq",  # noqa: S608
            *(value for ack in chunk for value in ack),
        )
    return deleted_by_each(acks, [(str(device_id), int(seq)) for device_id, seq in deleted])


def deleted_by_each(acks: list[Ack], deleted: list[Ack]) -> list[int]:
    """Share the deleted ``(device, seq)`` rows out among ``acks`` in order: each ack deleted its
    device's rows above what an earlier ack of the same device in the batch covered."""
    seqs: dict[str, list[int]] = {}
    for device_id, seq in deleted:
        seqs.setdefault(device_id, []).append(seq)
    covered: dict[str, int] = {}
    counts: list[int] = []
    for device_id, up_to in acks:
        floor = covered.get(device_id, -1)
        counts.append(sum(1 for seq in seqs.get(device_id, ()) if floor < seq <= up_to))
        covered[device_id] = max(floor, up_to)
    return counts
