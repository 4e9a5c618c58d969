"""Per-device ciphertext queues: ordered sequence numbers, at most one copy of a message per device.

Each device has one counter row (``device_sequences``). :func:`enqueue` locks it before anything else
(an upsert that changes nothing still takes the row lock on PostgreSQL), so concurrent sends to a
device take turns: the second sees what the first queued, skips a retried duplicate, and gets the
next number, with no gap. Devices are locked in id order, so two sends to overlapping groups cannot
deadlock. The unique index ``message_queue_once`` stays as the last line of defence.
"""

from __future__ import annotations

import json

from lockstep.server.store.records import Delivery, QueuedMessage, StrangerLimits
from lockstep.server.store.sql import Work, execute, json_text, query, query_one
from lockstep.server.store.strangers import StrangerCheck, introduce


def enqueue(
    delivery: Delivery, now: int, strangers: StrangerLimits | None
) -> Work[list[tuple[str, QueuedMessage]]]:
    """Append each payload to its device's queue with that device's next sequence number.

    A (device, sender device, message id) already queued is skipped, so a retried send is not
    delivered twice while it waits. With ``strangers``, the whole send is refused
    (:class:`StrangerLimit`) if it would queue more than they allow from accounts a recipient
    never wrote to; a send that ``introduces`` makes its conversation known to the sender.
    The result keeps the order of ``delivery.payloads``.
    """
    queued: dict[int, tuple[str, QueuedMessage]] = {}
    check = None if strangers is None else StrangerCheck(delivery, strangers)
    if check is not None:
        yield from check.load_owners()
    order = sorted(range(len(delivery.payloads)), key=lambda index: delivery.payloads[index][0])
    for index in order:
        device_id, payload = delivery.payloads[index]
        locked = yield from query_one(
            "INSERT INTO device_sequences (device_id, last_seq) VALUES (?, 0) ON CONFLICT (device_id) "
            "DO UPDATE SET last_seq = device_sequences.last_seq RETURNING last_seq",
            device_id,
        )
        assert locked is not None
        duplicate = yield from query_one(
            "SELECT 1 FROM message_queue WHERE device_id = ? AND sender_device = ? AND message_id = ?",
            device_id,
            delivery.sender_device,
            delivery.message_id,
        )
        if duplicate:
            continue
        encoded = json_text(payload)
        if check is not None:
            yield from check.admit(device_id, len(encoded))
        seq = int(locked[0]) + 1
        yield from execute("UPDATE device_sequences SET last_seq = ? WHERE device_id = ?", seq, device_id)
        message = QueuedMessage(
            seq,
            delivery.message_id,
            delivery.sender_account,
            delivery.sender_device,
            delivery.group_id,
            payload,
            now,
        )
        yield from execute(
            "INSERT INTO message_queue (device_id, seq, message_id, sender_account, sender_device, "
            "group_id, payload, server_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            device_id,
            seq,
            message.message_id,
            message.sender_account,
            message.sender_device,
            message.group_id,
            encoded,
            now,
        )
        queued[index] = (device_id, message)
    yield from introduce(delivery)
    return [queued[index] for index in sorted(queued)]


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


def ack_messages(device_id: str, up_to: int) -> Work[int]:
    return (
        yield from execute("DELETE FROM message_queue WHERE device_id = ? AND seq <= ?", device_id, up_to)
    )
