"""Megolm group sessions of one device (messaging.md §6).

Each device keeps one *outbound* session per group it sends to, shares its session key over Olm with
every member device, and records which devices got it. Before each send the caller passes the group's
current target devices:

- a device that got the key is no longer a target (member removed, device unlinked) → **rotate**: a new
  session, shared afresh, so the removed device cannot read what is sent after;
- a new target (member added, device linked) → share the *current* key with it only; Megolm keys ratchet
  forward, so it cannot read what was sent before;
- after :data:`ROTATE_AFTER_MESSAGES` messages → rotate anyway (bounds what one leaked key exposes).

Inbound sessions are keyed by (sender device, session id) and remember the Curve25519 key of the Olm
session that delivered them; indices already decrypted are refused as replays (kept in bounded space,
:mod:`lockstep.e2e.replay`), also after the same session is re-shared from an earlier index.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import vodozemac

from lockstep.e2e.errors import DecryptionError, E2EError, LocalE2EError, NoSession, ReplayedMessage
from lockstep.e2e.replay import SeenIndexes
from lockstep.link.encoding import b64u_encode

ROTATE_AFTER_MESSAGES = 100


def _new_share_id() -> str:
    return b64u_encode(secrets.token_bytes(16))


@dataclass(slots=True)
class OutboundGroup:
    session: vodozemac.GroupSession
    shared_with: set[str] = field(default_factory=set)
    messages: int = 0
    share_id: str = field(default_factory=_new_share_id)
    """The message id of this session's key share: one logical message, however many requests and
    retries it takes, so a copy that reached a device is never queued for it twice (§6.3)."""


@dataclass(slots=True)
class InboundGroup:
    session: vodozemac.InboundGroupSession
    group_id: str
    sender_key: str
    seen: SeenIndexes = field(default_factory=SeenIndexes)


@dataclass(frozen=True, slots=True)
class KeyShare:
    """What a sender must do before a group message: send ``body`` (over Olm) to ``devices``."""

    devices: frozenset[str]
    body: dict[str, str]
    rotated: bool
    message_id: str


@dataclass(frozen=True, slots=True)
class GroupPlaintext:
    plaintext: bytes
    group_id: str
    message_index: int


@dataclass(slots=True)
class Changed:
    """Sessions changed since a store last took them (:meth:`GroupSessions.take_changed`): outbound by
    group id, inbound by (sender device, session id); a key no longer in :class:`GroupSessions` is gone."""

    outbound: set[str] = field(default_factory=set)
    inbound: set[tuple[str, str]] = field(default_factory=set)


class GroupSessions:
    def __init__(self) -> None:
        self.outbound: dict[str, OutboundGroup] = {}
        self.inbound: dict[tuple[str, str], InboundGroup] = {}
        self.changed = Changed()

    def prepare(self, group_id: str, targets: set[str]) -> KeyShare:
        """Rotate if needed and say who still needs the current session key (§6.2)."""
        current = self.outbound.get(group_id)
        rotated = (
            current is None
            or bool(current.shared_with - targets)
            or current.messages >= ROTATE_AFTER_MESSAGES
        )
        if rotated or current is None:
            current = OutboundGroup(vodozemac.GroupSession())
            self.outbound[group_id] = current
            self.changed.outbound.add(group_id)
        body = {
            "group_id": group_id,
            "session_id": current.session.session_id,
            "session_key": current.session.session_key.to_base64(),
        }
        return KeyShare(frozenset(targets - current.shared_with), body, rotated, current.share_id)

    def mark_shared(self, group_id: str, devices: set[str] | frozenset[str]) -> None:
        self.outbound[group_id].shared_with |= devices
        self.changed.outbound.add(group_id)

    def forget_outbound(self, group_id: str) -> None:
        self.outbound.pop(group_id, None)
        self.changed.outbound.add(group_id)

    def encrypt(self, group_id: str, plaintext: bytes) -> bytes:
        current = self.outbound.get(group_id)
        if current is None:
            raise LocalE2EError("prepare the group session before encrypting")
        current.messages += 1
        self.changed.outbound.add(group_id)
        return current.session.encrypt(plaintext).to_bytes()

    def add_inbound(self, sender_device: str, sender_key: str, body: dict[str, Any]) -> None:
        """Store a session key that arrived over Olm from ``sender_device`` (Curve25519 ``sender_key``)."""
        try:
            session = vodozemac.InboundGroupSession(vodozemac.SessionKey(body["session_key"]))
        except (vodozemac.SessionKeyDecodeException, KeyError, ValueError) as error:
            raise DecryptionError("a group key that does not decode") from error
        if session.session_id != body.get("session_id"):
            raise DecryptionError("a group key whose session id does not match")
        key = (sender_device, session.session_id)
        existing = self.inbound.get(key)
        if existing is not None and existing.group_id != body.get("group_id"):
            raise DecryptionError("a group key already shared for another group")
        if existing is not None and existing.session.first_known_index <= session.first_known_index:
            return  # keep the copy that reaches further back
        # A re-share from an earlier index replaces the session but not what it already decrypted: the
        # indices seen stay seen, or every earlier message could be shown again (a replay).
        seen = existing.seen if existing is not None else SeenIndexes()
        self.inbound[key] = InboundGroup(session, str(body["group_id"]), sender_key, seen)
        self.changed.inbound.add(key)

    def session_id(self, group_id: str) -> str:
        return self.outbound[group_id].session.session_id

    def decrypt(self, sender_device: str, session_id: str, ciphertext: bytes) -> GroupPlaintext:
        """Decrypt with the session ``sender_device`` shared as ``session_id`` (named beside the
        ciphertext, as Matrix does; a wrong name just fails the signature check)."""
        try:
            message = vodozemac.MegolmMessage.from_bytes(ciphertext)
        except (vodozemac.DecodeException, ValueError) as error:
            raise DecryptionError("not a Megolm message") from error
        entry = self.inbound.get((sender_device, session_id))
        if entry is None:
            raise NoSession("no group key from this device for this message")
        try:
            result = entry.session.decrypt(message)
        except (vodozemac.MegolmDecryptionException, ValueError) as error:
            raise DecryptionError("the group message does not decrypt") from error
        if not entry.seen.add(result.message_index):
            raise ReplayedMessage("a group message index already decrypted")
        self.changed.inbound.add((sender_device, session_id))
        return GroupPlaintext(result.plaintext, entry.group_id, result.message_index)

    def pickle_outbound(self, group_id: str, pickle_key: bytes) -> dict[str, Any]:
        g = self.outbound[group_id]
        return {
            "pickle": g.session.pickle(pickle_key),
            "shared_with": sorted(g.shared_with),
            "messages": g.messages,
            "share_id": g.share_id,
        }

    def pickle_inbound(self, key: tuple[str, str], pickle_key: bytes) -> dict[str, Any]:
        g = self.inbound[key]
        return {
            "sender_device": key[0],
            "session_id": key[1],
            "group_id": g.group_id,
            "sender_key": g.sender_key,
            "pickle": g.session.pickle(pickle_key),
            "seen": g.seen.to_json(),
        }

    def pickle(self, pickle_key: bytes) -> dict[str, Any]:
        return {
            "outbound": {group_id: self.pickle_outbound(group_id, pickle_key) for group_id in self.outbound},
            "inbound": [self.pickle_inbound(key, pickle_key) for key in self.inbound],
        }

    def take_changed(self) -> Changed:
        """What changed since the last call (a store writes those, and only those, in its next save)."""
        changed, self.changed = self.changed, Changed()
        return changed

    @classmethod
    def from_pickle(cls, value: dict[str, Any], pickle_key: bytes) -> GroupSessions:
        sessions = cls()
        try:
            for group_id, g in value["outbound"].items():
                sessions.outbound[group_id] = OutboundGroup(
                    vodozemac.GroupSession.from_pickle(g["pickle"], pickle_key),
                    set(g["shared_with"]),
                    int(g["messages"]),
                    str(g.get("share_id") or _new_share_id()),  # state from before share ids
                )
            for g in value["inbound"]:
                sessions.inbound[(g["sender_device"], g["session_id"])] = InboundGroup(
                    vodozemac.InboundGroupSession.from_pickle(g["pickle"], pickle_key),
                    g["group_id"],
                    g["sender_key"],
                    SeenIndexes.from_json(g["seen"]),
                )
        except (vodozemac.PickleException, KeyError, TypeError, ValueError) as error:
            raise E2EError("damaged or foreign Megolm pickle") from error
        return sessions
