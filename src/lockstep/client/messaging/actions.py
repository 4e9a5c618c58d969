"""Replies, reactions, edits, deletes and search from this device (docs/protocol/messaging.md §15).

Actions go into the conversation of the message they name, like any message of it (Olm to every device
of a direct chat, Megolm to a group). The sender refuses what receivers would ignore — another
account's message, an edit after 15 minutes, a delete after 60 hours — with the reason, before
anything is sent. Search reads only this device's own decrypted store (§15.7).
"""

from __future__ import annotations

from typing import Any

from lockstep.client.errors import ClientError
from lockstep.client.messaging.contacts import Contacts
from lockstep.client.messaging.device import Device
from lockstep.client.messaging.outbox import Outbox
from lockstep.client.messaging.records import Sent, new_message_id
from lockstep.e2e.actions import (
    DELETE_LIMIT_MS,
    EDIT_LIMIT_MS,
    Action,
    Change,
    Delete,
    Edit,
    Reaction,
    check_body,
    refusal,
    target_from_record,
)
from lockstep.e2e.envelope import MESSAGE_ID, Kind
from lockstep.e2e.errors import ActionError
from lockstep.e2e.timeline import Shown

MIN_ID_PREFIX = 6


class MessageActions:
    def __init__(self, device: Device, contacts: Contacts, outbox: Outbox) -> None:
        self.device = device
        self.contacts = contacts
        self.outbox = outbox

    def find(self, message_id: str) -> Shown:
        """A text or media message of this device's store by id, or by a unique prefix of its id."""
        timeline = self.device.store.timeline()
        shown = timeline.shown(message_id)
        if shown is not None:
            return shown
        if len(message_id) < MIN_ID_PREFIX or not MESSAGE_ID.fullmatch(message_id.ljust(16, "A")):
            raise ClientError(
                f"no message {message_id!r} here; give its id or at least {MIN_ID_PREFIX} of its first "
                "characters"
            )
        ids = {str(r.get("id")) for r in self.device.store.history if str(r.get("id")).startswith(message_id)}
        found = [s for i in sorted(ids) if (s := timeline.shown(i)) is not None]
        if len(found) > 1:
            raise ClientError(f"several messages begin with {message_id!r}; give more of the id")
        if not found:
            raise ClientError(
                f"no message beginning with {message_id!r} on this device (`lockstep search` shows ids)"
            )
        return found[0]

    async def send_into(self, conversation: str, kind: Kind, body: dict[str, Any]) -> Sent:
        """Send ``body`` into a conversation by its id (``direct:…`` or ``group:…``)."""
        check_body(kind, body)
        if conversation.startswith("group:"):
            return await self.outbox.send_group(conversation.removeprefix("group:"), kind, body)
        parts = conversation.split(":")
        me = self.device.account_id
        if len(parts) != 3 or parts[0] != "direct" or me not in parts[1:]:
            raise ClientError("that message is not in a conversation of this account")
        peer = parts[2] if parts[1] == me else parts[1]
        contact = await self.contacts.get(account_id=peer)
        return await self.outbox.send_to_contact(contact, kind, body, new_message_id())

    async def react(self, message_id: str, emoji: str) -> Sent:
        """This account's reaction to a message (``""`` removes it)."""
        return await self._act(message_id, Reaction(self.find(message_id).message_id, emoji))

    async def edit(self, message_id: str, text: str) -> Sent:
        return await self._act(message_id, Edit(self.find(message_id).message_id, text))

    async def delete(self, message_id: str) -> Sent:
        """Delete a message of this account for everyone."""
        return await self._act(message_id, Delete(self.find(message_id).message_id))

    async def _act(self, message_id: str, change: Change) -> Sent:
        shown = self.find(message_id)
        target = target_from_record(shown.record)
        assert target is not None
        if shown.outcome.deleted:
            raise ClientError("that message was deleted")
        kind, body = _kind_and_body(change)
        try:
            check_body(kind, body)
        except ActionError as error:
            raise ClientError(str(error)) from error
        now = self.device.session.clock.now_ms()
        planned = Action("planned-action-00", target.conversation, self.device.account_id, now, now, change)
        reason = refusal(target, planned)
        if reason is not None:
            raise ClientError(_in_words(change, reason))
        return await self.send_into(target.conversation, kind, body)

    def search(self, query: str, limit: int = 50) -> list[Shown]:
        return self.device.store.search(query, limit)


def _kind_and_body(change: Change) -> tuple[Kind, dict[str, Any]]:
    if isinstance(change, Reaction):
        return Kind.REACTION, {"target": change.target, "emoji": change.emoji}
    if isinstance(change, Edit):
        return Kind.EDIT, {"target": change.target, "text": change.text}
    return Kind.DELETE, {"target": change.target}


def _in_words(change: Change, reason: str) -> str:
    """What a person reads when this device will not send an action receivers would ignore."""
    if "only the account" in reason:
        return f"you can only {'edit' if isinstance(change, Edit) else 'delete'} your own messages"
    if isinstance(change, Edit) and "15 minutes" in reason:
        return f"messages can be edited for {EDIT_LIMIT_MS // 60_000} minutes after they were sent"
    if isinstance(change, Delete) and "60 hours" in reason:
        hours = DELETE_LIMIT_MS // 3_600_000
        return f"messages can be deleted for everyone for {hours} hours after they were sent"
    return f"not sent: {reason}"
