"""What the store returns and takes: frozen records, independent of the engine behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockstep.link.devices import DeviceList, Role
from lockstep.link.envelope import Envelope
from lockstep.link.grant import AccountInfo
from lockstep.server.errors import MediaQuotaExceeded
from lockstep.server.events import Message, Sender


@dataclass(frozen=True, slots=True)
class AccountRecord:
    info: AccountInfo
    device_list: Envelope
    device_list_version: int

    def devices(self) -> DeviceList:
        """The stored list; it was verified when stored, and is re-verified here for defence in depth."""
        return DeviceList.verify(self.device_list, self.info.account_key)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    account_id: str
    device_key: bytes
    role: Role
    last_active: int | None


@dataclass(frozen=True, slots=True)
class DeviceListChange:
    """Replace an account's list with ``new_list`` (version ``expected_version + 1``)."""

    account_id: str
    expected_version: int
    new_list: DeviceList
    envelope: Envelope
    added_certificate: Envelope | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One ciphertext waiting in a device's queue."""

    seq: int
    message_id: str
    sender_account: str
    sender_device: str
    group_id: str | None
    payload: dict[str, Any]
    server_time: int

    def to_event(self) -> dict[str, Any]:
        """The ``message`` event that announces it (events.Message, as JSON)."""
        sender = Sender(self.sender_account, self.sender_device)
        return Message(
            self.seq, self.message_id, sender, self.group_id, self.payload, self.server_time
        ).to_json()


@dataclass(frozen=True, slots=True)
class Delivery:
    """What to enqueue for one send: per-device payloads, in order, sharing one message id."""

    message_id: str
    sender_account: str
    sender_device: str
    group_id: str | None
    payloads: list[tuple[str, dict[str, Any]]]
    to_account: str | None = None
    """The recipient account of a direct send (None for groups)."""
    introduces: bool = True
    """Whether this send makes its conversation known to the sender (False for receipts)."""

    @property
    def peer(self) -> str:
        """The conversation as a recipient sees it: the group, or the sending account."""
        return self.group_id or self.sender_account


@dataclass(frozen=True, slots=True)
class Conversation:
    """Where a send goes: a direct chat from ``sender_account`` to ``to_account``, or a group."""

    sender_account: str
    to_account: str | None = None
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class Audience:
    """Whom a send may reach, read inside the send's own transaction."""

    devices: dict[str, set[str]]
    """Each account of the conversation (the recipient and the sender, or every group member) → its
    devices that published E2E keys (none: an empty set)."""
    knows: frozenset[str] = frozenset()
    """The accounts that already wrote into the conversation (``known_peers``): the sender, to the
    recipient or into the group; a recipient, to the sender or into the group."""

    def owners(self) -> dict[str, str]:
        """Device id → its account."""
        return {device_id: account for account, ids in self.devices.items() for device_id in ids}


@dataclass(frozen=True, slots=True)
class StrangerLimits:
    """What accounts a recipient never wrote to may keep queued for each of its devices (bytes)."""

    per_sender_bytes: int
    all_strangers_bytes: int


@dataclass(frozen=True, slots=True)
class MediaQuota:
    """What one device may upload: per rolling day, and kept on the server at once (bytes)."""

    daily_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class MediaUsage:
    stored_bytes: int
    """Bytes of this device's blobs still kept."""
    last_day_bytes: int
    """Bytes it uploaded in the last 24 hours."""

    def plus(self, size: int) -> MediaUsage:
        return MediaUsage(self.stored_bytes + size, self.last_day_bytes + size)

    def check(self, size: int, quota: MediaQuota) -> None:
        """:class:`MediaQuotaExceeded` if ``size`` more bytes would pass the quota."""
        if self.last_day_bytes + size > quota.daily_bytes:
            raise MediaQuotaExceeded(daily=True, limit_bytes=quota.daily_bytes)
        if self.stored_bytes + size > quota.stored_bytes:
            raise MediaQuotaExceeded(daily=False, limit_bytes=quota.stored_bytes)


@dataclass(frozen=True, slots=True)
class ClaimedKeys:
    bundle: dict[str, Any] | None
    one_time_key: dict[str, Any] | None
    one_time_keys_left: int


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group_id: str
    created_by: str
    version: int
    members: dict[str, str]
    """account id → role (admin or member)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "created_by": self.created_by,
            "version": self.version,
            "members": [{"account_id": a, "role": r} for a, r in sorted(self.members.items())],
        }
