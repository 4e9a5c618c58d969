"""Device certificates and signed, versioned device lists (docs/protocol/linking.md §4.2, §4.3).

Only the primary holds the account key, so only it can produce a list that verifies. Every device keeps
the newest valid list it has seen and refuses older ones; the server can relay lists but never make one.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.link.ed25519 import WeakKeyError, check_public_key
from lockstep.link.encoding import b64u_decode, b64u_encode, key_id
from lockstep.link.envelope import Context, Envelope
from lockstep.link.errors import DeviceListError, EncodingError, SignatureError
from lockstep.link.wording import SERVER_REFUSALS

MAX_COMPANIONS = 4
MAX_NAME_LENGTH = 64
MAX_ADDRESS_LENGTH = 64
"""An IPv6 address in text is at most 45 characters; room for a zone."""


class Role(enum.StrEnum):
    PRIMARY = "primary"
    COMPANION = "companion"


def check_name(name: object) -> str:
    """A device or display name: 1 to 64 characters, no control characters."""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME_LENGTH:
        raise DeviceListError(f"a name must be 1 to {MAX_NAME_LENGTH} characters")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in name):
        raise DeviceListError("a name must not contain control characters")
    return name.strip()


def _field(payload: dict[str, Any], name: str, kind: type) -> Any:
    value = payload.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DeviceListError(f"'{name}' must be a {kind.__name__}")
    return value


def _optional(payload: dict[str, Any], name: str, kind: type) -> Any:
    """A field old lists do not have (version 2 added ``probation_until`` and ``linked_from``)."""
    return None if payload.get(name) is None else _field(payload, name, kind)


def _address(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(rf"[0-9A-Za-z.:%_-]{{1,{MAX_ADDRESS_LENGTH}}}", value):
        raise DeviceListError("'linked_from' must be an address as the server saw it")
    return value


def _key(payload: dict[str, Any], name: str) -> bytes:
    """An Ed25519 public key: 32 bytes, canonical and not of small order (:mod:`lockstep.link.ed25519`)."""
    try:
        return check_public_key(b64u_decode(_field(payload, name, str), length=32, what=name), name)
    except (EncodingError, WeakKeyError) as error:
        raise DeviceListError(str(error)) from error


def _header(payload: dict[str, Any], kind: str) -> None:
    if payload.get("v") != 1 or payload.get("type") != kind:
        raise DeviceListError(f"not a version 1 {kind}")


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    device_id: str
    device_key: bytes
    role: Role
    name: str
    linked_at: int
    probation_until: int | None = None
    """A companion linked from another network is on probation until then (§4.6, version 2)."""
    linked_from: str | None = None
    """The address the server saw the companion at when it was linked from another network (§4.6)."""

    @classmethod
    def new(cls, device_key: bytes, role: Role, name: str, linked_at: int) -> DeviceEntry:
        return cls(key_id(device_key), device_key, role, check_name(name), linked_at)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "device_id": self.device_id,
            "device_key": b64u_encode(self.device_key),
            "role": self.role.value,
            "name": self.name,
            "linked_at": self.linked_at,
        }
        if self.probation_until is not None:  # absent, not null: a version 1 list stays byte for byte
            entry["probation_until"] = self.probation_until
        if self.linked_from is not None:
            entry["linked_from"] = self.linked_from
        return entry

    @classmethod
    def from_json(cls, value: object) -> DeviceEntry:
        if not isinstance(value, dict):
            raise DeviceListError("a device entry must be an object")
        device_key = _key(value, "device_key")
        device_id = _field(value, "device_id", str)
        if device_id != key_id(device_key):
            raise DeviceListError("device_id does not match device_key")
        try:
            role = Role(str(value.get("role")))
        except ValueError as error:
            raise DeviceListError("role must be 'primary' or 'companion'") from error
        probation_until = _optional(value, "probation_until", int)
        if probation_until is not None and role is not Role.COMPANION:
            raise DeviceListError("only a companion can be on probation")
        return cls(
            device_id,
            device_key,
            role,
            check_name(value.get("name")),
            _field(value, "linked_at", int),
            probation_until,
            _address(_optional(value, "linked_from", str)),
        )


@dataclass(frozen=True, slots=True)
class DeviceList:
    """A version of the account's device list; valid by construction (§4.3)."""

    account_id: str
    version: int
    issued_at: int
    devices: tuple[DeviceEntry, ...]

    def __post_init__(self) -> None:
        if self.version < 1:
            raise DeviceListError("version must be at least 1")
        primaries = [d for d in self.devices if d.role is Role.PRIMARY]
        if len(primaries) != 1:
            raise DeviceListError("a device list has exactly one primary")
        if len(self.devices) - 1 > MAX_COMPANIONS:
            raise DeviceListError(f"at most {MAX_COMPANIONS} companions can be linked")
        if len({d.device_id for d in self.devices}) != len(self.devices):
            raise DeviceListError("a device appears twice")

    @property
    def primary(self) -> DeviceEntry:
        return next(d for d in self.devices if d.role is Role.PRIMARY)

    @property
    def companions(self) -> tuple[DeviceEntry, ...]:
        return tuple(d for d in self.devices if d.role is Role.COMPANION)

    def find(self, device_id: str) -> DeviceEntry | None:
        return next((d for d in self.devices if d.device_id == device_id), None)

    def successor(self, devices: tuple[DeviceEntry, ...], issued_at: int) -> DeviceList:
        return DeviceList(self.account_id, self.version + 1, issued_at, devices)

    def unused_name(self, name: str) -> str:
        """``name``, or ``name (2)``, ``name (3)``…: the first that no device here has, so every device
        stays reachable by name (two laptops both described as "Chrome 156 on Linux")."""
        taken = {d.name for d in self.devices}
        candidate, counter = name, 2
        while candidate in taken:
            suffix = f" ({counter})"
            candidate = name[: MAX_NAME_LENGTH - len(suffix)] + suffix
            counter += 1
        return candidate

    def with_companion(self, entry: DeviceEntry, issued_at: int) -> DeviceList:
        if len(self.companions) >= MAX_COMPANIONS:
            raise DeviceListError(SERVER_REFUSALS["too_many_devices"])
        return self.successor((*self.devices, entry), issued_at)

    def without(self, device_id: str, issued_at: int) -> DeviceList:
        entry = self.find(device_id)
        if entry is None:
            raise DeviceListError(f"no linked device {device_id}")
        if entry.role is Role.PRIMARY:
            raise DeviceListError("the primary device cannot be unlinked")
        return self.successor(tuple(d for d in self.devices if d.device_id != device_id), issued_at)

    def renamed(self, device_id: str, name: str, issued_at: int) -> DeviceList:
        if self.find(device_id) is None:
            raise DeviceListError(f"no linked device {device_id}")
        devices = tuple(
            replace(d, name=check_name(name)) if d.device_id == device_id else d for d in self.devices
        )
        return self.successor(devices, issued_at)

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "device-list",
            "account_id": self.account_id,
            "version": self.version,
            "issued_at": self.issued_at,
            "devices": [d.to_json() for d in self.devices],
        }

    def sign(self, account_key: Ed25519PrivateKey) -> Envelope:
        if key_id(account_key.public_key().public_bytes_raw()) != self.account_id:
            raise DeviceListError("signing key is not this account's key")
        return Envelope.seal(account_key, Context.DEVICE_LIST, self.to_payload())

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DeviceList:
        _header(payload, "device-list")
        devices = _field(payload, "devices", list)
        return cls(
            _field(payload, "account_id", str),
            _field(payload, "version", int),
            _field(payload, "issued_at", int),
            tuple(DeviceEntry.from_json(d) for d in devices),
        )

    @classmethod
    def verify(cls, envelope: Envelope, account_key: bytes) -> DeviceList:
        """Open a signed list under the account's public key and check every rule of §4.3."""
        try:
            device_list = cls.from_payload(envelope.open(account_key, Context.DEVICE_LIST))
        except SignatureError as error:
            raise DeviceListError(f"device list: {error}") from error
        if device_list.account_id != key_id(account_key):
            raise DeviceListError("device list is for another account")
        return device_list


class ListUpdate(enum.StrEnum):
    """What a device does with a valid list it is offered, given the version it holds (§4.3)."""

    TAKE = "take"
    """Newer: it replaces the held list."""
    KEEP = "keep"
    """The same version: ignored, whether identical (a no-op) or not (only a misbehaving server or a
    replay sends a different list under a version already seen)."""
    STALE = "stale"
    """Older: refused (a rollback)."""


def list_update(held_version: int, offered: DeviceList) -> ListUpdate:
    """§4.3: a device accepts a valid list only if its version is greater than the one it holds."""
    if offered.version > held_version:
        return ListUpdate.TAKE
    return ListUpdate.KEEP if offered.version == held_version else ListUpdate.STALE


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """The account key's statement that a device key belongs to the account (§4.2)."""

    account_id: str
    account_key: bytes
    device_id: str
    device_key: bytes
    name: str
    issued_at: int

    @classmethod
    def issue(
        cls, account_key: Ed25519PrivateKey, device_key: bytes, name: str, issued_at: int
    ) -> tuple[DeviceCertificate, Envelope]:
        public = account_key.public_key().public_bytes_raw()
        certificate = cls(key_id(public), public, key_id(device_key), device_key, check_name(name), issued_at)
        return certificate, Envelope.seal(account_key, Context.DEVICE_CERTIFICATE, certificate.to_payload())

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "device-certificate",
            "account_id": self.account_id,
            "account_key": b64u_encode(self.account_key),
            "device_id": self.device_id,
            "device_key": b64u_encode(self.device_key),
            "name": self.name,
            "issued_at": self.issued_at,
        }

    @classmethod
    def verify(cls, envelope: Envelope, account_key: bytes) -> DeviceCertificate:
        try:
            payload = envelope.open(account_key, Context.DEVICE_CERTIFICATE)
        except SignatureError as error:
            raise DeviceListError(f"device certificate: {error}") from error
        _header(payload, "device-certificate")
        certificate = cls(
            _field(payload, "account_id", str),
            _key(payload, "account_key"),
            _field(payload, "device_id", str),
            _key(payload, "device_key"),
            check_name(payload.get("name")),
            _field(payload, "issued_at", int),
        )
        if certificate.account_key != account_key or certificate.account_id != key_id(account_key):
            raise DeviceListError("device certificate names another account")
        if certificate.device_id != key_id(certificate.device_key):
            raise DeviceListError("device certificate's device_id does not match its key")
        return certificate
