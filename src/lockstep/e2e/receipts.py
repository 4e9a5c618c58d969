"""Receipts as markers (docs/protocol/messaging.md §5.3): "delivered up to" / "read up to" a message of a
conversation, as WhatsApp and Matrix's read markers do, instead of one id per message.

A receiver sends at most one receipt per sender account and status for everything it handled together
(a batch, or a look at a chat): ``{"status": "read", "up_to": [{"conversation", "message_id", "ts"}…]}``
with that account's newest message of each conversation. The sender applies a mark to its own messages
of that conversation at or before it, in (ts, id) order. Receipts of the first version list
``message_ids`` and are still accepted. Pure: no I/O.

    marks = newest_per_conversation(handled)           # {sender account: [ReceiptMark…]}
    body = receipt_body(ReceiptStatus.READ, marks[a])  # what goes to account a
    receipt = parse(body)                              # on the other side: ids or marks
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lockstep.e2e.envelope import ReceiptStatus
from lockstep.e2e.errors import EnvelopeError

MAX_ENTRIES = 1000
"""At most this many ids or marks are read from one receipt."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a message is in its conversation: by the sender's ``ts``, then by id (both sides agree)."""

    ts: int
    message_id: str


@dataclass(frozen=True, slots=True)
class ReceiptMark:
    """Every message of the receipt's addressee in ``conversation`` up to ``position`` (inclusive)."""

    conversation: str
    position: Position

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation,
            "message_id": self.position.message_id,
            "ts": self.position.ts,
        }

    def covers(self, conversation: str, position: Position) -> bool:
        return conversation == self.conversation and position <= self.position


@dataclass(frozen=True, slots=True)
class Receipt:
    status: ReceiptStatus
    message_ids: tuple[str, ...]
    """The first version's form: exactly these messages."""
    marks: tuple[ReceiptMark, ...]

    def covers(self, message_id: str, conversation: str, position: Position) -> bool:
        return message_id in self.message_ids or any(m.covers(conversation, position) for m in self.marks)


@dataclass(frozen=True, slots=True)
class Handled:
    """What a receiver knows of a message it handled, to mark it."""

    sender_account: str
    conversation: str
    position: Position


def newest_per_conversation(messages: Iterable[Handled]) -> dict[str, list[ReceiptMark]]:
    """Sender account → one mark per conversation, at that account's newest message there."""
    newest: dict[str, dict[str, Position]] = {}
    for message in messages:
        marks = newest.setdefault(message.sender_account, {})
        known = marks.get(message.conversation)
        if known is None or known < message.position:
            marks[message.conversation] = message.position
    return {
        account: [ReceiptMark(conversation, position) for conversation, position in marks.items()]
        for account, marks in newest.items()
    }


def receipt_body(status: ReceiptStatus, marks: Iterable[ReceiptMark]) -> dict[str, Any]:
    return {"status": status.value, "up_to": [mark.to_json() for mark in marks]}


def parse(body: dict[str, Any]) -> Receipt:
    """A receipt's body in either form; :class:`EnvelopeError` if it is neither."""
    try:
        status = ReceiptStatus(str(body.get("status")))
    except ValueError as error:
        raise EnvelopeError("a receipt's status is delivered or read") from error
    ids, up_to = body.get("message_ids"), body.get("up_to")
    if (ids is None) == (up_to is None):
        raise EnvelopeError("a receipt carries either 'message_ids' or 'up_to'")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise EnvelopeError("a receipt lists 'message_ids' as strings")
        return Receipt(status, tuple(ids[:MAX_ENTRIES]), ())
    if not isinstance(up_to, list):
        raise EnvelopeError("a receipt's 'up_to' is a list of marks")
    marks = []
    for entry in up_to[:MAX_ENTRIES]:
        conversation = entry.get("conversation") if isinstance(entry, dict) else None
        message_id = entry.get("message_id") if isinstance(entry, dict) else None
        ts = entry.get("ts") if isinstance(entry, dict) else None
        if (
            not isinstance(conversation, str)
            or not isinstance(message_id, str)
            or not isinstance(ts, int)
            or isinstance(ts, bool)
        ):
            raise EnvelopeError("a receipt mark names a conversation, a message id and its ts")
        marks.append(ReceiptMark(conversation, Position(ts, message_id)))
    return Receipt(status, (), tuple(marks))
