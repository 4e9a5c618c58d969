"""History for a new companion (messaging.md §12): the primary sends each companion that has not had one
a bundle of its recent chats, encrypted and uploaded like a file, its key over Olm to that companion
alone; a companion imports only what its own account's primary sent."""

from __future__ import annotations

import json
from typing import Any

from lockstep.client.errors import ClientError
from lockstep.client.messaging.contacts import Contacts
from lockstep.client.messaging.device import Device
from lockstep.client.messaging.media import MediaTransfer
from lockstep.client.messaging.outbox import Outbox
from lockstep.client.messaging.records import Received, new_message_id
from lockstep.e2e.envelope import MAX_HISTORY_REQUEST, Kind, MessageEnvelope, direct_conversation
from lockstep.e2e.errors import EnvelopeError
from lockstep.e2e.keys import DeviceKeys
from lockstep.e2e.receipts import Position
from lockstep.link import probation
from lockstep.link.devices import Role
from lockstep.link.wording import probation_text

HISTORY_DAYS = 30
HISTORY_MAX = 1000


class History:
    def __init__(self, device: Device, contacts: Contacts, outbox: Outbox, media: MediaTransfer) -> None:
        self.device = device
        self.contacts = contacts
        self.outbox = outbox
        self.media = media

    async def sync(self) -> list[str]:
        """Primary only: send every companion that can receive and has not had one a history bundle.

        The bundle (the last :data:`HISTORY_DAYS` days, at most :data:`HISTORY_MAX` messages) is
        encrypted and uploaded like a file; its key goes to that one companion over Olm, with a note of
        what was not transferred. Returns the companions served. A companion on probation (linking.md
        §4.6) is skipped until its probation ends or the primary ends it early.
        """
        device, store = self.device, self.device.store
        if device.session.state.role is not Role.PRIMARY:
            return []
        me = await self.contacts.get(account_id=device.account_id, refresh=True)
        devices, now = device.session.state.devices, device.session.probation_now()
        served = []
        for device_id, keys in sorted(me.keys.items()):
            if device_id == device.device_id or device_id in store.history_sent_to:
                continue
            if probation.on_probation_in(devices, device_id, now):
                continue  # not yet: a later sync sends it (it is not marked as served)
            await self._send(keys)
            store.history_sent_to.append(device_id)
            store.save()
            served.append(device_id)
        return served

    async def _send(self, keys: DeviceKeys) -> None:
        store = self.device.store
        cutoff = self.device.session.clock.now_ms() - HISTORY_DAYS * 86_400_000
        recent, matched = store.newest_messages(HISTORY_MAX, since=cutoff)
        older = store.message_count() - matched + store.history_dropped
        over_limit = matched - len(recent)
        not_transferred = {"older_than_30_days_or_dropped": older, "over_1000_limit": over_limit}
        note = f"{len(recent)} messages from the last {HISTORY_DAYS} days were transferred"
        if older or over_limit:
            note += f"; {older + over_limit} older messages stay only on the phone"
        await self._send_bundle(keys, recent, not_transferred, note)

    async def serve_request(self, envelope: MessageEnvelope) -> None:
        """Primary: a companion of this account asked for messages older than it holds (§12.1); the
        newest ``limit`` of them, however old, go to that companion alone, from every message this
        device keeps (the database, not only the newest held in memory)."""
        device, store = self.device, self.device.store
        if device.session.state.role is not Role.PRIMARY:
            return  # not ours to answer
        entry = device.session.state.devices.find(envelope.sender_device)
        me = await self.contacts.get(account_id=device.account_id)
        keys = me.keys.get(envelope.sender_device)
        if envelope.sender_account != device.account_id or entry is None or entry.role is not Role.COMPANION:
            raise EnvelopeError("only this account's companions ask for its history")
        if keys is None:
            raise EnvelopeError("a history request from a companion without published keys")
        if probation.on_probation(entry, device.session.probation_now()):
            until = probation.until_text(entry.probation_until or 0)
            raise EnvelopeError(probation_text("no_history", until=until))
        body = envelope.body  # checked by decode
        # Before the position the companion names; an older companion names only a time, and "before
        # (ts, '')" is strictly before that time, since no id sorts below the empty one.
        before = Position(int(body["before"]), str(body.get("before_id", "")))
        records, older = store.newest_messages(int(body["limit"]), before=before)
        left = older - len(records)
        note = f"{len(records)} older messages were transferred"
        if left or store.history_dropped:
            note += f"; {left + store.history_dropped} older messages stay only on the phone"
        dropped = {"older_than_30_days_or_dropped": store.history_dropped, "over_1000_limit": left}
        await self._send_bundle(keys, records, dropped, note)

    async def request_older(self, limit: int = HISTORY_MAX) -> None:
        """Companion: ask this account's primary for up to ``limit`` messages older than the oldest one
        this device holds (§12.1); they come back as a history bundle."""
        device = self.device
        primary = device.session.state.devices.primary
        me = await self.contacts.get(account_id=device.account_id, refresh=True)
        keys = me.keys.get(primary.device_id)
        if keys is None:
            raise ClientError("this account's primary has no published keys")
        body: dict[str, Any] = {
            "before": device.session.clock.now_ms(),
            "limit": min(limit, MAX_HISTORY_REQUEST),
        }
        oldest = device.store.oldest_position()
        if oldest is not None:
            body["before"], body["before_id"] = oldest.ts, oldest.message_id
        own = direct_conversation(device.account_id, device.account_id)
        envelope = device.envelope(Kind.HISTORY_REQUEST, own, body, new_message_id())
        fields = {"message_id": envelope.message_id, "to": device.account_id}
        await self.outbox.fan_out([keys], envelope.encode(), fields, whole=True)

    async def _send_bundle(
        self, keys: DeviceKeys, recent: list[dict[str, Any]], not_transferred: dict[str, int], note: str
    ) -> None:
        device, store = self.device, self.device.store
        now = device.session.clock.now_ms()
        bundle = {
            "v": 1,
            "type": "history-bundle",
            "generated_at": now,
            "messages": recent,
            "not_transferred": not_transferred,
            # Group names travel only end to end: without them the companion's groups are nameless.
            "groups": [{"group_id": g, "name": n} for g, n in sorted(store.group_names.items())],
            # Reactions, edits and deletes of what is transferred, so the companion shows it alike (§15.6).
            "actions": [a for a in store.actions if a["body"].get("target") in {r.get("id") for r in recent}],
        }
        # From memory: a staged copy would be the history in the clear on disk (or, in a passphrase-
        # sealed folder, sealed bytes the companion could not read).
        media = await self.media.upload_bytes(json.dumps(bundle).encode(), "history-upload.json")
        body = {"media": media, "count": len(recent), "not_transferred": not_transferred, "note": note}
        envelope = device.envelope(
            Kind.HISTORY, direct_conversation(device.account_id, device.account_id), body, new_message_id()
        )
        fields = {"message_id": envelope.message_id, "to": device.account_id}
        await self.outbox.fan_out([keys], envelope.encode(), fields, whole=True)

    async def import_bundle(self, envelope: MessageEnvelope, message: Received) -> None:
        """Companion: merge a history bundle from this account's primary into this device's history."""
        device = self.device
        entry = device.session.state.devices.find(envelope.sender_device)
        if envelope.sender_account != device.account_id or entry is None or entry.role is not Role.PRIMARY:
            raise EnvelopeError("history comes only from this account's primary")
        staging = device.session.state.directory / ".history"
        path = await self.media.download(envelope.body["media"], folder=staging)
        try:
            bundle = json.loads(path.read_bytes())
        finally:
            path.unlink(missing_ok=True)
        records = bundle.get("messages") if isinstance(bundle, dict) else None
        if not isinstance(records, list):
            raise EnvelopeError("a history bundle without messages")
        actions = bundle.get("actions")
        added = device.store.merge_history(records, actions if isinstance(actions, list) else [])
        self._import_group_names(bundle.get("groups"))
        note = str(envelope.body.get("note", ""))[:500]
        device.store.history_note = note
        message.body = {"count": added, "note": note, "not_transferred": envelope.body.get("not_transferred")}

    def _import_group_names(self, groups: object) -> None:
        """Names of the primary's groups from a history bundle; a name this device learnt itself (a
        ``group-info`` it received) is newer and stays."""
        for group in groups[:HISTORY_MAX] if isinstance(groups, list) else []:
            group_id, name = (
                (group.get("group_id"), group.get("name")) if isinstance(group, dict) else (None, None)
            )
            if isinstance(group_id, str) and len(group_id) <= 64 and isinstance(name, str) and name:
                self.device.store.group_names.setdefault(group_id, name[:100])
