"""Receiving (messaging.md §5.2, §7.2): everything queued for this device, in queue order, exactly once.

Each batch is opened, saved (ratchets and what to show) and only then acknowledged, so a crash or a
lost acknowledgement re-delivers what the saved message ids then drop as duplicates. What a batch
brought waits as *unreported* until the application takes it. Opening checks the sender's key against
its account's signed device list, the envelope's routing against the queue item's, and the
conversation against this account; a message that fails any check is kept as ``undecryptable``,
with nothing of its content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from lockstep.client.e2estate import E2EStore
from lockstep.client.errors import ClientError, ConnectionLost, StateError
from lockstep.client.messaging.contacts import Contacts
from lockstep.client.messaging.device import Device
from lockstep.client.messaging.groups import judge_change
from lockstep.client.messaging.history import History
from lockstep.client.messaging.keys import publish_keys
from lockstep.client.messaging.media import MediaTransfer
from lockstep.client.messaging.outbox import Outbox
from lockstep.client.messaging.records import Received, history_record
from lockstep.client.session import DeviceUnlinked
from lockstep.e2e import receipts
from lockstep.e2e.actions import TARGETED
from lockstep.e2e.envelope import Kind, MessageEnvelope, ReceiptStatus, group_conversation
from lockstep.e2e.errors import E2EError, EnvelopeError, KeyBundleError
from lockstep.e2e.olm import OlmCiphertext, OlmType
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.envelope import Envelope
from lockstep.link.errors import LinkError

log = logging.getLogger(__name__)

FETCH_LIMIT = 200


class Inbox:
    def __init__(
        self, device: Device, contacts: Contacts, outbox: Outbox, history: History, media: MediaTransfer
    ) -> None:
        self.device = device
        self.contacts = contacts
        self.outbox = outbox
        self.history = history
        self.media = media
        self.auto_download = True
        try:
            self._unreported = [Received.from_record(record) for record in device.store.unreported]
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"damaged E2E state: an unreported message: {error}") from error

    @property
    def store(self) -> E2EStore:
        return self.device.store

    async def receive(
        self,
        wait: float = 0.0,
        *,
        receipts: bool = True,
        until: Callable[[list[Received]], bool] | None = None,
        settle: float = 0.3,
    ) -> list[Received]:
        """Everything queued for this device, then live messages for up to ``wait`` seconds; in
        order, exactly once. With ``until``, stop early once ``until(received)`` holds and nothing more
        arrived for ``settle`` seconds.

        Each batch is saved before it is acknowledged, together with its messages as unreported; they
        are returned (first) by the next call that completes, so a connection lost after a save never
        hides them. Text and media from others get a ``delivered`` receipt unless ``receipts`` is False.
        """
        try:
            return await self._receive(wait, receipts, until, settle)
        except ConnectionLost:
            await self._unlinked_while_away()
            raise

    async def _unlinked_while_away(self) -> None:
        """After the socket closed: if the server said why (``device.unlinked``), forget everything."""
        with contextlib.suppress(ConnectionLost, TimeoutError):
            while True:
                event = await self.device.session.connection.next_event(timeout=0.1)
                if event.get("event") == "device.unlinked":
                    self.device.unlinked()

    async def _receive(
        self,
        wait: float,
        receipts: bool,
        until: Callable[[list[Received]], bool] | None,
        settle: float,
    ) -> list[Received]:
        connection = self.device.session.connection
        await self._fetch_all()
        try:
            await self.history.sync()
        except ConnectionLost:
            raise
        except (ClientError, E2EError) as error:  # never a reason not to show what arrived
            log.warning("history for a new companion not sent this time: %s", error)
        loop_time = asyncio.get_running_loop().time
        deadline = loop_time() + wait
        while (remaining := deadline - loop_time()) > 0:
            if until is not None and until(self._unreported):
                remaining = min(remaining, settle)
            try:
                event = await connection.next_event(timeout=remaining)
            except TimeoutError:
                if until is None or until(self._unreported):
                    break
                continue
            await self.handle_events([event, *connection.drain_events()])
        if receipts:
            await self.outbox.send_receipts(self._unreported, ReceiptStatus.DELIVERED)
        return self.take_unreported()

    def take_unreported(self, which: Callable[[Received], bool] = lambda message: True) -> list[Received]:
        """Hand over, once, every message handled (saved, maybe acknowledged) and not handed over yet;
        including those of an earlier session whose connection dropped before they could be. With
        ``which``, only those (a call takes its signals and leaves the rest for ``receive``)."""
        taken = [m for m in self._unreported if which(m)]
        if taken:
            self._unreported = [m for m in self._unreported if not which(m)]
            left = {m.message_id for m in self._unreported}
            # The records kept, not copies of them: the store rewrites only the rows that changed.
            self.store.unreported[:] = [r for r in self.store.unreported if r.get("message_id") in left]
            self.store.save()
        return taken

    async def handle_events(self, events: list[dict[str, Any]]) -> None:
        """Handle pushed events; the ``message`` events among them as one batch (one save, one ack)
        as far as their sequence numbers follow on from ``last_seq``; a gap makes it fetch in order.
        The messages wait for :meth:`take_unreported` (or the next :meth:`receive`)."""
        messages = sorted((e for e in events if e.get("event") == "message"), key=lambda e: int(e["seq"]))
        for event in events:
            if event.get("event") != "message":
                await self._on_event(event)
        expected, batch = self.store.last_seq + 1, []
        for event in messages:
            seq = int(event["seq"])
            if seq < expected:
                continue
            if seq > expected:
                break
            batch.append(event)
            expected += 1
        await self._handle_batch(batch)
        if messages and int(messages[-1]["seq"]) > self.store.last_seq:
            await self._fetch_all()  # a gap: the server has what is missing, in order

    async def _on_event(self, event: dict[str, Any]) -> None:
        device = self.device
        kind = event.get("event")
        if kind == "devices.changed":
            try:
                device.session.accept_device_list(Envelope.from_json(event["device_list"]))
            except StateError as error:
                if isinstance(error, DeviceUnlinked):
                    raise
                log.warning("ignored a device list: %s", error)
            self.contacts.forget(device.account_id)
        elif kind == "device.unlinked":
            device.unlinked()
        elif kind == "keys.low":
            await publish_keys(device)
        elif kind == "groups.changed":
            await judge_change(device, self.contacts, event)
            change = event.get("change", {})
            if change.get("kind") == "removed" and change.get("account_id") == device.account_id:
                self.store.groups.forget_outbound(str(event["group_id"]))
                self.store.save()

    async def fetch(self) -> None:
        """Handle everything queued for this device now (it waits for :meth:`take_unreported`)."""
        await self._fetch_all()

    async def _fetch_all(self) -> None:
        after = 0  # from the start of what the server holds: it also re-offers what was never acked
        while True:
            result = await self.device.request("messages.fetch", after=after, limit=FETCH_LIMIT)
            await self._handle_batch(result["messages"])
            if not result["more"]:
                return
            after = max(int(m["seq"]) for m in result["messages"])

    async def _handle_batch(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        store = self.store
        for item in sorted(items, key=lambda i: int(i["seq"])):
            seq = int(item["seq"])
            if seq <= store.last_seq:
                continue  # handled before a crash or a lost acknowledgement
            message_id = item.get("message_id")
            if isinstance(message_id, str) and message_id not in store.seen:
                try:
                    message = await self._open(item)
                except (KeyError, TypeError, ValueError) as error:  # a malformed item from the server
                    log.warning("dropped a malformed queued message: %s", type(error).__name__)
                    message = None
                store.seen.add(message_id)
                if message is not None:
                    self._unreported.append(message)
                    store.unreported.append(message.to_record())
            store.last_seq = seq
        # Ratchets, and what to show, on disk before the server forgets the ciphertext: if the ack is
        # lost, the re-delivery is a duplicate by then, and only this saved copy can still be shown.
        store.save()
        await self.device.request("messages.ack", up_to=store.last_seq)

    async def _open(self, item: dict[str, Any]) -> Received | None:
        sender = item["sender"]
        sender_account, sender_device = str(sender["account_id"]), str(sender["device_id"])
        group_id = item.get("group_id")
        message = Received(
            int(item["seq"]),
            str(item["message_id"]),
            Kind.UNDECRYPTABLE,
            sender_account,
            sender_device,
            self.contacts.handle_of(sender_account),
            int(item["server_time"]),
            group_id,
        )
        payload = item["payload"]
        try:
            sender_key, former = b"", None
            if payload.get("type") == "olm":
                sender_key = b64u_decode(payload["sender_key"], length=32)
                former = await self.contacts.check_sender_key(sender_account, sender_device, sender_key)
                ciphertext = OlmCiphertext(OlmType(payload["olm_type"]), b64u_decode(payload["ciphertext"]))
                plaintext = self.store.olm.decrypt(sender_key, ciphertext)
            elif payload.get("type") == "megolm" and group_id is not None:
                opened = self.store.groups.decrypt(
                    sender_device, str(payload["session_id"]), b64u_decode(payload["ciphertext"])
                )
                if opened.group_id != group_id:
                    raise EnvelopeError("a group message under another group's key")
                plaintext = opened.plaintext
            else:
                raise EnvelopeError("an unknown payload type")
            envelope = MessageEnvelope.decode(plaintext)
            envelope.check_routing(message.message_id, sender_account, sender_device)
            if former is not None and not former.sent_while_listed(message.server_time, envelope.timestamp):
                raise KeyBundleError("this message was sent after its device was unlinked")
            self._check_conversation(envelope, group_id)
            message.sender_handle = self.contacts.handle_of(sender_account)
            message.kind, message.conversation = envelope.kind, envelope.conversation
            message.timestamp, message.body = envelope.timestamp, envelope.body
            return await self._act(envelope, message, payload, sender_key)
        except (E2EError, LinkError, KeyError, ValueError, TypeError) as error:
            message.kind, message.error = Kind.UNDECRYPTABLE, str(error) or type(error).__name__
            message.body = {}  # nothing of a refused message is shown
            log.info("message %s could not be read: %s", message.message_id, type(error).__name__)
            return message

    def _check_conversation(self, envelope: MessageEnvelope, group_id: str | None) -> None:
        if group_id is not None:
            if envelope.conversation != group_conversation(group_id):
                raise EnvelopeError("a group message that names another conversation")
            return
        parts = envelope.conversation.split(":")
        if parts[0] != "direct" or len(parts) != 3 or self.device.account_id not in parts[1:]:
            raise EnvelopeError("a direct message for a conversation this account is not in")
        if envelope.sender_account not in parts[1:]:
            raise EnvelopeError("a direct message from outside its conversation")

    async def _act(
        self, envelope: MessageEnvelope, message: Received, payload: dict[str, Any], sender_key: bytes
    ) -> Received | None:
        store = self.store
        if envelope.kind is Kind.GROUP_KEY:
            if payload.get("type") != "olm":
                raise EnvelopeError("group keys travel only over Olm")
            if message.group_id is None or envelope.body.get("group_id") != message.group_id:
                raise EnvelopeError("a group key for another group than the one it was routed through")
            store.groups.add_inbound(envelope.sender_device, b64u_encode(sender_key), envelope.body)
        elif envelope.kind is Kind.GROUP_INFO:
            name = envelope.body.get("name")
            if (
                isinstance(name, str)
                and message.group_id
                and envelope.body.get("group_id") == message.group_id
            ):
                store.group_names[message.group_id] = name[:100]
        elif envelope.kind is Kind.RECEIPT:
            if envelope.sender_account != self.device.account_id:
                store.note_receipt(envelope.sender_account, receipts.parse(envelope.body))
        elif envelope.kind is Kind.HISTORY:
            await self.history.import_bundle(envelope, message)
        elif envelope.kind is Kind.HISTORY_REQUEST:
            await self.history.serve_request(envelope)
        elif envelope.kind in TARGETED:
            store.keep_action(history_record(envelope, message.server_time))
        elif envelope.kind in (Kind.TEXT, Kind.MEDIA):
            if store.has_message(envelope.message_id):  # ids name one message for good: never replaced
                raise EnvelopeError("a message id that is already used")
            store.remember(history_record(envelope))
            if envelope.kind is Kind.MEDIA and self.auto_download:
                try:
                    message.file = await self.media.download(envelope.body["media"])
                except (E2EError, ClientError) as error:
                    message.error = f"media rejected: {error}"
        return message
