"""The link grant: what the primary seals to the companion with HPKE PSK mode (§5).

Only a device that saw the QR code knows ``link_secret`` (the PSK), so the server that relays the grant
can neither read it nor forge one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from lockstep.link import hpke, probation
from lockstep.link.devices import DeviceCertificate, DeviceEntry, DeviceList, Role, check_name
from lockstep.link.ed25519 import WeakKeyError, check_public_key
from lockstep.link.encoding import b64u_decode, b64u_encode, json_bytes, key_id, parse_json_object
from lockstep.link.envelope import Envelope
from lockstep.link.errors import DeviceListError, EncodingError, GrantError, SignatureError
from lockstep.link.qr import LinkCode, normalise_origin

INFO_PREFIX = "lockstep/link/v1 "


def _string(value: dict[str, Any], name: str) -> str:
    field = value.get(name)
    if not isinstance(field, str):
        raise GrantError(f"account {name} must be a string")
    return field


def hpke_info(origin: str) -> bytes:
    return (INFO_PREFIX + normalise_origin(origin)).encode("utf-8")


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """Public facts about an account, as every device and the server know them."""

    account_id: str
    handle: str
    display_name: str
    account_key: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.account_id,
            "handle": self.handle,
            "display_name": self.display_name,
            "key": b64u_encode(self.account_key),
        }

    @classmethod
    def from_json(cls, value: object) -> AccountInfo:
        if not isinstance(value, dict):
            raise GrantError("account must be an object")
        try:
            key = check_public_key(
                b64u_decode(value.get("key", ""), length=32, what="account key"), "account key"
            )
        except (EncodingError, WeakKeyError) as error:
            raise GrantError(str(error)) from error
        account_id, handle, display_name = (_string(value, name) for name in ("id", "handle", "display_name"))
        if account_id != key_id(key):
            raise GrantError("account id does not match the account key")
        return cls(account_id, handle, display_name, key)


@dataclass(frozen=True, slots=True)
class SealedGrant:
    enc: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Approval:
    """What the primary sends the server in ``link.approve``."""

    sealed: SealedGrant
    certificate: Envelope
    device_list: Envelope
    new_list: DeviceList
    device_id: str


@dataclass(frozen=True, slots=True)
class OpenedGrant:
    """A grant that opened and checked out: the companion may now store it and authenticate."""

    account: AccountInfo
    device_name: str
    certificate: Envelope
    device_list: Envelope
    devices: DeviceList


def approve(
    code: LinkCode,
    account_key: Ed25519PrivateKey,
    account: AccountInfo,
    current_list: DeviceList,
    device_name: str,
    now: int,
    other_network: str | None = None,
) -> Approval:
    """Build the certificate, the next device list and the sealed grant for the scanned ``code``;
    a companion on ``other_network`` (the address the server saw it at) is listed on probation (§4.6)."""
    if current_list.find(key_id(code.device_key)) is not None:
        raise DeviceListError("this device is already linked")
    entry = DeviceEntry.new(code.device_key, Role.COMPANION, device_name, now)
    if other_network is not None:
        entry = probation.start(entry, now, other_network)
    new_list = current_list.with_companion(entry, now)
    list_envelope = new_list.sign(account_key)
    _, certificate = DeviceCertificate.issue(account_key, code.device_key, entry.name, now)
    plaintext = json_bytes(
        {
            "v": 1,
            "type": "link-grant",
            "origin": normalise_origin(code.origin),
            "account": account.to_json(),
            "device_name": entry.name,
            "certificate": certificate.to_json(),
            "device_list": list_envelope.to_json(),
        }
    )
    recipient = X25519PublicKey.from_public_bytes(code.ephemeral_key)
    enc, ciphertext = hpke.seal_psk(
        recipient, hpke_info(code.origin), code.ref, plaintext, psk=code.link_secret, psk_id=code.ref
    )
    return Approval(SealedGrant(enc, ciphertext), certificate, list_envelope, new_list, entry.device_id)


def open_grant(code: LinkCode, ephemeral_key: X25519PrivateKey, sealed: SealedGrant) -> OpenedGrant:
    """The companion's side: decrypt and check every rule of §5. Raises only :class:`GrantError`."""
    try:
        plaintext = hpke.open_psk(
            sealed.enc,
            ephemeral_key,
            hpke_info(code.origin),
            code.ref,
            sealed.ciphertext,
            psk=code.link_secret,
            psk_id=code.ref,
        )
        grant = parse_json_object(plaintext, what="link grant")
        return _check_grant(code, grant)
    except (hpke.HpkeError, EncodingError, SignatureError, DeviceListError) as error:
        raise GrantError(f"link grant refused: {error}") from error


def _check_grant(code: LinkCode, grant: dict[str, Any]) -> OpenedGrant:
    if grant.get("v") != 1 or grant.get("type") != "link-grant":
        raise GrantError("not a version 1 link grant")
    if grant.get("origin") != normalise_origin(code.origin):
        raise GrantError("grant is for another server")
    account = AccountInfo.from_json(grant.get("account"))
    certificate_envelope = Envelope.from_json(grant.get("certificate"))
    list_envelope = Envelope.from_json(grant.get("device_list"))
    certificate = DeviceCertificate.verify(certificate_envelope, account.account_key)
    if certificate.device_key != code.device_key:
        raise GrantError("certificate is for another device")
    devices = DeviceList.verify(list_envelope, account.account_key)
    entry = devices.find(certificate.device_id)
    if entry is None or entry.role is not Role.COMPANION or entry.device_key != code.device_key:
        raise GrantError("device list does not include this device as a companion")
    return OpenedGrant(
        account, check_name(grant.get("device_name")), certificate_envelope, list_envelope, devices
    )
