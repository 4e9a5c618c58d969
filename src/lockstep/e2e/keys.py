"""Published end-to-end keys of a device (docs/protocol/messaging.md §3).

A device's *key bundle* names its vodozemac identity keys (Curve25519 for Olm, Ed25519 for signing
one-time keys) and is an envelope signed in context ``lockstep/device-keys/v1`` by its **Lockstep device
key**. Peers accept a bundle only if that device key is in the account's primary-signed device list, so
the server can neither add a device nor swap a device's E2E keys.

One-time keys (and one fallback key) are each signed by the bundle's Ed25519 key over
``"lockstep/one-time-key/v1" ‖ 0x00 ‖ key_id ‖ 0x00 ‖ key``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.e2e.errors import KeyBundleError
from lockstep.link.devices import DeviceList, Role
from lockstep.link.ed25519 import WeakKeyError, check_public_key, verify_strict
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.envelope import Context, Envelope
from lockstep.link.errors import EncodingError, LinkError, SignatureError

ONE_TIME_KEY_CONTEXT = b"lockstep/one-time-key/v1"


def _key(payload: dict[str, Any], name: str, length: int = 32) -> bytes:
    try:
        return b64u_decode(payload.get(name), length=length, what=name)  # type: ignore[arg-type]
    except EncodingError as error:
        raise KeyBundleError(str(error)) from error


def _signing_key(payload: dict[str, Any]) -> bytes:
    try:
        return check_public_key(_key(payload, "signing_key"), "signing key")
    except WeakKeyError as error:
        raise KeyBundleError(str(error)) from error


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A device's E2E identity: what its key bundle says."""

    account_id: str
    device_id: str
    identity_key: bytes
    """Curve25519, the Olm identity key."""
    signing_key: bytes
    """Ed25519, signs this device's one-time keys."""
    issued_at: int

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "device-keys",
            "account_id": self.account_id,
            "device_id": self.device_id,
            "identity_key": b64u_encode(self.identity_key),
            "signing_key": b64u_encode(self.signing_key),
            "issued_at": self.issued_at,
        }

    def seal(self, device_key: Ed25519PrivateKey) -> Envelope:
        return Envelope.seal(device_key, Context.DEVICE_KEYS, self.to_payload())

    @classmethod
    def verify(cls, envelope: Envelope, devices: DeviceList, device_id: str) -> DeviceKeys:
        """Accept a bundle only if signed by a device key in the verified device list."""
        entry = devices.find(device_id)
        if entry is None:
            raise KeyBundleError(f"device {device_id} is not in the account's signed device list")
        try:
            payload = envelope.open(entry.device_key, Context.DEVICE_KEYS)
        except SignatureError as error:
            raise KeyBundleError(f"device {device_id}'s bundle is not signed by its device key") from error
        if payload.get("v") != 1 or payload.get("type") != "device-keys":
            raise KeyBundleError("not a version 1 device-keys bundle")
        if payload.get("device_id") != device_id or payload.get("account_id") != devices.account_id:
            raise KeyBundleError("the bundle names another device or account")
        issued_at = payload.get("issued_at")
        if not isinstance(issued_at, int) or isinstance(issued_at, bool):
            raise KeyBundleError("'issued_at' must be an integer")
        return cls(
            devices.account_id,
            device_id,
            _key(payload, "identity_key"),
            _signing_key(payload),
            issued_at,
        )


UNLINK_GRACE_MS = 60_000
"""How long after an unlink's list was signed a message of the unlinked device may still have been
accepted by the server: the list is signed on the phone, then sent, then applied (messaging.md §3.1)."""


@dataclass(frozen=True, slots=True)
class FormerDevice:
    """A device an account unlinked, proven by two consecutive signed lists: one that has it and the
    next, which does not (messaging.md §3.1). Messages it sent while listed stay readable."""

    keys: DeviceKeys
    removed_at: int
    """``issued_at`` of the list that removed it: server time, signed by the account key."""

    @classmethod
    def verify(cls, record: object, account_key: bytes, device_id: str, current_version: int) -> FormerDevice:
        """Check ``accounts.lookup``'s ``former_device`` against the account key and the newest list
        version the receiver verified; :class:`KeyBundleError` if anything does not hold."""
        if not isinstance(record, dict) or record.get("device_id") != device_id:
            raise KeyBundleError(f"the server has no record of an unlinked device {device_id}")
        try:
            listed_in = DeviceList.verify(Envelope.from_json(record["listed_in"]), account_key)
            removed_by = DeviceList.verify(Envelope.from_json(record["removed_by"]), account_key)
            bundle = Envelope.from_json(record["bundle"])
        except (KeyError, TypeError, ValueError, LinkError) as error:
            raise KeyBundleError(f"the record of unlinked device {device_id} does not verify") from error
        entry = listed_in.find(device_id)
        if entry is None or entry.role is not Role.COMPANION:
            raise KeyBundleError(f"device {device_id} was never a companion of this account")
        if removed_by.version != listed_in.version + 1 or removed_by.find(device_id) is not None:
            raise KeyBundleError(f"the lists given for device {device_id} do not show it being unlinked")
        if removed_by.version > current_version:
            raise KeyBundleError(f"device {device_id}'s unlink is newer than the account's device list")
        try:
            keys = DeviceKeys.verify(bundle, listed_in, device_id)
        except KeyBundleError as error:
            raise KeyBundleError(f"the record of unlinked device {device_id} does not verify") from error
        return cls(keys, removed_by.issued_at)

    def sent_while_listed(self, server_time: int, sent_at: int) -> bool:
        """The server queued it, and its device wrote it, before the unlink (within the grace)."""
        deadline = self.removed_at + UNLINK_GRACE_MS
        return server_time <= deadline and sent_at <= deadline


def _one_time_message(key_id: str, key: bytes) -> bytes:
    return ONE_TIME_KEY_CONTEXT + b"\x00" + key_id.encode("utf-8") + b"\x00" + key


@dataclass(frozen=True, slots=True)
class OneTimeKey:
    """A signed Curve25519 one-time key (or the fallback key, used when none are left)."""

    key_id: str
    key: bytes
    signature: bytes
    fallback: bool = False

    def verify(self, signing_key: bytes) -> None:
        try:
            verify_strict(signing_key, _one_time_message(self.key_id, self.key), self.signature)
        except SignatureError as error:
            raise KeyBundleError("a one-time key's signature does not verify") from error

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "key": b64u_encode(self.key),
            "signature": b64u_encode(self.signature),
            "fallback": self.fallback,
        }

    @classmethod
    def from_json(cls, value: object) -> OneTimeKey:
        if not isinstance(value, dict):
            raise KeyBundleError("a one-time key is an object")
        key_id, fallback = value.get("key_id"), value.get("fallback", False)
        if not isinstance(key_id, str) or not 1 <= len(key_id) <= 64 or not isinstance(fallback, bool):
            raise KeyBundleError("a one-time key has a short string 'key_id' and a boolean 'fallback'")
        return cls(key_id, _key(value, "key"), _key(value, "signature", 64), fallback)


def one_time_key_message(key_id: str, key: bytes) -> bytes:
    """The bytes a device signs for one of its one-time keys."""
    return _one_time_message(key_id, key)
