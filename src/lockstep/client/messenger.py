"""End-to-end messaging for a linked device, primary or companion (docs/protocol/messaging.md).

A :class:`Messenger` wraps an authenticated :class:`DeviceSession` and the device's E2E state, and is a
thin facade over the parts in :mod:`lockstep.client.messaging`: it publishes this device's keys
(:mod:`~.messaging.keys`), finds contacts and verifies their keys against their primary-signed device
lists (:mod:`~.messaging.contacts`), fans every message out (:mod:`~.messaging.outbox`), receives in
queue order exactly once and answers with delivery receipts (:mod:`~.messaging.inbox`), serves and
imports a new companion's history (:mod:`~.messaging.history`), manages groups
(:mod:`~.messaging.groups`) and moves media through the server encrypted (:mod:`~.messaging.media`).
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from lockstep.client import e2estate
from lockstep.client.e2estate import E2EStore
from lockstep.client.errors import ClientError, ServerRefused
from lockstep.client.messaging.actions import MessageActions
from lockstep.client.messaging.contacts import Contacts
from lockstep.client.messaging.device import Device
from lockstep.client.messaging.groups import Groups
from lockstep.client.messaging.history import History
from lockstep.client.messaging.inbox import Inbox
from lockstep.client.messaging.keys import publish_keys
from lockstep.client.messaging.media import MediaTransfer
from lockstep.client.messaging.outbox import Outbox
from lockstep.client.messaging.records import (
    Contact,
    Progress,
    Received,
    Sent,
    new_message_id,
    no_progress,
)
from lockstep.client.session import DeviceSession, DeviceUnlinked
from lockstep.client.state import DeviceState
from lockstep.e2e.actions import Signal, Typing
from lockstep.e2e.envelope import Kind, ReceiptStatus, direct_conversation, group_conversation
from lockstep.e2e.timeline import Shown
from lockstep.e2e.voice import describe_audio
from lockstep.server.errors import ErrorCode

VOICE_READ_LIMIT = 64 * 1024 * 1024
"""How much of an audio file is read to find its length and waveform (a voice note is far smaller)."""

__all__ = ["Contact", "Kind", "Messenger", "Received", "Sent", "new_message_id"]

log = logging.getLogger(__name__)


class Messenger:
    def __init__(self, session: DeviceSession, store: E2EStore, ca_file: str | None = None) -> None:
        self.device = Device(session, store, ca_file)
        self.contacts = Contacts(self.device)
        self.media = MediaTransfer(self.device)
        self.outbox = Outbox(self.device, self.contacts)
        self.history = History(self.device, self.contacts, self.outbox, self.media)
        self.groups = Groups(self.device, self.contacts, self.outbox)
        self.inbox = Inbox(self.device, self.contacts, self.outbox, self.history, self.media)
        self.actions = MessageActions(self.device, self.contacts, self.outbox)

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
            store: E2EStore | None = None
            try:
                store = E2EStore.load_or_create(state.directory)
                messenger = cls(session, store, ca_file)
                try:
                    await messenger.publish_keys()
                except ServerRefused as error:
                    if error.code not in (ErrorCode.STORAGE_FULL, ErrorCode.UNAVAILABLE):
                        raise
                    log.warning("keys not published, receiving anyway: %s", error)  # a full server disk
                await messenger.outbox.resend_in_flight()  # what a killed run sent, before anything new
                yield messenger
            except DeviceUnlinked:
                if store is not None:
                    store.close()
                e2estate.wipe(state.directory)
                raise
            finally:
                if store is not None:
                    store.close()
                await session.close()

    # --- this device -------------------------------------------------------------------------------
    @property
    def session(self) -> DeviceSession:
        return self.device.session

    @property
    def store(self) -> E2EStore:
        return self.device.store

    @property
    def account_id(self) -> str:
        return self.device.account_id

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def auto_download(self) -> bool:
        """Whether received media is fetched and decrypted at once (into the state's downloads/)."""
        return self.inbox.auto_download

    @auto_download.setter
    def auto_download(self, value: bool) -> None:
        self.inbox.auto_download = value

    async def publish_keys(self) -> int:
        return await publish_keys(self.device)

    # --- contacts ---------------------------------------------------------------------------------
    async def contact(
        self, *, handle: str | None = None, account_id: str | None = None, refresh: bool = False
    ) -> Contact:
        return await self.contacts.get(handle=handle, account_id=account_id, refresh=refresh)

    def handle_of(self, account_id: str) -> str | None:
        return self.contacts.handle_of(account_id)

    # --- sending ----------------------------------------------------------------------------------
    async def send(
        self,
        to: str | None,
        text: str | None = None,
        *,
        file: Path | None = None,
        progress: Progress = no_progress,
        reply_to: str | None = None,
        voice: bool = False,
    ) -> Sent:
        """Text and/or a file to a handle (``@bob``/``bob``) or a group (``#name``, a group name or id);
        with ``reply_to`` (a message id or its first characters), as a reply in that message's
        conversation (``to`` may then be None). With ``voice``, ``file`` is an audio file sent as a voice
        note (messaging.md §16)."""
        quoted = self.actions.find(reply_to) if reply_to is not None else None
        if voice:
            if file is None:
                raise ClientError("a voice note needs an audio file")
            body: dict[str, Any] = await self._voice_note(file, progress)
            kind = Kind.MEDIA
        elif file is not None:
            body = {"media": await self.media.upload(file, progress)}
            if text:
                body["caption"] = text
            kind = Kind.MEDIA
        elif text:
            body, kind = {"text": text}, Kind.TEXT
        else:
            raise ClientError("nothing to send: give a text or --file")
        if quoted is not None:
            body["reply_to"] = quoted.message_id
            if to is not None and await self._conversation_of(to) != quoted.conversation:
                raise ClientError("the message replied to is in another conversation than --to names")
            return await self.actions.send_into(quoted.conversation, kind, body)
        if to is None:
            raise ClientError("say whom to send to (--to), or which message this replies to")
        group_id = await self.groups.resolve(to, required=False)
        if group_id is not None:
            return await self.outbox.send_group(group_id, kind, body)
        return await self.outbox.send_direct(to, kind, body)

    async def _voice_note(self, file: Path, progress: Progress) -> dict[str, Any]:
        mimetype = mimetypes.guess_type(file.name)[0] or ""
        if not mimetype.startswith("audio/"):
            raise ClientError(f"{file.name} is not an audio file (Ogg Opus, WAV, MP3, M4A ...)")
        try:
            with file.open("rb") as audio:
                described = describe_audio(audio.read(VOICE_READ_LIMIT))
        except OSError as error:
            raise ClientError(f"cannot read {file}: {error.strerror}") from error
        media = await self.media.upload(file, progress, mimetype=mimetype)
        return {"media": media, "voice": described.to_json()}

    async def _conversation_of(self, to: str) -> str:
        group_id = await self.groups.resolve(to, required=False)
        if group_id is not None:
            return group_conversation(group_id)
        peer = await self.contacts.get(handle=to)
        return direct_conversation(self.account_id, peer.account.account_id)

    # --- reactions, edits, deletes, search (messaging.md §15) ---------------------------------------
    async def react(self, message_id: str, emoji: str) -> Sent:
        return await self.actions.react(message_id, emoji)

    async def edit(self, message_id: str, text: str) -> Sent:
        return await self.actions.edit(message_id, text)

    async def delete(self, message_id: str) -> Sent:
        return await self.actions.delete(message_id)

    def search(self, query: str, limit: int = 50) -> list[Shown]:
        return self.actions.search(query, limit)

    def shown(self, message_id: str) -> Shown | None:
        """A text or media message as it is shown now (edits, deletion, reactions applied)."""
        return self.store.timeline().shown(message_id)

    # --- typing and presence (messaging.md §15.5): shown for a moment, never kept ---------------------
    async def send_signal(self, to: str, signal: Signal) -> Sent:
        """``composing``/``paused`` to a handle or a group, or ``online``/``offline`` to a handle
        (presence is direct only). Nothing is kept of it, here or on any receiver."""
        kind = Kind.TYPING if isinstance(signal, Typing) else Kind.PRESENCE
        body = {"state": signal.state.value}
        group_id = await self.groups.resolve(to, required=False)
        if group_id is None:
            return await self.outbox.send_direct(to, kind, body)
        if kind is Kind.PRESENCE:
            raise ClientError("presence goes to a person, not to a group (messaging.md §15.5)")
        return await self.outbox.send_group(group_id, kind, body)

    async def send_direct(
        self, handle: str, kind: Kind, body: dict[str, Any], *, message_id: str | None = None
    ) -> Sent:
        return await self.outbox.send_direct(handle, kind, body, message_id=message_id)

    async def send_group(
        self, group_id: str, kind: Kind, body: dict[str, Any], *, message_id: str | None = None
    ) -> Sent:
        return await self.outbox.send_group(group_id, kind, body, message_id=message_id)

    async def send_receipts(self, messages: list[Received], status: ReceiptStatus) -> None:
        await self.outbox.send_receipts(messages, status)

    def status(self, message_id: str) -> str | None:
        entry = self.store.sent.get(message_id)
        return None if entry is None else str(entry["status"])

    # --- media ------------------------------------------------------------------------------------
    async def upload(self, path: Path, progress: Progress = no_progress) -> dict[str, Any]:
        return await self.media.upload(path, progress)

    async def download(
        self, media: dict[str, Any], progress: Progress = no_progress, *, folder: Path | None = None
    ) -> Path:
        return await self.media.download(media, progress, folder=folder)

    # --- groups -----------------------------------------------------------------------------------
    async def resolve_group(self, name: str, *, required: bool = True) -> str | None:
        return await self.groups.resolve(name, required=required)

    async def create_group(self, name: str, handles: list[str]) -> str:
        return await self.groups.create(name, handles)

    async def add_member(self, group: str, handle: str) -> str:
        return await self.groups.add_member(group, handle)

    async def remove_member(self, group: str, handle: str) -> str:
        return await self.groups.remove_member(group, handle)

    # --- receiving and history --------------------------------------------------------------------
    async def receive(
        self,
        wait: float = 0.0,
        *,
        receipts: bool = True,
        until: Callable[[list[Received]], bool] | None = None,
        settle: float = 0.3,
    ) -> list[Received]:
        return await self.inbox.receive(wait, receipts=receipts, until=until, settle=settle)

    async def handle_events(self, events: list[dict[str, Any]]) -> None:
        await self.inbox.handle_events(events)

    def take_unreported(self, which: Callable[[Received], bool] = lambda message: True) -> list[Received]:
        return self.inbox.take_unreported(which)

    async def fetch(self) -> None:
        await self.inbox.fetch()

    async def sync_history(self) -> list[str]:
        return await self.history.sync()

    async def request_older_history(self, limit: int = 1000) -> None:
        """Companion: ask the primary for up to ``limit`` messages older than the oldest one here (§12.1)."""
        await self.history.request_older(limit)
