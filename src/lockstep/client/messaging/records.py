"""What the messenger's parts hand to each other and to the application."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lockstep.e2e.envelope import Kind, MessageEnvelope
from lockstep.e2e.keys import DeviceKeys
from lockstep.link.devices import DeviceList
from lockstep.link.encoding import b64u_encode
from lockstep.link.grant import AccountInfo

Progress = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """The default :data:`Progress`: report nothing."""


def new_message_id() -> str:
    return b64u_encode(secrets.token_bytes(16))


@dataclass(frozen=True, slots=True)
class Contact:
    """An account whose device list and device keys this device has verified."""

    account: AccountInfo
    devices: DeviceList
    keys: dict[str, DeviceKeys]


@dataclass(slots=True)
class Received:
    """One message as this device saw it (``kind`` ``undecryptable`` when it could not be read)."""

    seq: int
    message_id: str
    kind: Kind
    sender_account: str
    sender_device: str
    sender_handle: str | None
    server_time: int
    group_id: str | None = None
    conversation: str | None = None
    timestamp: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    file: Path | None = None
    error: str | None = None

    @property
    def text(self) -> str | None:
        value = self.body.get("text", self.body.get("caption"))
        return value if isinstance(value, str) else None

    def to_json(self) -> dict[str, Any]:
        body = dict(self.body)
        if isinstance(body.get("media"), dict):  # never print the media key
            body["media"] = {k: v for k, v in body["media"].items() if k != "media_key"}
        return {
            "seq": self.seq,
            "id": self.message_id,
            "kind": self.kind,
            "from": {
                "account_id": self.sender_account,
                "device_id": self.sender_device,
                "handle": self.sender_handle,
            },
            "conversation": self.conversation,
            "group_id": self.group_id,
            "ts": self.timestamp,
            "server_time": self.server_time,
            "body": body,
            "file": str(self.file) if self.file else None,
            "error": self.error,
        }

    def to_record(self) -> dict[str, Any]:
        """Everything, media key included, for the device's own state file (e2estate.E2EStore)."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["file"] = str(self.file) if self.file else None
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Received:
        file = record.get("file")
        return cls(
            **{**record, "kind": Kind(record["kind"]), "file": Path(file) if isinstance(file, str) else None}
        )


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str
    conversation: str
    devices: int
    """Every device the message was queued for, this account's other devices included."""
    server_time: int
    own_devices: int = 0
    """How many of ``devices`` are this account's other devices."""


def history_record(envelope: MessageEnvelope, server_time: int | None = None) -> dict[str, Any]:
    """A message as this device keeps it in its own history (and sends it in a bundle); reactions, edits
    and deletes with the server's queue time, which their time limits need (messaging.md §15.4)."""
    record = {
        "id": envelope.message_id,
        "kind": envelope.kind.value,
        "conversation": envelope.conversation,
        "sender": {"account_id": envelope.sender_account, "device_id": envelope.sender_device},
        "ts": envelope.timestamp,
        "body": envelope.body,
    }
    if server_time is not None:
        record["server_time"] = server_time
    return record
