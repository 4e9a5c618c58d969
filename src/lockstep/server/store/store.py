"""The store the server uses: every operation by name, run on whichever backend the URL chose."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from lockstep.link.devices import DeviceList
from lockstep.link.envelope import Envelope
from lockstep.link.grant import AccountInfo
from lockstep.server.store import accounts, groups, keys, media, queues, schema
from lockstep.server.store.backend import StoreBackend, backend_for
from lockstep.server.store.group_commit import GroupCommit
from lockstep.server.store.records import (
    AccountRecord,
    ClaimedKeys,
    Conversation,
    Delivery,
    DeviceListChange,
    DeviceRecord,
    GroupRecord,
    MediaQuota,
    MediaUsage,
    QueuedMessage,
    StrangerLimits,
)
from lockstep.server.store.sql import ROWS_PER_STATEMENT, Work, query_one

T = TypeVar("T")


class Store:
    """Accounts, devices, keys, queues, groups and media index; public material and ciphertext only.

    Writes that must not interleave run as one transaction (``atomic``); the SQL in the operation
    modules says which rows they lock. See docs/ARCHITECTURE.md, "Storage".
    """

    def __init__(self, backend: StoreBackend) -> None:
        self.backend = backend
        self.is_open = False
        self._acks: GroupCommit[queues.Ack, int] = GroupCommit(self._ack_batch)
        self._touches: GroupCommit[tuple[str, int], None] = GroupCommit(
            lambda touches: self._plain(lambda: accounts.touch(touches))
        )

    @classmethod
    def for_url(cls, url: str) -> Store:
        return cls(backend_for(url))

    async def open(self) -> tuple[int, int]:
        """Connect and bring the schema up to date; returns (version before, version after).

        :class:`lockstep.server.store.schema.SchemaTooNew` if the database is newer than this code.
        """
        await self.backend.open()
        now = time.time_ns() // 1_000_000
        try:
            versions = await self._atomic(lambda: schema.migrate(self.backend.postgres, now))
        except BaseException:
            await self.backend.close()
            raise
        self.is_open = True
        return versions

    async def close(self) -> None:
        self.is_open = False
        await self.backend.close()

    async def ping(self) -> None:
        """Raise :class:`lockstep.server.errors.Unavailable` unless the database answers a query."""
        await self._plain(lambda: query_one("SELECT 1"))

    async def _atomic(self, work: Callable[[], Work[T]]) -> T:
        return await self.backend.run(work, atomic=True)

    async def _plain(self, work: Callable[[], Work[T]]) -> T:
        return await self.backend.run(work, atomic=False)

    # --- accounts and devices (store/accounts.py) ----------------------------------------------
    async def create_account(
        self, info: AccountInfo, envelope: Envelope, devices: DeviceList, now: int
    ) -> None:
        await self._atomic(lambda: accounts.create_account(info, envelope, devices, now))

    async def account(self, account_id: str) -> AccountRecord | None:
        return await self._plain(lambda: accounts.account(account_id))

    async def account_by_handle(self, handle: str) -> str | None:
        return await self._plain(lambda: accounts.account_by_handle(handle))

    async def device(self, device_id: str) -> DeviceRecord | None:
        return await self._plain(lambda: accounts.device(device_id))

    async def former_device(self, account_id: str, device_id: str, now: int) -> dict[str, Any] | None:
        return await self._plain(lambda: accounts.former_device(account_id, device_id, now))

    async def devices_of(self, account_ids: list[str], *, with_keys: bool = False) -> dict[str, set[str]]:
        return await self._plain(lambda: accounts.devices_of(account_ids, with_keys))

    async def last_active(self, account_id: str) -> dict[str, int | None]:
        return await self._plain(lambda: accounts.last_active(account_id))

    async def touch(self, device_id: str, now: int) -> None:
        """Note the device active at ``now``; touches that arrive together are one statement (a
        group message's 2,047 acknowledgements each touch their device, every 30 s of activity)."""
        await self._touches.submit((device_id, now))

    async def change_device_list(self, change: DeviceListChange, now: int) -> None:
        await self._atomic(lambda: accounts.change_device_list(change, now))

    # --- end-to-end keys (store/keys.py) --------------------------------------------------------
    async def put_device_keys(
        self,
        device_id: str,
        bundle: dict[str, Any],
        fallback_key: dict[str, Any] | None,
        one_time_keys: list[dict[str, Any]],
        now: int,
    ) -> int:
        return await self._atomic(
            lambda: keys.put_device_keys(device_id, bundle, fallback_key, one_time_keys, now)
        )

    async def device_bundles(self, device_ids: list[str]) -> dict[str, dict[str, Any]]:
        return await self._plain(lambda: keys.device_bundles(device_ids))

    async def claim_keys(
        self, device_ids: list[str], one_time_allowed: Collection[str] | None = None
    ) -> dict[str, ClaimedKeys]:
        return await self._atomic(lambda: keys.claim_keys(device_ids, one_time_allowed))

    async def one_time_keys_left(self, device_id: str) -> int | None:
        return await self._plain(lambda: keys.one_time_keys_left(device_id))

    # --- queues (store/queues.py) ---------------------------------------------------------------
    async def send(
        self,
        conversation: Conversation,
        plan: queues.Plan,
        now: int,
        strangers: StrangerLimits | None = None,
    ) -> tuple[Delivery, list[tuple[str, QueuedMessage]]]:
        """Check a send against the conversation's devices (``plan``) and queue it, in one transaction:
        the delivery ``plan`` made and, in its order, the copies queued (a retry's are not)."""
        return await self._atomic(lambda: queues.send(conversation, plan, now, strangers))

    async def enqueue(
        self, delivery: Delivery, now: int, strangers: StrangerLimits | None = None
    ) -> list[tuple[str, QueuedMessage]]:
        return await self._atomic(lambda: queues.enqueue(delivery, now, strangers))

    async def fetch_messages(self, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
        return await self._plain(lambda: queues.fetch_messages(device_id, after, limit))

    async def newest_queued(self, device_ids: list[str]) -> dict[str, QueuedMessage]:
        return await self._plain(lambda: queues.newest_queued(device_ids))

    async def ack_messages(self, device_id: str, up_to: int) -> int:
        """Delete the device's copies up to ``up_to``; how many there were. Acknowledgements that
        arrive together are deleted together (group_commit.py); each is answered once it is done."""
        return await self._acks.submit((device_id, up_to))

    async def _ack_batch(self, acks: list[queues.Ack]) -> list[int]:
        """One transaction for the whole batch, so a retry counts all of it again; a batch of one
        statement is atomic by itself and saves PostgreSQL's BEGIN and COMMIT round trips."""
        several = len(acks) > ROWS_PER_STATEMENT
        return await self.backend.run(lambda: queues.ack_messages(acks), atomic=several)

    # --- groups (store/groups.py) ---------------------------------------------------------------
    async def create_group(self, group_id: str, creator: str, members: list[str], now: int) -> GroupRecord:
        return await self._atomic(lambda: groups.create_group(group_id, creator, members, now))

    async def group(self, group_id: str) -> GroupRecord | None:
        return await self._plain(lambda: groups.group(group_id))

    async def groups_of(self, account_id: str) -> list[GroupRecord]:
        return await self._plain(lambda: groups.groups_of(account_id))

    async def change_member(
        self, group_id: str, account_id: str, *, add: bool, now: int, by: str | None = None
    ) -> GroupRecord | None:
        return await self._atomic(lambda: groups.change_member(group_id, account_id, add, now, by))

    # --- media index (store/media.py) -----------------------------------------------------------
    async def add_media(
        self,
        media_id: str,
        device_id: str,
        size: int,
        sha256: bytes,
        now: int,
        quota: MediaQuota | None = None,
    ) -> None:
        await self._atomic(lambda: media.add_media(media_id, device_id, size, sha256, now, quota))

    async def media_usage(self, device_id: str, now: int) -> MediaUsage:
        return await self._plain(lambda: media.media_usage(device_id, now))

    async def expire_media(self, created_before: int) -> list[str]:
        return await self._plain(lambda: media.expire_media(created_before))

    async def media_exists(self, media_id: str) -> bool:
        return await self._plain(lambda: media.media_exists(media_id))
