"""Whom a send may reach: the accounts of its conversation, their devices that published E2E keys, and
which of the accounts already wrote into the conversation (``known_peers``, for the stranger limits),
read in one statement inside the send's own transaction (``queues.send``).

The LEFT JOINs keep an account without such devices (and a group without members) as a row with
NULLs, so "exists, reaches nobody" stays apart from "does not exist". A direct chat is known to the
sender once it wrote to the recipient, and to the recipient once it wrote to the sender.
"""

from __future__ import annotations

from lockstep.server.store.records import Audience, Conversation
from lockstep.server.store.sql import Row, Work, query

DIRECT = (
    "SELECT a.account_id, d.device_id, EXISTS (SELECT 1 FROM known_peers k WHERE k.account_id = a.account_id "
    "AND k.peer_id = CASE WHEN a.account_id = CAST(? AS TEXT) THEN CAST(? AS TEXT) ELSE CAST(? AS TEXT) END) "
    "FROM accounts a "
    "LEFT JOIN devices d ON d.account_id = a.account_id "
    "AND EXISTS (SELECT 1 FROM device_keys k WHERE k.device_id = d.device_id) "
    "WHERE a.account_id IN (?, ?)"
)
GROUP = (
    "SELECT m.account_id, d.device_id, EXISTS (SELECT 1 FROM known_peers k "
    "WHERE k.account_id = m.account_id AND k.peer_id = g.group_id) FROM chat_groups g "
    "LEFT JOIN group_members m ON m.group_id = g.group_id "
    "LEFT JOIN devices d ON d.account_id = m.account_id "
    "AND EXISTS (SELECT 1 FROM device_keys k WHERE k.device_id = d.device_id) "
    "WHERE g.group_id = ?"
)


def _audience(rows: list[Row]) -> Audience:
    devices: dict[str, set[str]] = {}
    knows: set[str] = set()
    for account_id, device_id, known in rows:
        if account_id is not None:
            found = devices.setdefault(account_id, set())
            if device_id is not None:
                found.add(device_id)
            if known:
                knows.add(account_id)
    return Audience(devices, frozenset(knows))


def audience(conversation: Conversation) -> Work[Audience | None]:
    """The conversation's accounts and keyed devices; None if its group or recipient does not exist."""
    if conversation.group_id is not None:
        rows = yield from query(GROUP, conversation.group_id)
        return _audience(rows) if rows else None
    assert conversation.to_account is not None, "a conversation is a group or a direct chat"
    sender, to = conversation.sender_account, conversation.to_account
    rows = yield from query(DIRECT, sender, to, sender, to, sender)
    found = _audience(rows)
    return found if conversation.to_account in found.devices else None
