"""Events the server pushes over ``/ws``: small frozen values, one class per ``event`` name
(linking.md §7.1, §7.3; messaging.md §7.2, §7.5).

``to_json()`` gives the frame a client receives: ``{"event": EVENT, field: value, ...}``, nested
values as plain JSON. web/src/net/events.ts declares the same events as the ``ServerEvent`` union
and checks each frame against it; tests/web/test_web_protocol.py feeds every event below through
that check and compares names and fields, so the two cannot drift apart.

The hub and the Redis bus carry the JSON (``event.to_json()``), not these objects.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, ClassVar


class DeclineReason(enum.StrEnum):
    """Why a code ended declined (``link.declined``)."""

    DECLINED = "declined"
    """The person chose Decline on the phone."""
    TOO_MANY_DEVICES = "too_many_devices"
    """The account already has its MAX_COMPANIONS companions; the server ended the code on scan."""
    WRONG_CODE = "wrong_code"
    """A typed code (§10) did not match: the primary's CPace key differs from the companion's."""
    WRONG_NUMBER = "wrong_number"
    """On a different network, the number typed on the primary was not the companion's (§6.5)."""


class DeviceChangeKind(enum.StrEnum):
    LINKED = "linked"
    UNLINKED = "unlinked"
    RENAMED = "renamed"
    REFRESHED = "refreshed"
    """The primary re-signed the same devices (idle logout, linking.md §4.5); ``device_id`` is its own."""
    PROBATION_ENDED = "probation_ended"
    """The primary ended a companion's probation early (linking.md §4.6); ``device_id`` is that one's."""


class GroupChangeKind(enum.StrEnum):
    CREATED = "created"
    ADDED = "added"
    REMOVED = "removed"


class GroupRole(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


def _plain(value: Any) -> Any:
    """A field's value as JSON: nested values by their own ``to_json`` or fields, enums by value."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


class _Event:
    __slots__ = ()
    EVENT: ClassVar[str]
    """The frame's ``event`` name."""

    def to_json(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        fields = {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}
        return {"event": self.EVENT, **fields}


# --- every socket (linking.md §7.1) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerInfo:
    origin: str
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Hello(_Event):
    """The first frame on every socket: who the server is and the challenge to sign for ``auth``."""

    EVENT = "hello"
    server: ServerInfo
    challenge: str
    """b64u of 32 random bytes."""
    server_time: int


# --- the companion's link session (linking.md §6, §7.3) -------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkRef(_Event):
    """A new code to show (the previous one stopped being live)."""

    EVENT = "link.ref"
    ref: str
    issued_at: int
    expires_at: int
    server_time: int
    index: int
    """0-based position in the rotation schedule."""
    last: bool


@dataclass(frozen=True, slots=True)
class LinkScanned(_Event):
    """A primary inspected the current code: hide it, show "confirm on your phone"."""

    EVENT = "link.scanned"


@dataclass(frozen=True, slots=True)
class LinkIdle(_Event):
    """The schedule is used up: offer a new code."""

    EVENT = "link.idle"


@dataclass(frozen=True, slots=True)
class LinkDeclined(_Event):
    EVENT = "link.declined"
    reason: DeclineReason


@dataclass(frozen=True, slots=True)
class LinkGranted(_Event):
    """The sealed grant (linking.md §5) for the code ``ref``."""

    EVENT = "link.granted"
    ref: str
    enc: str
    ciphertext: str


@dataclass(frozen=True, slots=True)
class LinkCodeOffer(_Event):
    """A primary's CPace message for the companion's typed code (§10.3): answer it once."""

    EVENT = "link.code.offer"
    sid: str
    share: str


@dataclass(frozen=True, slots=True)
class LinkCodeAnswer(_Event):
    """To the primary that offered on ``code_id``: the companion's CPace share and sealed payload."""

    EVENT = "link.code.answer"
    code_id: str
    share: str
    sealed: str


# --- an account's devices (linking.md §7.3) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceChange:
    kind: DeviceChangeKind
    device_id: str
    name: str


@dataclass(frozen=True, slots=True)
class DevicesChanged(_Event):
    """The account's new signed device list, to every other device."""

    EVENT = "devices.changed"
    device_list: dict[str, str]
    """The signed list as an envelope: ``{"payload", "signature"}``."""
    change: DeviceChange


@dataclass(frozen=True, slots=True)
class DeviceUnlinked(_Event):
    """To the unlinked device, whose sockets are then closed with CLOSE_UNLINKED."""

    EVENT = "device.unlinked"
    device_id: str


# --- messaging (messaging.md §7.2, §7.5) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sender:
    account_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class Message(_Event):
    """One queued ciphertext for this device (``messages.fetch`` returns the same without ``event``)."""

    EVENT = "message"
    seq: int
    message_id: str
    sender: Sender
    group_id: str | None
    payload: dict[str, Any]
    server_time: int


@dataclass(frozen=True, slots=True)
class GroupMember:
    account_id: str
    role: GroupRole


@dataclass(frozen=True, slots=True)
class GroupChange:
    kind: GroupChangeKind
    by: str
    """The account that made the change."""
    by_device: str
    """The device that made it: members' devices refuse a change made by one on probation (linking.md
    §4.6), whatever the server allowed."""
    account_id: str | None = None
    """The account added or removed (none for ``created``)."""

    def to_json(self) -> dict[str, Any]:
        change = {"kind": self.kind.value, "by": self.by, "by_device": self.by_device}
        return change if self.account_id is None else {**change, "account_id": self.account_id}


@dataclass(frozen=True, slots=True)
class GroupsChanged(_Event):
    """A group's membership changed: to every device of every member, before and after."""

    EVENT = "groups.changed"
    group_id: str
    created_by: str
    version: int
    members: list[GroupMember]
    change: GroupChange


@dataclass(frozen=True, slots=True)
class KeysLow(_Event):
    """This device's one-time keys are running out: publish more (messaging.md §7.7)."""

    EVENT = "keys.low"
    one_time_keys_left: int


ServerEvent = (
    Hello
    | LinkRef
    | LinkScanned
    | LinkIdle
    | LinkDeclined
    | LinkGranted
    | LinkCodeOffer
    | LinkCodeAnswer
    | DevicesChanged
    | DeviceUnlinked
    | Message
    | GroupsChanged
    | KeysLow
)
