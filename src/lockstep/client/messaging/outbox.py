"""Sending (messaging.md §4, §6.1, §7.2): every message is encrypted here, never on the server.

A direct message goes as one Olm ciphertext per device of the recipient and per other device of ours;
a group message as one Megolm ciphertext that the server copies to every member device, after the
group session key went over Olm to each device that lacks it. The server refuses a send that misses a
device (``devices_changed``); :func:`retry_on_changed_devices` is the one place that answers that, by
reading the device lists again and sending anew.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lockstep.client.errors import ClientError, ServerRefused
from lockstep.client.messaging.contacts import Contacts
from lockstep.client.messaging.device import MAX_FRAME, TOO_LARGE, Device
from lockstep.client.messaging.records import Contact, Received, Sent, history_record, new_message_id
from lockstep.e2e import receipts
from lockstep.e2e.actions import TARGETED
from lockstep.e2e.envelope import (
    Kind,
    MessageEnvelope,
    ReceiptStatus,
    direct_conversation,
    group_conversation,
)
from lockstep.e2e.errors import E2EError
from lockstep.e2e.fanout import FanoutTooLarge, plan_requests
from lockstep.e2e.keys import DeviceKeys, OneTimeKey
from lockstep.link.encoding import b64u_encode
from lockstep.server.errors import ErrorCode

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 3
MAX_PAYLOADS = 1024
"""Olm payloads the server takes in one ``messages.send`` (messaging.md §7.2)."""
T = TypeVar("T")


async def retry_on_changed_devices(attempt: Callable[[bool], Awaitable[T]]) -> T:
    """Run ``attempt(refresh)``, first with the device lists at hand (``refresh=False``); each time the
    server answers that they changed, again with fresh ones, :data:`SEND_ATTEMPTS` times in all."""
    for number in range(SEND_ATTEMPTS - 1):
        try:
            return await attempt(number > 0)
        except ServerRefused as error:
            if error.code != ErrorCode.DEVICES_CHANGED:
                raise
            log.info("the device lists changed while sending; reading them again")
    return await attempt(SEND_ATTEMPTS > 1)


class Outbox:
    def __init__(self, device: Device, contacts: Contacts) -> None:
        self.device = device
        self.contacts = contacts

    async def olm_payloads(self, targets: list[DeviceKeys], plaintext: bytes) -> list[dict[str, Any]]:
        """One Olm ciphertext of ``plaintext`` per target device, starting a session (with a claimed
        one-time key) for each device this one has none with yet."""
        olm = self.device.store.olm
        missing = [k for k in targets if not olm.has_session(k.identity_key)]
        one_time: dict[str, bytes] = {}
        if missing:
            claimed = (await self.device.request("keys.claim", device_ids=[k.device_id for k in missing]))[
                "devices"
            ]
            for keys in missing:
                entry = claimed.get(keys.device_id) or {}
                if entry.get("one_time_key") is None:
                    raise ClientError(f"device {keys.device_id} has no one-time keys left; try again later")
                key = OneTimeKey.from_json(entry["one_time_key"])
                key.verify(keys.signing_key)
                one_time[keys.device_id] = key.key
        payloads = []
        for keys in targets:
            ciphertext = olm.encrypt(keys.identity_key, plaintext, one_time.get(keys.device_id))
            payloads.append(
                {
                    "device_id": keys.device_id,
                    "type": "olm",
                    "olm_type": int(ciphertext.type),
                    "sender_key": b64u_encode(olm.identity_key),
                    "ciphertext": b64u_encode(ciphertext.body),
                }
            )
        return payloads

    async def fan_out(
        self,
        targets: list[DeviceKeys],
        plaintext: bytes,
        fields: dict[str, Any],
        *,
        whole: bool = False,
        accepted: Callable[[list[str], dict[str, Any]], None] = lambda device_ids, answer: None,
    ) -> list[dict[str, Any]]:
        """Send ``plaintext`` over Olm to every target as ``messages.send`` with ``fields`` (message id
        and routing), in as many requests as it takes to keep each under the frame limit (§6.3); one
        only, or nothing at all, if ``whole`` (a direct message reaches all its devices at once).

        The split is planned before anything is encrypted, and one-time keys are claimed per request
        just before it is sent, so none is claimed for a request the client would refuse, nor for the
        requests after one the server refused. The ratchet steps a request's ciphertexts used are
        saved before it is sent (messaging.md §11, "Saved before sent"); each accepted request is
        reported to ``accepted`` (its devices and the server's answer) and saved, with what
        ``accepted`` recorded, before the next. Every request carries the same message id, so the
        server queues a copy at most once per device however often the rest is retried.
        """
        budget = MAX_FRAME - len(json.dumps({**fields, "payloads": []}))
        by_device = {keys.device_id: keys for keys in targets}
        try:
            requests = plan_requests(list(by_device), len(plaintext), budget, MAX_PAYLOADS)
        except FanoutTooLarge as error:
            raise ClientError(TOO_LARGE) from error
        if whole and len(requests) > 1:
            raise ClientError(TOO_LARGE)
        results = []
        for device_ids in requests:
            try:
                payloads = await self.olm_payloads([by_device[d] for d in device_ids], plaintext)
                self.device.store.save()  # a step whose ciphertext left must never be used again
                results.append(await self.device.request("messages.send", **fields, payloads=payloads))
                accepted(device_ids, results[-1])
            finally:
                self.device.store.save()  # what `accepted` recorded (or sessions begun, if a claim failed)
        return results

    async def send_direct(
        self, handle: str, kind: Kind, body: dict[str, Any], *, message_id: str | None = None
    ) -> Sent:
        """Encrypt for every device of ``handle`` and every other device of ours, and send."""
        peer = await self.contacts.get(handle=handle)
        return await self.send_to_contact(peer, kind, body, message_id or new_message_id())

    async def send_to_contact(self, peer: Contact, kind: Kind, body: dict[str, Any], message_id: str) -> Sent:
        device = self.device
        peer_id = peer.account.account_id
        conversation = direct_conversation(device.account_id, peer_id)

        async def attempt(refresh: bool) -> Sent:
            nonlocal peer
            if refresh:
                peer = await self.contacts.get(account_id=peer_id, refresh=True)
            me = await self.contacts.get(account_id=device.account_id, refresh=refresh)
            envelope = device.envelope(kind, conversation, body, message_id)
            if not peer.keys:
                raise ClientError(f"@{peer.account.handle} has no device that can receive messages yet")
            targets = {
                k.device_id: k for c in (peer, me) for k in c.keys.values() if k.device_id != device.device_id
            }
            fields = {
                "message_id": message_id,
                "to": peer_id,
                # so that a receipt does not make the peer a known contact (SECURITY.md)
                **({"receipt": True} if kind is Kind.RECEIPT else {}),
            }
            (result,) = await self.fan_out(
                list(targets.values()),
                envelope.encode(),
                fields,
                whole=True,
                accepted=lambda device_ids, answer: self._record_sent(
                    envelope, [peer_id], int(answer["server_time"])
                ),
            )
            own = sum(1 for k in targets.values() if k.account_id == device.account_id)
            return Sent(message_id, conversation, len(targets), int(result["server_time"]), own)

        return await retry_on_changed_devices(attempt)

    async def send_group(
        self, group_id: str, kind: Kind, body: dict[str, Any], *, message_id: str | None = None
    ) -> Sent:
        """Share the group session key with devices that lack it (rotating first if a device left),
        then send one Megolm ciphertext that the server copies to every member device."""
        device, groups = self.device, self.device.store.groups
        message_id = message_id or new_message_id()
        conversation = group_conversation(group_id)

        async def attempt(refresh: bool) -> Sent:
            group = await device.request("groups.get", group_id=group_id)
            refused = set(device.store.refused_members.get(group_id, []))  # linking.md §4.6
            if device.account_id in refused:
                raise ClientError("this group was made by a device on probation: this device refuses it")
            members = [m["account_id"] for m in group["members"] if m["account_id"] not in refused]
            keyed = {account_id: set(group["devices"].get(account_id, [])) for account_id in members}
            contacts = await self.contacts.get_many(keyed, refresh=refresh)
            targets = {
                k.device_id: k for c in contacts for k in c.keys.values() if k.device_id != device.device_id
            }
            share = groups.prepare(group_id, set(targets))
            try:
                if share.devices:
                    key_message = device.envelope(Kind.GROUP_KEY, conversation, share.body, share.message_id)
                    await self.fan_out(
                        [targets[d] for d in sorted(share.devices)],
                        key_message.encode(),
                        {"message_id": share.message_id, "group_id": group_id},
                        accepted=lambda device_ids, answer: groups.mark_shared(group_id, set(device_ids)),
                    )
                envelope = device.envelope(kind, conversation, body, message_id)
                ciphertext = groups.encrypt(group_id, envelope.encode())
                device.store.save()  # an index whose ciphertext left must never be used again
                result = await device.request(
                    "messages.send",
                    message_id=message_id,
                    group_id=group_id,
                    megolm={"session_id": groups.session_id(group_id), "ciphertext": b64u_encode(ciphertext)},
                )
                self._record_sent(
                    envelope, [m for m in members if m != device.account_id], int(result["server_time"])
                )
            finally:
                device.store.save()
            own = sum(1 for k in targets.values() if k.account_id == device.account_id)
            return Sent(message_id, conversation, int(result["devices"]), int(result["server_time"]), own)

        return await retry_on_changed_devices(attempt)

    def _record_sent(self, envelope: MessageEnvelope, recipients: list[str], server_time: int) -> None:
        store = self.device.store
        if envelope.kind in TARGETED:  # kept like a received one, so this device shows it the same way
            store.keep_action(history_record(envelope, server_time))
        if envelope.kind not in (Kind.TEXT, Kind.MEDIA):
            return
        store.sent[envelope.message_id] = {
            "conversation": envelope.conversation,
            "status": "sent",
            "ts": envelope.timestamp,
            "recipients": recipients,
            "by": {},
        }
        store.remember(history_record(envelope))

    async def send_receipts(self, messages: list[Received], status: ReceiptStatus) -> None:
        """One receipt per sender account for the text and media messages of other accounts among
        ``messages``: "up to" its newest message in each conversation (messaging.md §5.3)."""
        handled = [
            receipts.Handled(
                m.sender_account, m.conversation, receipts.Position(m.timestamp or 0, m.message_id)
            )
            for m in messages
            if m.kind in (Kind.TEXT, Kind.MEDIA)
            and m.sender_account != self.device.account_id
            and m.conversation is not None
        ]
        for account_id, marks in receipts.newest_per_conversation(handled).items():
            try:
                peer = await self.contacts.get(account_id=account_id)
                await self.send_to_contact(
                    peer, Kind.RECEIPT, receipts.receipt_body(status, marks), new_message_id()
                )
            except (ClientError, E2EError) as error:
                log.warning("a %s receipt could not be sent: %s", status.value, error)
