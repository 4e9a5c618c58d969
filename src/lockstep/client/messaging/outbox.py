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

from lockstep.client.e2estate import TARGETED_KINDS
from lockstep.client.errors import ClientError, ConnectionLost, RequestTimedOut, ServerRefused
from lockstep.client.messaging.contacts import Contacts
from lockstep.client.messaging.device import MAX_FRAME, TOO_LARGE, Device
from lockstep.client.messaging.records import Contact, Received, Sent, history_record, new_message_id
from lockstep.e2e import receipts
from lockstep.e2e.envelope import (
    Kind,
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
TEMPORARY_REFUSALS = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE, ErrorCode.STORAGE_FULL})
"""Refusals of a kept request that say "not now": it stays kept and the next run sends it again."""


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
        then: Callable[[list[str]], dict[str, Any]] = lambda device_ids: {},
    ) -> list[dict[str, Any]]:
        """Send ``plaintext`` over Olm to every target as ``messages.send`` with ``fields`` (message id
        and routing), in as many requests as it takes to keep each under the frame limit (§6.3); one
        only, or nothing at all, if ``whole`` (a direct message reaches all its devices at once).

        The split is planned before anything is encrypted, and one-time keys are claimed per request
        just before it is sent, so none is claimed for a request the client would refuse, nor for the
        requests after one the server refused. Each request is sent as :meth:`send_saved` sends, with
        ``then(its devices)`` as what to record once the server accepts it; that is saved before the next
        request. Every request carries the same message id, so the server queues a copy at most once per
        device however often the rest is retried.
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
                results.append(await self.send_saved({**fields, "payloads": payloads}, then(device_ids)))
            finally:
                self.device.store.save()  # what was accepted (or sessions begun, if a claim failed)
        return results

    async def send_saved(self, fields: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
        """``messages.send`` as messaging.md §11 says ("Saved before sent"): the request is kept with the
        ratchet state that made it, in one transaction, before it leaves (a step or index whose
        ciphertext left must never be used again), and stays kept until the server answers; a run that
        dies in between sends it again as it is (:meth:`resend_in_flight`). Once it is accepted,
        ``then`` is recorded (:meth:`_accepted`); the caller's next save writes that and forgets the
        request in one transaction."""
        store = self.device.store
        number = max(store.in_flight, default=0) + 1
        store.in_flight[number] = {"fields": fields, "then": then}
        store.save(durable=True)
        try:
            answer = await self.device.request("messages.send", **fields)
        except (ConnectionLost, RequestTimedOut):
            raise  # unanswered: it may have been queued; the next run sends it again
        except ClientError:
            # Refused by the server, or too large to leave (Device.request): nothing was queued.
            del store.in_flight[number]
            raise
        # Anything else (a cancellation, Ctrl-C) may come after the frame left and the server took it:
        # the request stays kept, and the next run sends it again.
        del store.in_flight[number]
        self._accepted(then, answer)
        return answer

    async def resend_in_flight(self) -> None:
        """Send again, before anything new, the requests a run sent and never heard back about: the very
        same ciphertexts under the same message ids, which the server queues at most once per device and
        receivers drop once seen (§7.2). One the server now refuses queued nothing, then or now: for a
        while only (:data:`TEMPORARY_REFUSALS`) it stays kept for the next run; for good (a device list
        changed meanwhile, a bad request) it is dropped, with a warning (its message was not sent)."""
        store = self.device.store
        for number, kept in sorted(store.in_flight.items()):
            try:
                answer = await self.device.request("messages.send", **kept["fields"])
            except ServerRefused as error:
                if error.code in TEMPORARY_REFUSALS:
                    log.warning("a message sent before this device stopped waits for the next run: %s", error)
                    continue
                log.warning(
                    "a message sent before this device stopped was refused when sent again: %s", error
                )
                answer = None
            del store.in_flight[number]
            if answer is not None:
                self._accepted(kept.get("then") or {}, answer)
            store.save()

    def _accepted(self, then: dict[str, Any], answer: dict[str, Any]) -> None:
        """Record what a ``messages.send`` the server accepted did: a message sent (its status and this
        device's copy), and/or a group key shared with some devices."""
        shared = then.get("shared")
        if shared is not None:
            outbound = self.device.store.groups.outbound.get(shared["group_id"])
            if outbound is not None and outbound.session.session_id == shared["session_id"]:
                self.device.store.groups.mark_shared(shared["group_id"], set(shared["devices"]))
        sent = then.get("sent")
        if sent is not None:
            self._record_sent(sent["record"], sent["recipients"], int(answer["server_time"]))

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
            sent = {"sent": {"record": history_record(envelope), "recipients": [peer_id]}}
            (result,) = await self.fan_out(
                list(targets.values()), envelope.encode(), fields, whole=True, then=lambda device_ids: sent
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
                    session_id = groups.session_id(group_id)
                    await self.fan_out(
                        [targets[d] for d in sorted(share.devices)],
                        key_message.encode(),
                        {"message_id": share.message_id, "group_id": group_id},
                        then=lambda device_ids: {
                            "shared": {"group_id": group_id, "session_id": session_id, "devices": device_ids}
                        },
                    )
                envelope = device.envelope(kind, conversation, body, message_id)
                ciphertext = groups.encrypt(group_id, envelope.encode())
                recipients = [m for m in members if m != device.account_id]
                megolm = {"session_id": groups.session_id(group_id), "ciphertext": b64u_encode(ciphertext)}
                result = await self.send_saved(
                    {"message_id": message_id, "group_id": group_id, "megolm": megolm},
                    {"sent": {"record": history_record(envelope), "recipients": recipients}},
                )
            finally:
                device.store.save()
            own = sum(1 for k in targets.values() if k.account_id == device.account_id)
            return Sent(message_id, conversation, int(result["devices"]), int(result["server_time"]), own)

        return await retry_on_changed_devices(attempt)

    def _record_sent(self, record: dict[str, Any], recipients: list[str], server_time: int) -> None:
        """Keep what this device sent (``record`` as :func:`history_record` makes it): an action like a
        received one, so this device shows it the same way; a text or media message with its status."""
        store = self.device.store
        if record["kind"] in TARGETED_KINDS:
            store.keep_action({**record, "server_time": server_time})
        if record["kind"] not in (Kind.TEXT, Kind.MEDIA):
            return
        store.record_sent(
            record["id"],
            {
                "conversation": record["conversation"],
                "status": "sent",
                "ts": record["ts"],
                "recipients": recipients,
                "by": {},
            },
        )
        store.remember(record)

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
