"""A burst of direct messages from a Python device, as fast as the server takes them (issue 15's burst
test and bench/burst.py).

The first message goes through the messenger as any other (it starts the Olm sessions); the rest are
encrypted in order with the same sessions and sent without waiting for each reply, ``window`` requests
in flight on the one socket. The server handles a socket's requests one after the other, so they are
queued for the recipients in the order they were encrypted. The E2E state is saved once, at the end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from lockstep.client.messaging.records import new_message_id
from lockstep.client.messenger import Messenger
from lockstep.e2e.envelope import Kind, direct_conversation
from lockstep.e2e.receipts import Position


@dataclass
class Burst:
    last_accepted: float = 0.0
    """When the server accepted the last send (``time.time()``, comparable with a browser's Date.now())."""
    sent: dict[Position, str] = field(default_factory=dict)
    """Each message's place in the conversation (ts, id) → its text (all but the first)."""


async def send_burst(messenger: Messenger, handle: str, texts: list[str], window: int = 64) -> Burst:
    """Sends ``texts`` to ``handle`` in this order."""
    device, outbox = messenger.device, messenger.outbox
    first, *rest = texts
    result = Burst()
    await messenger.send(handle, first)
    peer = await messenger.contacts.get(handle=handle)
    me = await messenger.contacts.get(account_id=device.account_id)
    targets = [k for c in (peer, me) for k in c.keys.values() if k.device_id != device.device_id]
    conversation = direct_conversation(device.account_id, peer.account.account_id)
    slots = asyncio.Semaphore(window)

    async def send(message_id: str, payloads: list[dict[str, object]]) -> None:
        try:
            await device.request(
                "messages.send", message_id=message_id, to=peer.account.account_id, payloads=payloads
            )
            result.last_accepted = max(result.last_accepted, time.time())
        finally:
            slots.release()

    sends = []
    for text in rest:
        await slots.acquire()
        envelope = device.envelope(Kind.TEXT, conversation, {"text": text}, new_message_id())
        result.sent[Position(envelope.timestamp, envelope.message_id)] = text
        payloads = await outbox.olm_payloads(targets, envelope.encode())
        sends.append(asyncio.create_task(send(envelope.message_id, payloads)))
    try:
        await asyncio.gather(*sends)
    finally:
        device.store.save()
    return result
