"""Message actions: replies, reactions, edits, delete-for-everyone, typing and presence
(docs/protocol/messaging.md §15).

Pure: bodies are parsed into frozen values (:func:`parse_body`, typed :class:`ActionError` otherwise),
and what a message looks like after the actions that name it is a function of the message and the *set*
of those actions (:func:`outcome`), never of the order they arrived in. So every device of every member
— whichever copy reached it first, over the queue or in a history bundle — shows the same thing.

Time limits (§15.4) are checked by each receiver from values every device has alike: the target's
signed ``ts``, the action's signed ``ts`` and the server's queue time of the action (``server_time``),
never from the receiver's own clock.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lockstep.e2e.envelope import MAX_TEXT, Kind, check_message_id
from lockstep.e2e.errors import ActionError, EnvelopeError
from lockstep.e2e.voice import parse_voice

EDIT_LIMIT_MS = 15 * 60_000
"""An edit counts only within 15 minutes of the message (WhatsApp's limit)."""
DELETE_LIMIT_MS = 60 * 3_600_000
"""Delete for everyone counts only within 60 hours ("about 2 days", WhatsApp's limit)."""
CLOCK_SLACK_MS = 60_000
"""How far the server's queue time of an action may pass a limit: the sender's ``ts`` is its estimate of
server time, and a send may wait in an outbox (the same grace as an unlinked device's last words, §3.1)."""
MAX_EMOJI_CODE_POINTS = 16
ASCII_LETTERS = frozenset(string.ascii_letters)
TYPING_FRESH_MS = 10_000
"""A typing signal older than this when it arrives (it waited in a queue) is not shown."""
PRESENCE_ONLINE_MS = 75_000
"""A device that said ``online`` repeats it every 60 s; without it for this long it is last seen then."""

TARGETED = (Kind.REACTION, Kind.EDIT, Kind.DELETE)
"""Kinds that name another message (``body.target``) and are kept with the conversation."""
EPHEMERAL = (Kind.TYPING, Kind.PRESENCE)
"""Kinds that are shown for a moment and never kept, nor transferred with history."""
REPLYABLE = (Kind.TEXT, Kind.MEDIA)
"""Kinds an action may target and a reply may quote."""


class TypingState(enum.StrEnum):
    COMPOSING = "composing"
    PAUSED = "paused"


class PresenceState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Reaction:
    target: str
    emoji: str
    """One emoji (a short sequence of code points), or ``""``: this account's reaction is removed."""


@dataclass(frozen=True, slots=True)
class Edit:
    target: str
    text: str
    """The new text (of a text message) or caption (of a media message)."""


@dataclass(frozen=True, slots=True)
class Delete:
    target: str


@dataclass(frozen=True, slots=True)
class Typing:
    state: TypingState


@dataclass(frozen=True, slots=True)
class Presence:
    state: PresenceState


Change = Reaction | Edit | Delete
Signal = Typing | Presence


def _target(body: Mapping[str, Any]) -> str:
    try:
        return check_message_id(body.get("target"))
    except EnvelopeError as error:
        raise ActionError(f"'target' is not a message id: {error}") from error


def _check_emoji(value: object) -> str:
    """§15.2: none (a removal) or 1 to 16 code points, without controls, spaces or ASCII letters
    (an emoji, not a word)."""
    if not isinstance(value, str):
        raise ActionError("a reaction's 'emoji' must be a string")
    if len(value) > MAX_EMOJI_CODE_POINTS:
        raise ActionError(f"a reaction is at most {MAX_EMOJI_CODE_POINTS} code points")
    for char in value:
        point = ord(char)
        if point <= 0x20 or 0x7F <= point <= 0x9F or char in ASCII_LETTERS:
            raise ActionError("a reaction is an emoji: no letters, spaces or control characters")
    return value


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise ActionError(f"{what} is a text of 1 to {MAX_TEXT} characters")
    return value


def parse_change(kind: Kind, body: Mapping[str, Any]) -> Change:
    """The change a reaction, edit or delete body asks for (§15.2); :class:`ActionError` otherwise."""
    if kind is Kind.REACTION:
        return Reaction(_target(body), _check_emoji(body.get("emoji")))
    if kind is Kind.EDIT:
        return Edit(_target(body), _check_text(body.get("text"), "an edit's 'text'"))
    if kind is Kind.DELETE:
        return Delete(_target(body))
    raise ActionError(f"a {kind.value} message names no other message")


def parse_signal(kind: Kind, body: Mapping[str, Any]) -> Signal:
    """A typing or presence body (§15.5); :class:`ActionError` otherwise."""
    state = body.get("state")
    try:
        if kind is Kind.TYPING:
            return Typing(TypingState(str(state)))
        if kind is Kind.PRESENCE:
            return Presence(PresenceState(str(state)))
    except ValueError as error:
        raise ActionError(f"an unknown {kind.value} state") from error
    raise ActionError(f"a {kind.value} message is not a typing or presence signal")


def reply_to(body: Mapping[str, Any]) -> str | None:
    """The message a text or media body quotes (§15.1), if any."""
    quoted = body.get("reply_to")
    if quoted is None:
        return None
    try:
        return check_message_id(quoted)
    except EnvelopeError as error:
        raise ActionError(f"'reply_to' is not a message id: {error}") from error


def check_body(kind: Kind, body: Mapping[str, Any]) -> None:
    """Raise :class:`ActionError` unless ``body`` is what §15 requires of a message of ``kind``."""
    if kind in REPLYABLE:
        reply_to(body)
        if kind is Kind.MEDIA:
            parse_voice(body)
    elif kind in TARGETED:
        parse_change(kind, body)
    elif kind in EPHEMERAL:
        parse_signal(kind, body)


@dataclass(frozen=True, slots=True)
class Target:
    """A text or media message, as far as actions care."""

    message_id: str
    conversation: str
    sender_account: str
    ts: int


@dataclass(frozen=True, slots=True)
class Action:
    """A reaction, edit or delete as every device keeps it: its envelope's routing and the queue time."""

    message_id: str
    conversation: str
    sender_account: str
    ts: int
    server_time: int | None
    """The server's queue time (§7.2); None only in records of a history bundle from an older device."""
    change: Change

    @property
    def target(self) -> str:
        return self.change.target

    @property
    def order(self) -> tuple[int, str]:
        """Later wins: by the sender's signed time, then by message id (any total order all devices share)."""
        return (self.ts, self.message_id)


def too_late(action: Action, target: Target, limit_ms: int) -> bool:
    """§15.4: past the limit by the sender's signed clock, or by the server's queue time plus slack.

    Both must be within: a sender cannot extend a limit by back-dating its ``ts``, nor the server by
    delaying or re-dating the queue. Neither uses the receiver's clock, so every device agrees."""
    if action.ts - target.ts > limit_ms:
        return True
    return action.server_time is not None and action.server_time - target.ts > limit_ms + CLOCK_SLACK_MS


def refusal(target: Target, action: Action) -> str | None:
    """Why ``action`` does not apply to ``target`` (§15.3), or None when it does."""
    if action.target != target.message_id:
        return "it names another message"
    if action.conversation != target.conversation:
        return "it names a message of another conversation"
    change = action.change
    if isinstance(change, Reaction):
        return None
    if action.sender_account != target.sender_account:
        return "only the account that sent a message can edit or delete it"
    if isinstance(change, Edit) and too_late(action, target, EDIT_LIMIT_MS):
        return "an edit more than 15 minutes after the message"
    if isinstance(change, Delete) and too_late(action, target, DELETE_LIMIT_MS):
        return "a delete more than 60 hours after the message"
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What every device shows for a message after the actions that name it."""

    text: str | None = None
    """The latest edit's text (or caption); None if never (validly) edited."""
    deleted: bool = False
    reactions: tuple[tuple[str, str], ...] = ()
    """(account id, emoji), one per account that has a reaction on it, by account id."""

    @property
    def edited(self) -> bool:
        return self.text is not None and not self.deleted

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "edited": self.edited,
            "deleted": self.deleted,
            "reactions": dict(self.reactions),
        }


def outcome(target: Target, actions: Iterable[Action]) -> Outcome:
    """The message's edits, deletion and reactions from the set of actions (§15.3). Order-free:
    deletion wins over every edit, the latest edit (by :attr:`Action.order`) over earlier ones, each
    account's latest reaction over its earlier ones; actions that do not apply are ignored."""
    valid = [a for a in actions if refusal(target, a) is None]
    if any(isinstance(a.change, Delete) for a in valid):
        return Outcome(deleted=True)
    edits = [a for a in valid if isinstance(a.change, Edit)]
    text = None
    if edits:
        latest = max(edits, key=lambda a: a.order).change
        assert isinstance(latest, Edit)
        text = latest.text
    by_account: dict[str, Action] = {}
    for action in valid:
        if isinstance(action.change, Reaction):
            held = by_account.get(action.sender_account)
            if held is None or action.order > held.order:
                by_account[action.sender_account] = action
    reactions = tuple(
        (account, a.change.emoji)
        for account, a in sorted(by_account.items())
        if isinstance(a.change, Reaction) and a.change.emoji
    )
    return Outcome(text, False, reactions)


def action_from_record(record: Mapping[str, Any]) -> Action:
    """An action kept as a history record (§12, §15.6): ``{"id", "kind", "conversation", "sender",
    "ts", "server_time"?, "body"}``; :class:`ActionError` if it is not a well-formed one."""
    try:
        kind = Kind(str(record.get("kind")))
    except ValueError as error:
        raise ActionError("a record of an unknown kind") from error
    sender, body = record.get("sender"), record.get("body")
    ts, server_time, conversation = record.get("ts"), record.get("server_time"), record.get("conversation")
    if kind not in TARGETED or not isinstance(body, dict) or not isinstance(sender, dict):
        raise ActionError("not a reaction, edit or delete record")
    account = sender.get("account_id")
    if not isinstance(account, str) or not isinstance(conversation, str):
        raise ActionError("an action record without its sender or conversation")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise ActionError("an action record's 'ts' is an integer")
    if server_time is not None and (not isinstance(server_time, int) or isinstance(server_time, bool)):
        raise ActionError("an action record's 'server_time' is an integer")
    try:
        message_id = check_message_id(record.get("id"))
    except EnvelopeError as error:
        raise ActionError(str(error)) from error
    return Action(message_id, conversation, account, ts, server_time, parse_change(kind, body))


def target_from_record(record: Mapping[str, Any]) -> Target | None:
    """A text or media history record as a :class:`Target`, or None for any other record."""
    sender = record.get("sender")
    message_id, ts, conversation = record.get("id"), record.get("ts"), record.get("conversation")
    if record.get("kind") not in REPLYABLE or not isinstance(sender, dict):
        return None
    account = sender.get("account_id")
    if not (isinstance(message_id, str) and isinstance(conversation, str) and isinstance(account, str)):
        return None
    if not isinstance(ts, int) or isinstance(ts, bool):
        return None
    return Target(message_id, conversation, account, ts)
