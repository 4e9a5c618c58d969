"""Contacts: accounts looked up on the server and verified here (messaging.md §3).

The server hands out an account's key, its primary-signed device list and each device's signed key
bundle; nothing is trusted before it verifies. A handle is pinned to the first account key seen for it
(a change is refused, like a safety-number change), and a device list may never go back to an older
version (rollback). Verified contacts are cached for the session.
"""

from __future__ import annotations

from typing import Any, Literal

from lockstep.client.errors import ClientError, ServerRefused
from lockstep.client.messaging.device import Device
from lockstep.client.messaging.records import Contact
from lockstep.e2e.errors import KeyBundleError
from lockstep.e2e.keys import DeviceKeys, FormerDevice
from lockstep.link.devices import DeviceList
from lockstep.link.encoding import b64u_encode
from lockstep.link.envelope import Envelope
from lockstep.link.errors import LinkError
from lockstep.link.grant import AccountInfo
from lockstep.server.errors import ErrorCode

MAX_LOOKUP = 128
"""Accounts per batched ``accounts.lookup`` (messaging.md §7.1)."""


class Contacts:
    def __init__(self, device: Device) -> None:
        self.device = device
        self._verified: dict[str, Contact] = {}

    async def get(
        self, *, handle: str | None = None, account_id: str | None = None, refresh: bool = False
    ) -> Contact:
        """An account's verified devices and keys (cached for this session unless ``refresh``)."""
        if handle is not None:
            handle = handle.removeprefix("@").lower()
            account_id = account_id or self.device.store.handles.get(handle)
        if account_id is not None and not refresh and account_id in self._verified:
            return self._verified[account_id]
        query = {"handle": handle} if account_id is None else {"account_id": account_id}
        try:
            result = await self.device.request("accounts.lookup", **query)
        except ServerRefused as error:
            if error.code == ErrorCode.ACCOUNT_UNKNOWN:
                raise ClientError(
                    f"no account {'@' + handle if handle else account_id} on this server"
                ) from error
            raise
        return self.verify(result, handle=handle if account_id is None else None, account_id=account_id)

    async def get_many(self, devices: dict[str, set[str]], *, refresh: bool = False) -> list[Contact]:
        """Verified contacts for the accounts in ``devices`` (account id → the device ids the server
        says can receive), in that order; a cached one is used while its devices still match, the rest
        are looked up :data:`MAX_LOOKUP` accounts per request."""
        stale = [
            account_id
            for account_id, device_ids in devices.items()
            if refresh
            or account_id not in self._verified
            or set(self._verified[account_id].keys) != device_ids
        ]
        await self._look_up("account_ids", stale)
        return [self._verified[account_id] for account_id in devices]

    async def get_by_handles(self, handles: list[str]) -> list[Contact]:
        """Verified contacts for ``handles`` (with or without "@"), in that order, each once: those not cached
        are looked up :data:`MAX_LOOKUP` per request, so a group of a thousand handles costs eight
        look-ups of the server's rate limit, not a thousand (issue 15)."""
        wanted = [h.removeprefix("@").lower() for h in handles]
        cached = {h: self._verified.get(self.device.store.handles.get(h, "")) for h in wanted}
        cached.update(await self._look_up("handles", [h for h in cached if cached[h] is None]))
        return [contact for contact in cached.values() if contact is not None]

    async def _look_up(
        self, field: Literal["account_ids", "handles"], wanted: list[str]
    ) -> dict[str, Contact]:
        """Look ``wanted`` up (account ids or handles, as ``field`` says) :data:`MAX_LOOKUP` per request
        and verify each; an unknown one raises :class:`ClientError`."""
        by_handle = field == "handles"
        contacts: dict[str, Contact] = {}
        for start in range(0, len(wanted), MAX_LOOKUP):
            batch = wanted[start : start + MAX_LOOKUP]
            found = (await self.device.request("accounts.lookup", **{field: batch}))["accounts"]
            for key in batch:
                if key not in found:
                    raise ClientError(f"no account {'@' if by_handle else ''}{key} on this server")
                contacts[key] = (
                    self.verify(found[key], handle=key)
                    if by_handle
                    else self.verify(found[key], account_id=key)
                )
        return contacts

    def forget(self, account_id: str) -> None:
        """Drop a cached contact, so the next :meth:`get` asks the server (its devices changed)."""
        self._verified.pop(account_id, None)

    def verify(
        self, result: dict[str, Any], *, handle: str | None = None, account_id: str | None = None
    ) -> Contact:
        """Check an ``accounts.lookup`` answer and keep what verifies, or raise :class:`KeyBundleError`."""
        device, store = self.device, self.device.store
        try:
            info = AccountInfo.from_json(result["account"])
            envelope = Envelope.from_json(result["device_list"])
            devices = DeviceList.verify(envelope, info.account_key)
        except (LinkError, KeyError) as error:
            raise KeyBundleError(f"the server sent an account that does not verify: {error}") from error
        if (handle is not None and info.handle != handle) or (
            account_id is not None and info.account_id != account_id
        ):
            raise KeyBundleError("the server answered a look-up with another account")
        own = info.account_id == device.account_id
        if own and info.account_key != device.session.state.account.account_key:
            raise KeyBundleError("the server sent a different key for this very account")
        pinned = store.handles.get(info.handle)
        if pinned is not None and pinned != info.account_id:
            raise KeyBundleError(
                f"@{info.handle}'s account key changed since you first talked; this may be another "
                "person (or the server) using that handle, so nothing was sent"
            )
        known = store.contacts.get(info.account_id, {})
        if devices.version < int(known.get("device_list_version", 0)):
            raise KeyBundleError(f"the server sent an older device list for @{info.handle} (rollback)")
        if own:
            device.session.accept_device_list(envelope)  # may raise DeviceUnlinked
        keys: dict[str, DeviceKeys] = {}
        for device_id, bundle in result.get("device_keys", {}).items():
            try:
                keys[device_id] = DeviceKeys.verify(Envelope.from_json(bundle), devices, device_id)
            except (KeyBundleError, LinkError) as error:
                raise KeyBundleError(
                    f"@{info.handle}'s device {device_id} has keys that do not verify"
                ) from error
        store.handles[info.handle] = info.account_id
        store.contacts[info.account_id] = {
            "handle": info.handle,
            "display_name": info.display_name,
            "key": b64u_encode(info.account_key),
            "device_list_version": devices.version,
            "devices": {d: b64u_encode(k.identity_key) for d, k in keys.items()},
        }
        contact = Contact(info, devices, keys)
        self._verified[info.account_id] = contact
        return contact

    def handle_of(self, account_id: str) -> str | None:
        handle = self.device.store.contacts.get(account_id, {}).get("handle")
        return str(handle) if handle else None

    async def check_sender_key(
        self, account_id: str, device_id: str, sender_key: bytes
    ) -> FormerDevice | None:
        """Check an Olm sender key against the account's signed list; a device unlinked since comes back
        as a :class:`FormerDevice`, whose caller checks the message was sent before the unlink (§3.1)."""
        contact = await self.get(account_id=account_id)
        keys = contact.keys.get(device_id)
        if keys is None or keys.identity_key != sender_key:
            contact = await self.get(account_id=account_id, refresh=True)
            keys = contact.keys.get(device_id)
        if keys is None and contact.devices.find(device_id) is None:
            former = await self._former_device(contact, device_id)
            if former is not None and former.keys.identity_key == sender_key:
                return former
        if keys is None or keys.identity_key != sender_key:
            raise KeyBundleError("the sending device's key is not in its account's signed device list")
        return None

    async def _former_device(self, contact: Contact, device_id: str) -> FormerDevice | None:
        """A device of ``contact`` unlinked recently, proven by its two signed lists (§3.1), or None."""
        result = await self.device.request(
            "accounts.lookup", account_id=contact.account.account_id, former_device=device_id
        )
        if result.get("former_device") is None:
            return None
        return FormerDevice.verify(
            result["former_device"], contact.account.account_key, device_id, contact.devices.version
        )
