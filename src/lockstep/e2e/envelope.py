"""The plaintext inside every end-to-end ciphertext: one JSON object (docs/protocol/messaging.md §5).

```json
{"v": 1, "kind": "text", "id": "<message id>", "conversation": "direct:<account>:<account>",
 "sender": {"account_id": "…", "device_id": "…"}, "ts": 1764000000000, "body": {"text": "hi"}}
```

The receiver checks ``id`` and ``sender`` against what the server routed (the server cannot re-address a
message), and ``ts`` is the sender's estimate of server time in milliseconds.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from lockstep.e2e.errors import EnvelopeError
from lockstep.link.encoding import json_bytes, parse_json_object
from lockstep.link.errors import EncodingError

MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_TEXT = 65_536
MAX_HISTORY_REQUEST = 10_000
"""The most messages one ``history-request`` asks for (§12.1)."""


class Kind(enum.StrEnum):
    TEXT = "text"
    MEDIA = "media"
    RECEIPT = "receipt"
    GROUP_KEY = "group-key"
    GROUP_INFO = "group-info"
    HISTORY = "history"
    HISTORY_REQUEST = "history-request"
    """A companion asks its primary for messages older than it holds (§12.1)."""
    CALL = "call"
    """Call signalling (§14): the body is parsed by :func:`lockstep.calls.signals.parse`."""
    REACTION = "reaction"
    EDIT = "edit"
    DELETE = "delete"
    TYPING = "typing"
    PRESENCE = "presence"
    """Message actions and signals (§15): bodies parsed by :mod:`lockstep.e2e.actions`."""
    UNDECRYPTABLE = "undecryptable"
    """Never on the wire (``decode`` refuses it): what a receiver calls a copy it could not open or
    that broke a rule, so every kind a client shows is a member of this enum."""


class ReceiptStatus(enum.StrEnum):
    DELIVERED = "delivered"
    READ = "read"


def direct_conversation(first_account: str, second_account: str) -> str:
    """The id both sides of a 1:1 chat compute alike: the two account ids in order."""
    low, high = sorted((first_account, second_account))
    return f"direct:{low}:{high}"


def group_conversation(group_id: str) -> str:
    return f"group:{group_id}"


def check_message_id(value: object) -> str:
    if not isinstance(value, str) or not MESSAGE_ID.fullmatch(value):
        raise EnvelopeError("a message id is 16 to 64 base64url characters")
    return value


@dataclass(frozen=True, slots=True)
class MessageEnvelope:
    kind: Kind
    message_id: str
    conversation: str
    sender_account: str
    sender_device: str
    timestamp: int
    body: dict[str, Any]

    def encode(self) -> bytes:
        return json_bytes(
            {
                "v": 1,
                "kind": self.kind.value,
                "id": self.message_id,
                "conversation": self.conversation,
                "sender": {"account_id": self.sender_account, "device_id": self.sender_device},
                "ts": self.timestamp,
                "body": self.body,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> MessageEnvelope:
        try:
            value = parse_json_object(data, what="message envelope")
        except EncodingError as error:
            raise EnvelopeError(str(error)) from error
        if value.get("v") != 1:
            raise EnvelopeError("not a version 1 message envelope")
        try:
            kind = Kind(str(value.get("kind")))
        except ValueError as error:
            raise EnvelopeError("unknown message kind") from error
        if kind is Kind.UNDECRYPTABLE:
            raise EnvelopeError("unknown message kind")
        sender, body, ts, conversation = (
            value.get("sender"),
            value.get("body"),
            value.get("ts"),
            value.get("conversation"),
        )
        if not isinstance(sender, dict) or not all(
            isinstance(sender.get(k), str) for k in ("account_id", "device_id")
        ):
            raise EnvelopeError("'sender' must name an account and a device")
        if not isinstance(body, dict):
            raise EnvelopeError("'body' must be an object")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise EnvelopeError("'ts' must be an integer")
        if not isinstance(conversation, str) or not conversation.startswith(("direct:", "group:")):
            raise EnvelopeError("'conversation' must be a direct: or group: id")
        envelope = cls(
            kind,
            check_message_id(value.get("id")),
            conversation,
            sender["account_id"],
            sender["device_id"],
            ts,
            body,
        )
        envelope.check_body()
        return envelope

    def check_body(self) -> None:
        """The fields each kind needs, with their types (extra fields are ignored)."""
        body = self.body
        if self.kind is Kind.TEXT:
            text = body.get("text")
            if not isinstance(text, str) or len(text) > MAX_TEXT:
                raise EnvelopeError(f"a text message has a 'text' of at most {MAX_TEXT} characters")
        elif self.kind is Kind.MEDIA:
            media = body.get("media")
            if not isinstance(media, dict):
                raise EnvelopeError("a media message has a 'media' object")
        elif self.kind is Kind.RECEIPT:
            from lockstep.e2e import receipts  # builds on this module's ReceiptStatus

            receipts.parse(body)
        elif self.kind is Kind.HISTORY_REQUEST:
            before, limit = body.get("before"), body.get("limit")
            if not (isinstance(before, int) and not isinstance(before, bool) and 0 <= before < 2**53):
                raise EnvelopeError("a history request names 'before', a time in ms")
            if not (
                isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= MAX_HISTORY_REQUEST
            ):
                raise EnvelopeError(f"a history request asks for 1 to {MAX_HISTORY_REQUEST} messages")
            before_id = body.get("before_id")
            if before_id is not None and not (isinstance(before_id, str) and MESSAGE_ID.fullmatch(before_id)):
                raise EnvelopeError("a history request's 'before_id' is a message id")
        elif self.kind is Kind.CALL and not all(isinstance(body.get(k), str) for k in ("call_id", "type")):
            raise EnvelopeError("a call signal names call_id and type")
        elif self.kind is Kind.GROUP_KEY and not all(
            isinstance(body.get(k), str) for k in ("group_id", "session_id", "session_key")
        ):
            raise EnvelopeError("a group key names group_id, session_id and session_key")
        # Imported here: actions builds on this module's kinds and ids.
        from lockstep.e2e import actions

        actions.check_body(self.kind, body)

    def check_routing(self, message_id: str, sender_account: str, sender_device: str) -> None:
        """The server's routing and the signed-by-encryption envelope must agree."""
        if (self.message_id, self.sender_account, self.sender_device) != (
            message_id,
            sender_account,
            sender_device,
        ):
            raise EnvelopeError("the envelope's id or sender does not match how the message was routed")
