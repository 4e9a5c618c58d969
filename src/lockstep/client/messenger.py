"""End-to-end messaging for a linked device, primary or companion (docs/protocol/messaging.md).

A :class:`Messenger` wraps an authenticated :class:`DeviceSession` and the device's E2E state. It
publishes this device's keys, finds contacts and verifies their keys against their primary-signed device
lists, fans every message out (one Olm ciphertext per device of the recipient and per other device of
ours; one Megolm ciphertext for a group), receives in queue order exactly once, answers with delivery
receipts, and moves media through the server encrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lockstep.client import e2estate, mediahttp
from lockstep.client.e2estate import E2EStore
from lockstep.client.errors import ClientError, ConnectionLost, ServerRefused, StateError
from lockstep.client.session import DeviceSession, DeviceUnlinked
from lockstep.client.state import DeviceState
from lockstep.e2e.envelope import (
    Kind,
    MessageEnvelope,
    ReceiptStatus,
    direct_conversation,
    group_conversation,
)
from lockstep.e2e.errors import E2EError, EnvelopeError, KeyBundleError, MediaError
from lockstep.e2e.keys import DeviceKeys, FormerDevice, OneTimeKey
from lockstep.e2e.media import MediaDigest, MediaKind, human_size, kind_for_mimetype, new_media_key
from lockstep.e2e.olm import OlmCiphertext, OlmType
from lockstep.link.devices import DeviceList, Role
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.envelope import Envelope
from lockstep.link.errors import LinkError
from lockstep.link.grant import AccountInfo
from lockstep.server.errors import ErrorCode

log = logging.getLogger(__name__)

ONE_TIME_KEYS_TARGET = 50
HISTORY_DAYS = 30
HISTORY_MAX = 1000
MAX_FRAME = 60_000
SEND_ATTEMPTS = 3
FETCH_LIMIT = 200
Progress = Callable[[int, int], None]


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


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(name).name).strip(" .")
    return cleaned[:100] or "file"


class Messenger:
    def __init__(self, session: DeviceSession, store: E2EStore, ca_file: str | None = None) -> None:
        self.session = session
        self.store = store
        self.ca_file = ca_file
        self.auto_download = True
        self._contacts: dict[str, Contact] = {}
        try:
            self._unreported = [Received.from_record(record) for record in store.unreported]
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"damaged E2E state: an unreported message: {error}") from error

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, state: DeviceState, *, ca_file: str | None = None) -> AsyncIterator[Messenger]:
        """Lock the state folder, authenticate, load (or create) the E2E state and publish keys."""
        with e2estate.locked(state.directory):
            try:
                session = await DeviceSession.open(state, ca_file=ca_file)
            except DeviceUnlinked:
                e2estate.wipe(state.directory)
                raise
            try:
                messenger = cls(session, E2EStore.load_or_create(state.directory), ca_file)
                try:
                    await messenger.publish_keys()
                except ServerRefused as error:
                    if error.code not in (ErrorCode.STORAGE_FULL, ErrorCode.UNAVAILABLE):
                        raise
                    log.warning("keys not published, receiving anyway: %s", error)  # a full server disk
                yield messenger
            except DeviceUnlinked:
                e2estate.wipe(state.directory)
                raise
            finally:
                await session.close()

    @property
    def account_id(self) -> str:
        return self.session.state.account.account_id

    @property
    def device_id(self) -> str:
        return self.session.state.device_id

    async def _request(self, op: str, **fields: Any) -> dict[str, Any]:
        if len(json.dumps(fields)) > MAX_FRAME:
            raise ClientError("this message is too large for one request to all devices; send it as a file")
        return await self.session.connection.request(op, **fields)

    async def publish_keys(self) -> int:
        """Upload the key bundle (once) and top one-time keys up to the target; returns how many left."""
        store, state = self.store, self.session.state
        fallback = None
        if store.bundle is None:
            keys = store.olm.device_keys(self.account_id, self.device_id, self.session.clock.now_ms())
            store.bundle = keys.seal(state.device_key()).to_json()
            fallback = store.olm.new_fallback_key().to_json()
            store.save()
        result = await self._request("keys.upload", bundle=store.bundle, fallback_key=fallback)
        left = int(result["one_time_keys_left"])
        if left < ONE_TIME_KEYS_TARGET // 2:
            fresh = store.olm.new_one_time_keys(ONE_TIME_KEYS_TARGET - left)
            store.save()  # private halves on disk before the public halves are out
            result = await self._request(
                "keys.upload", bundle=store.bundle, one_time_keys=[k.to_json() for k in fresh]
            )
            left = int(result["one_time_keys_left"])
        return left

    # --- contacts ---------------------------------------------------------------------------------
    async def contact(
        self, *, handle: str | None = None, account_id: str | None = None, refresh: bool = False
    ) -> Contact:
        """An account's verified devices and keys (cached for this session unless ``refresh``)."""
        if handle is not None:
            handle = handle.removeprefix("@").lower()
            account_id = account_id or self.store.handles.get(handle)
        if account_id is not None and not refresh and account_id in self._contacts:
            return self._contacts[account_id]
        query = {"handle": handle} if account_id is None else {"account_id": account_id}
        try:
            result = await self._request("accounts.lookup", **query)
        except ServerRefused as error:
            if error.code == ErrorCode.ACCOUNT_UNKNOWN:
                raise ClientError(
                    f"no account {'@' + handle if handle else account_id} on this server"
                ) from error
            raise
        return self._verify_contact(
            result, handle=handle if account_id is None else None, account_id=account_id
        )

    def _verify_contact(
        self, result: dict[str, Any], *, handle: str | None = None, account_id: str | None = None
    ) -> Contact:
        store = self.store
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
        if info.account_id == self.account_id and info.account_key != self.session.state.account.account_key:
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
        if info.account_id == self.account_id:
            self.session.accept_device_list(envelope)  # may raise DeviceUnlinked
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
        self._contacts[info.account_id] = contact
        return contact

    def handle_of(self, account_id: str) -> str | None:
        handle = self.store.contacts.get(account_id, {}).get("handle")
        return str(handle) if handle else None

    # --- sending ----------------------------------------------------------------------------------
    def _envelope(
        self, kind: Kind, conversation: str, body: dict[str, Any], message_id: str
    ) -> MessageEnvelope:
        # The server never brings back what this device sent: a copy under this id is dropped unopened.
        self.store.seen.add(message_id)
        return MessageEnvelope(
            kind, message_id, conversation, self.account_id, self.device_id, self.session.clock.now_ms(), body
        )

    async def _olm_payloads(self, targets: list[DeviceKeys], plaintext: bytes) -> list[dict[str, Any]]:
        olm = self.store.olm
        missing = [k for k in targets if not olm.has_session(k.identity_key)]
        one_time: dict[str, bytes] = {}
        if missing:
            claimed = (await self._request("keys.claim", device_ids=[k.device_id for k in missing]))[
                "devices"
            ]
            for keys in missing:
                entry = claimed.get(keys.device_id) or {}
                if entry.get("one_time_key") is None:
                    raise ClientError(f"device {keys.device_id} has no one-time keys left; try again later")
                key = OneTimeKey.from_json(entry["one_time_key"])
                key.verify(keys.signing_key)
                one_time[keys.device_id] = key.key
        payloads = []
        for keys in targets:
            ciphertext = olm.encrypt(keys.identity_key, plaintext, one_time.get(keys.device_id))
            payloads.append(
                {
                    "device_id": keys.device_id,
                    "type": "olm",
                    "olm_type": int(ciphertext.type),
                    "sender_key": b64u_encode(olm.identity_key),
                    "ciphertext": b64u_encode(ciphertext.body),
                }
            )
        return payloads

    async def send_direct(
        self, handle: str, kind: Kind, body: dict[str, Any], *, message_id: str | None = None
    ) -> Sent:
        """Encrypt for every device of ``handle`` and every other device of ours, and send."""
        peer = await self.contact(handle=handle)
        return await self._send_to_contact(peer, kind, body, message_id or new_message_id())

    async def _send_to_contact(
        self, peer: Contact, kind: Kind, body: dict[str, Any], message_id: str
    ) -> Sent:
        conversation = direct_conversation(self.account_id, peer.account.account_id)
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                peer = await self.contact(account_id=peer.account.account_id, refresh=True)
            me = await self.contact(account_id=self.account_id, refresh=attempt > 0)
            envelope = self._envelope(kind, conversation, body, message_id)
            if not peer.keys:
                raise ClientError(f"@{peer.account.handle} has no device that can receive messages yet")
            targets = {
                k.device_id: k for c in (peer, me) for k in c.keys.values() if k.device_id != self.device_id
            }
            payloads = await self._olm_payloads(list(targets.values()), envelope.encode())
            try:
                result = await self._request(
                    "messages.send",
                    message_id=message_id,
                    to=peer.account.account_id,
                    payloads=payloads,
                    # so that a receipt does not make the peer a known contact (SECURITY.md)
                    **({"receipt": True} if kind is Kind.RECEIPT else {}),
                )
                self._record_sent(envelope, [peer.account.account_id])
            except ServerRefused as error:
                if error.code == ErrorCode.DEVICES_CHANGED and attempt + 1 < SEND_ATTEMPTS:
                    continue
                raise
            finally:
                self.store.save()  # the ratchets moved, whatever happened to the request
            own = sum(1 for k in targets.values() if k.account_id == self.account_id)
            return Sent(message_id, conversation, len(payloads), int(result["server_time"]), own)
        raise AssertionError("unreachable")

    async def send_group(
        self, group_id: str, kind: Kind, body: dict[str, Any], *, message_id: str | None = None
    ) -> Sent:
        """Share the group session key with devices that lack it (rotating first if a device left),
        then send one Megolm ciphertext that the server copies to every member device."""
        message_id = message_id or new_message_id()
        conversation = group_conversation(group_id)
        groups = self.store.groups
        for attempt in range(SEND_ATTEMPTS):
            group = await self._request("groups.get", group_id=group_id)
            members = [m["account_id"] for m in group["members"]]
            contacts = []
            for account_id in members:
                contact = await self.contact(account_id=account_id, refresh=attempt > 0)
                if set(contact.keys) != set(group["devices"].get(account_id, [])):
                    contact = await self.contact(account_id=account_id, refresh=True)
                contacts.append(contact)
            targets = {
                k.device_id: k for c in contacts for k in c.keys.values() if k.device_id != self.device_id
            }
            share = groups.prepare(group_id, set(targets))
            try:
                if share.devices:
                    key_message = self._envelope(Kind.GROUP_KEY, conversation, share.body, new_message_id())
                    payloads = await self._olm_payloads(
                        [targets[d] for d in sorted(share.devices)], key_message.encode()
                    )
                    await self._request(
                        "messages.send",
                        message_id=key_message.message_id,
                        group_id=group_id,
                        payloads=payloads,
                    )
                    groups.mark_shared(group_id, share.devices)
                envelope = self._envelope(kind, conversation, body, message_id)
                ciphertext = groups.encrypt(group_id, envelope.encode())
                result = await self._request(
                    "messages.send",
                    message_id=message_id,
                    group_id=group_id,
                    megolm={"session_id": groups.session_id(group_id), "ciphertext": b64u_encode(ciphertext)},
                )
                self._record_sent(envelope, [m for m in members if m != self.account_id])
            except ServerRefused as error:
                if error.code == ErrorCode.DEVICES_CHANGED and attempt + 1 < SEND_ATTEMPTS:
                    continue
                raise
            finally:
                self.store.save()
            own = sum(1 for k in targets.values() if k.account_id == self.account_id)
            return Sent(message_id, conversation, int(result["devices"]), int(result["server_time"]), own)
        raise AssertionError("unreachable")

    def _record_sent(self, envelope: MessageEnvelope, recipients: list[str]) -> None:
        if envelope.kind not in (Kind.TEXT, Kind.MEDIA):
            return
        self.store.sent[envelope.message_id] = {
            "conversation": envelope.conversation,
            "status": "sent",
            "recipients": recipients,
            "by": {},
        }
        self.store.remember(self._history_record(envelope))

    @staticmethod
    def _history_record(envelope: MessageEnvelope) -> dict[str, Any]:
        return {
            "id": envelope.message_id,
            "kind": envelope.kind.value,
            "conversation": envelope.conversation,
            "sender": {"account_id": envelope.sender_account, "device_id": envelope.sender_device},
            "ts": envelope.timestamp,
            "body": envelope.body,
        }

    async def send(
        self,
        to: str,
        text: str | None = None,
        *,
        file: Path | None = None,
        progress: Progress = lambda done, total: None,
    ) -> Sent:
        """Text and/or a file to a handle (``@bob``/``bob``) or a group (``#name``, a group name or id)."""
        if file is not None:
            body: dict[str, Any] = {"media": await self.upload(file, progress)}
            if text:
                body["caption"] = text
            kind = Kind.MEDIA
        elif text:
            body, kind = {"text": text}, Kind.TEXT
        else:
            raise ClientError("nothing to send: give a text or --file")
        group_id = await self.resolve_group(to, required=False)
        if group_id is not None:
            return await self.send_group(group_id, kind, body)
        return await self.send_direct(to, kind, body)

    async def upload(self, path: Path, progress: Progress = lambda done, total: None) -> dict[str, Any]:
        if not path.is_file():
            raise ClientError(f"no such file: {path}")
        token = await self._request("media.token")
        size = path.stat().st_size
        if mediahttp.encrypted_size(size) > int(token["max_bytes"]):
            raise ClientError(
                f"{path.name} is too large: this server accepts up to {human_size(int(token['max_bytes']))}"
            )
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        kind = kind_for_mimetype(mimetype)
        media_key = new_media_key()
        media_id, digest = await mediahttp.upload(
            self.session.state.server_url, token["token"], path, kind, media_key, progress, self.ca_file
        )
        return {
            "media_id": media_id,
            "type": kind.value,
            "mimetype": mimetype,
            "name": _safe_name(path.name),
            "media_key": b64u_encode(media_key),
            "file_sha256": b64u_encode(digest.file_sha256),
            "file_enc_sha256": b64u_encode(digest.file_enc_sha256),
            "file_length": digest.file_length,
            "enc_length": digest.enc_length,
        }

    async def download(
        self,
        media: dict[str, Any],
        progress: Progress = lambda done, total: None,
        *,
        folder: Path | None = None,
    ) -> Path:
        """Fetch, check and decrypt a media message's blob into ``folder`` (default: the state
        folder's downloads/)."""
        try:
            kind = MediaKind(media["type"])
            key = b64u_decode(media["media_key"], length=32)
            digest = MediaDigest(
                b64u_decode(media["file_sha256"], length=32),
                b64u_decode(media["file_enc_sha256"], length=32),
                int(media["file_length"]),
                int(media["enc_length"]),
            )
            media_id = str(media["media_id"])
        except (KeyError, ValueError, TypeError, LinkError) as error:
            raise MediaError("a media message without a usable key or hashes") from error
        downloads = folder or self.session.state.directory / "downloads"
        downloads.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = _safe_name(str(media.get("name", "file")))
        target = downloads / name
        counter = 1
        while target.exists():
            target = downloads / f"{Path(name).stem}-{counter}{Path(name).suffix}"
            counter += 1
        token = await self._request("media.token")
        await mediahttp.download(
            self.session.state.server_url,
            token["token"],
            media_id,
            kind,
            key,
            digest,
            target,
            progress,
            self.ca_file,
        )
        return target

    # --- groups -----------------------------------------------------------------------------------
    async def resolve_group(self, name: str, *, required: bool = True) -> str | None:
        """A group by ``#name``, exact name or id; with ``required=False`` a plain handle gives None."""
        if name.startswith("@"):
            return None
        wanted = name.removeprefix("#")
        names = self.store.group_names
        matches = [g for g, n in names.items() if wanted in (g, n)]
        if not matches and (required or name.startswith("#")):
            listed = await self._request("groups.list")
            matches = [g["group_id"] for g in listed["groups"] if g["group_id"] == wanted]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ClientError(f"several groups are called {wanted!r}; use the group id")
        if required or name.startswith("#"):
            raise ClientError(f"no group {wanted!r} among yours")
        return None

    async def create_group(self, name: str, handles: list[str]) -> str:
        members = [await self.contact(handle=h) for h in handles]
        result = await self._request("groups.create", members=[c.account.account_id for c in members])
        group_id = str(result["group_id"])
        self.store.group_names[group_id] = name
        self.store.save()
        await self.send_group(group_id, Kind.GROUP_INFO, {"group_id": group_id, "name": name})
        return group_id

    async def add_member(self, group: str, handle: str) -> str:
        group_id = await self.resolve_group(group)
        assert group_id is not None
        contact = await self.contact(handle=handle)
        await self._request("groups.add", group_id=group_id, account_id=contact.account.account_id)
        name = self.store.group_names.get(group_id, group_id)
        await self.send_group(group_id, Kind.GROUP_INFO, {"group_id": group_id, "name": name})
        return group_id

    async def remove_member(self, group: str, handle: str) -> str:
        group_id = await self.resolve_group(group)
        assert group_id is not None
        contact = await self.contact(handle=handle)
        await self._request("groups.remove", group_id=group_id, account_id=contact.account.account_id)
        self.store.groups.forget_outbound(group_id)  # rotate now, whatever the next send sees
        self.store.save()
        return group_id

    # --- receiving --------------------------------------------------------------------------------
    async def receive(
        self,
        wait: float = 0.0,
        *,
        receipts: bool = True,
        until: Callable[[list[Received]], bool] | None = None,
        settle: float = 0.3,
    ) -> list[Received]:
        """Everything queued for this device, then live messages for up to ``wait`` seconds; in
        order, exactly once. With ``until``, stop early once ``until(received)`` holds and nothing more
        arrived for ``settle`` seconds.

        Each batch is saved before it is acknowledged, together with its messages as unreported; they
        are returned (first) by the next call that completes, so a connection lost after a save never
        hides them. Text and media from others get a ``delivered`` receipt unless ``receipts`` is False.
        """
        try:
            return await self._receive(wait, receipts, until, settle)
        except ConnectionLost:
            await self._unlinked_while_away()
            raise

    async def _unlinked_while_away(self) -> None:
        """After the socket closed: if the server said why (``device.unlinked``), forget everything."""
        with contextlib.suppress(ConnectionLost, TimeoutError):
            while True:
                event = await self.session.connection.next_event(timeout=0.1)
                if event.get("event") == "device.unlinked":
                    self.session.state.wipe()
                    e2estate.wipe(self.session.state.directory)
                    raise DeviceUnlinked("this device was unlinked from its account; its keys are wiped")

    async def _receive(
        self,
        wait: float,
        receipts: bool,
        until: Callable[[list[Received]], bool] | None,
        settle: float,
    ) -> list[Received]:
        await self._fetch_all()
        try:
            await self.sync_history()
        except ConnectionLost:
            raise
        except (ClientError, E2EError) as error:  # never a reason not to show what arrived
            log.warning("history for a new companion not sent this time: %s", error)
        loop_time = asyncio.get_running_loop().time
        deadline = loop_time() + wait
        while (remaining := deadline - loop_time()) > 0:
            if until is not None and until(self._unreported):
                remaining = min(remaining, settle)
            try:
                event = await self.session.connection.next_event(timeout=remaining)
            except TimeoutError:
                if until is None or until(self._unreported):
                    break
                continue
            await self.handle_events([event, *self.session.connection.drain_events()])
        if receipts:
            await self.send_receipts(self._unreported, ReceiptStatus.DELIVERED)
        return self.take_unreported()

    def take_unreported(self) -> list[Received]:
        """Hand over, once, every message handled (saved, maybe acknowledged) and not handed over yet;
        including those of an earlier session whose connection dropped before they could be."""
        taken, self._unreported = self._unreported, []
        if taken:
            self.store.unreported.clear()
            self.store.save()
        return taken

    async def handle_events(self, events: list[dict[str, Any]]) -> None:
        """Handle pushed events; the ``message`` events among them as one batch (one save, one ack)
        as far as their sequence numbers follow on from ``last_seq``; a gap makes it fetch in order.
        The messages wait for :meth:`take_unreported` (or the next :meth:`receive`)."""
        messages = sorted((e for e in events if e.get("event") == "message"), key=lambda e: int(e["seq"]))
        for event in events:
            if event.get("event") != "message":
                await self._on_event(event)
        expected, batch = self.store.last_seq + 1, []
        for event in messages:
            seq = int(event["seq"])
            if seq < expected:
                continue
            if seq > expected:
                break
            batch.append(event)
            expected += 1
        await self._handle_batch(batch)
        if messages and int(messages[-1]["seq"]) > self.store.last_seq:
            await self._fetch_all()  # a gap: the server has what is missing, in order

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "message":
            await self.handle_events([event])
        elif kind == "devices.changed":
            try:
                self.session.accept_device_list(Envelope.from_json(event["device_list"]))
            except StateError as error:
                if isinstance(error, DeviceUnlinked):
                    raise
                log.warning("ignored a device list: %s", error)
            self._contacts.pop(self.account_id, None)
        elif kind == "device.unlinked":
            self.session.state.wipe()
            e2estate.wipe(self.session.state.directory)
            raise DeviceUnlinked("this device was unlinked from its account; its keys are wiped")
        elif kind == "keys.low":
            await self.publish_keys()
        elif kind == "groups.changed":
            change = event.get("change", {})
            if change.get("kind") == "removed" and change.get("account_id") == self.account_id:
                self.store.groups.forget_outbound(str(event["group_id"]))
                self.store.save()

    async def _fetch_all(self) -> None:
        after = 0  # from the start of what the server holds: it also re-offers what was never acked
        while True:
            result = await self._request("messages.fetch", after=after, limit=FETCH_LIMIT)
            await self._handle_batch(result["messages"])
            if not result["more"]:
                return
            after = max(int(m["seq"]) for m in result["messages"])

    async def _handle_batch(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        for item in sorted(items, key=lambda i: int(i["seq"])):
            seq = int(item["seq"])
            if seq <= self.store.last_seq:
                continue  # handled before a crash or a lost acknowledgement
            message_id = item.get("message_id")
            if isinstance(message_id, str) and message_id not in self.store.seen:
                try:
                    message = await self._open(item)
                except (KeyError, TypeError, ValueError) as error:  # a malformed item from the server
                    log.warning("dropped a malformed queued message: %s", type(error).__name__)
                    message = None
                self.store.seen.add(message_id)
                if message is not None:
                    self._unreported.append(message)
                    self.store.unreported.append(message.to_record())
            self.store.last_seq = seq
        # Ratchets, and what to show, on disk before the server forgets the ciphertext: if the ack is
        # lost, the re-delivery is a duplicate by then, and only this saved copy can still be shown.
        self.store.save()
        await self._request("messages.ack", up_to=self.store.last_seq)

    async def _sender_key_ok(self, account_id: str, device_id: str, sender_key: bytes) -> FormerDevice | None:
        """Check an Olm sender key against the account's signed list; a device unlinked since comes back
        as a :class:`FormerDevice`, whose caller checks the message was sent before the unlink (§3.1)."""
        contact = await self.contact(account_id=account_id)
        keys = contact.keys.get(device_id)
        if keys is None or keys.identity_key != sender_key:
            contact = await self.contact(account_id=account_id, refresh=True)
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
        result = await self._request(
            "accounts.lookup", account_id=contact.account.account_id, former_device=device_id
        )
        if result.get("former_device") is None:
            return None
        return FormerDevice.verify(
            result["former_device"], contact.account.account_key, device_id, contact.devices.version
        )

    async def _open(self, item: dict[str, Any]) -> Received | None:
        sender = item["sender"]
        sender_account, sender_device = str(sender["account_id"]), str(sender["device_id"])
        group_id = item.get("group_id")
        message = Received(
            int(item["seq"]),
            str(item["message_id"]),
            Kind.UNDECRYPTABLE,
            sender_account,
            sender_device,
            self.handle_of(sender_account),
            int(item["server_time"]),
            group_id,
        )
        payload = item["payload"]
        try:
            sender_key, former = b"", None
            if payload.get("type") == "olm":
                sender_key = b64u_decode(payload["sender_key"], length=32)
                former = await self._sender_key_ok(sender_account, sender_device, sender_key)
                ciphertext = OlmCiphertext(OlmType(payload["olm_type"]), b64u_decode(payload["ciphertext"]))
                plaintext = self.store.olm.decrypt(sender_key, ciphertext)
            elif payload.get("type") == "megolm" and group_id is not None:
                opened = self.store.groups.decrypt(
                    sender_device, str(payload["session_id"]), b64u_decode(payload["ciphertext"])
                )
                if opened.group_id != group_id:
                    raise EnvelopeError("a group message under another group's key")
                plaintext = opened.plaintext
            else:
                raise EnvelopeError("an unknown payload type")
            envelope = MessageEnvelope.decode(plaintext)
            envelope.check_routing(message.message_id, sender_account, sender_device)
            if former is not None and not former.sent_while_listed(message.server_time, envelope.timestamp):
                raise KeyBundleError("this message was sent after its device was unlinked")
            self._check_conversation(envelope, group_id)
            message.sender_handle = self.handle_of(sender_account)
            message.kind, message.conversation = envelope.kind, envelope.conversation
            message.timestamp, message.body = envelope.timestamp, envelope.body
            return await self._act(envelope, message, payload, sender_key)
        except (E2EError, LinkError, KeyError, ValueError, TypeError) as error:
            message.kind, message.error = Kind.UNDECRYPTABLE, str(error) or type(error).__name__
            message.body = {}  # nothing of a refused message is shown
            log.info("message %s could not be read: %s", message.message_id, type(error).__name__)
            return message

    def _check_conversation(self, envelope: MessageEnvelope, group_id: str | None) -> None:
        if group_id is not None:
            if envelope.conversation != group_conversation(group_id):
                raise EnvelopeError("a group message that names another conversation")
            return
        parts = envelope.conversation.split(":")
        if parts[0] != "direct" or len(parts) != 3 or self.account_id not in parts[1:]:
            raise EnvelopeError("a direct message for a conversation this account is not in")
        if envelope.sender_account not in parts[1:]:
            raise EnvelopeError("a direct message from outside its conversation")

    async def _act(
        self, envelope: MessageEnvelope, message: Received, payload: dict[str, Any], sender_key: bytes
    ) -> Received | None:
        store = self.store
        if envelope.kind is Kind.GROUP_KEY:
            if payload.get("type") != "olm":
                raise EnvelopeError("group keys travel only over Olm")
            if message.group_id is None or envelope.body.get("group_id") != message.group_id:
                raise EnvelopeError("a group key for another group than the one it was routed through")
            store.groups.add_inbound(envelope.sender_device, b64u_encode(sender_key), envelope.body)
        elif envelope.kind is Kind.GROUP_INFO:
            name = envelope.body.get("name")
            if (
                isinstance(name, str)
                and message.group_id
                and envelope.body.get("group_id") == message.group_id
            ):
                store.group_names[message.group_id] = name[:100]
        elif envelope.kind is Kind.RECEIPT:
            if envelope.sender_account != self.account_id:
                for message_id in envelope.body["message_ids"][:1000]:
                    store.note_status(str(message_id), envelope.sender_account, str(envelope.body["status"]))
        elif envelope.kind is Kind.HISTORY:
            await self._import_history(envelope, message)
        elif envelope.kind in (Kind.TEXT, Kind.MEDIA):
            if store.has_message(envelope.message_id):  # ids name one message for good: never replaced
                raise EnvelopeError("a message id that is already used")
            store.remember(self._history_record(envelope))
            if envelope.kind is Kind.MEDIA and self.auto_download:
                try:
                    message.file = await self.download(envelope.body["media"])
                except (E2EError, ClientError) as error:
                    message.error = f"media rejected: {error}"
        return message

    # --- history sync -------------------------------------------------------------------------------
    async def sync_history(self) -> list[str]:
        """Primary only: send every companion that can receive and has not had one a history bundle.

        The bundle (the last :data:`HISTORY_DAYS` days, at most :data:`HISTORY_MAX` messages) is
        encrypted and uploaded like a file; its key goes to that one companion over Olm, with a note of
        what was not transferred. Returns the companions served.
        """
        if self.session.state.role is not Role.PRIMARY:
            return []
        me = await self.contact(account_id=self.account_id, refresh=True)
        served = []
        for device_id, keys in sorted(me.keys.items()):
            if device_id == self.device_id or device_id in self.store.history_sent_to:
                continue
            await self._send_history(keys)
            self.store.history_sent_to.append(device_id)
            self.store.save()
            served.append(device_id)
        return served

    async def _send_history(self, keys: DeviceKeys) -> None:
        now = self.session.clock.now_ms()
        cutoff = now - HISTORY_DAYS * 86_400_000
        recent = [r for r in self.store.history if int(r.get("ts") or 0) >= cutoff]
        older = len(self.store.history) - len(recent) + self.store.history_dropped
        over_limit = max(0, len(recent) - HISTORY_MAX)
        recent = recent[-HISTORY_MAX:]
        not_transferred = {"older_than_30_days_or_dropped": older, "over_1000_limit": over_limit}
        note = f"{len(recent)} messages from the last {HISTORY_DAYS} days were transferred"
        if older or over_limit:
            note += f"; {older + over_limit} older messages stay only on the phone"
        bundle = {
            "v": 1,
            "type": "history-bundle",
            "generated_at": now,
            "messages": recent,
            "not_transferred": not_transferred,
            # Group names travel only end to end: without them the companion's groups are nameless.
            "groups": [{"group_id": g, "name": n} for g, n in sorted(self.store.group_names.items())],
        }
        staging = self.session.state.directory / ".history-upload.json"
        e2estate.write_private(staging, json.dumps(bundle).encode())
        try:
            media = await self.upload(staging)
        finally:
            staging.unlink(missing_ok=True)
        body = {"media": media, "count": len(recent), "not_transferred": not_transferred, "note": note}
        envelope = self._envelope(
            Kind.HISTORY, direct_conversation(self.account_id, self.account_id), body, new_message_id()
        )
        payloads = await self._olm_payloads([keys], envelope.encode())
        try:
            await self._request(
                "messages.send", message_id=envelope.message_id, to=self.account_id, payloads=payloads
            )
        finally:
            self.store.save()

    async def _import_history(self, envelope: MessageEnvelope, message: Received) -> None:
        entry = self.session.state.devices.find(envelope.sender_device)
        if envelope.sender_account != self.account_id or entry is None or entry.role is not Role.PRIMARY:
            raise EnvelopeError("history comes only from this account's primary")
        staging = self.session.state.directory / ".history"
        path = await self.download(envelope.body["media"], folder=staging)
        try:
            bundle = json.loads(path.read_bytes())
        finally:
            path.unlink(missing_ok=True)
        records = bundle.get("messages") if isinstance(bundle, dict) else None
        if not isinstance(records, list):
            raise EnvelopeError("a history bundle without messages")
        added = self.store.merge_history(records)
        self._import_group_names(bundle.get("groups"))
        note = str(envelope.body.get("note", ""))[:500]
        self.store.history_note = note
        message.body = {"count": added, "note": note, "not_transferred": envelope.body.get("not_transferred")}

    def _import_group_names(self, groups: object) -> None:
        """Names of the primary's groups from a history bundle; a name this device learnt itself (a
        ``group-info`` it received) is newer and stays."""
        for group in groups[:HISTORY_MAX] if isinstance(groups, list) else []:
            group_id, name = (
                (group.get("group_id"), group.get("name")) if isinstance(group, dict) else (None, None)
            )
            if isinstance(group_id, str) and len(group_id) <= 64 and isinstance(name, str) and name:
                self.store.group_names.setdefault(group_id, name[:100])

    async def send_receipts(self, messages: list[Received], status: ReceiptStatus) -> None:
        """One receipt per sender account for the text and media messages of other accounts."""
        by_sender: dict[str, list[str]] = {}
        for message in messages:
            if message.kind in (Kind.TEXT, Kind.MEDIA) and message.sender_account != self.account_id:
                by_sender.setdefault(message.sender_account, []).append(message.message_id)
        for account_id, ids in by_sender.items():
            try:
                peer = await self.contact(account_id=account_id)
                await self._send_to_contact(
                    peer, Kind.RECEIPT, {"status": status.value, "message_ids": ids}, new_message_id()
                )
            except (ClientError, E2EError) as error:
                log.warning("a %s receipt could not be sent: %s", status.value, error)

    def status(self, message_id: str) -> str | None:
        entry = self.store.sent.get(message_id)
        return None if entry is None else str(entry["status"])
