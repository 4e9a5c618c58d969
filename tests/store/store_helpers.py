"""Accounts, devices and stores made directly, for tests of the store below the WebSocket API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import key_id
from lockstep.link.grant import AccountInfo
from lockstep.server.store import DeviceListChange, Store
from lockstep.server.store.sql import Statement, Work, WorkFactory

T = TypeVar("T")


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


class TestAccount:
    """An account key, its primary, and the device list the store holds for it."""

    __test__ = False

    def __init__(self, handle: str) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.info = AccountInfo(key_id(public(self.key)), handle, handle.title(), public(self.key))
        primary = DeviceEntry.new(public(Ed25519PrivateKey.generate()), Role.PRIMARY, "Phone", 1)
        self.devices = DeviceList(self.info.account_id, 1, 1, (primary,))

    @property
    def account_id(self) -> str:
        return self.info.account_id

    @property
    def primary_id(self) -> str:
        return self.devices.primary.device_id

    async def register(self, store: Store) -> None:
        await store.create_account(self.info, self.devices.sign(self.key), self.devices, 1)

    def linking(self, name: str) -> DeviceListChange:
        """The change that links one new companion to the list last stored."""
        entry = DeviceEntry.new(public(Ed25519PrivateKey.generate()), Role.COMPANION, name, 2)
        new_list = self.devices.with_companion(entry, 2)
        return DeviceListChange(self.account_id, self.devices.version, new_list, new_list.sign(self.key))


@contextlib.asynccontextmanager
async def opened(*urls: str) -> AsyncIterator[list[Store]]:
    """One open store per URL: two stores on one URL stand for two server instances."""
    stores = [Store.for_url(url) for url in urls]
    try:
        for store in stores:
            await store.open()
        yield stores
    finally:
        for store in stores:
            if store.is_open:
                await store.close()


class CountingBackend:
    """The store's backend, noting the text of every statement an operation runs."""

    def __init__(self, store: Store) -> None:
        self.inner = store.backend
        self.statements: list[str] = []
        store.backend = self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def run(self, work: WorkFactory[T], *, atomic: bool) -> T:
        def counted() -> Work[T]:
            inner = work()
            try:
                statement: Statement = next(inner)
                while True:
                    self.refuse(statement.text)
                    self.statements.append(statement.text)
                    statement = inner.send((yield statement))
            except StopIteration as done:
                result: T = done.value
                return result

        return await self.inner.run(counted, atomic=atomic)

    def refuse(self, text: str) -> None:
        """Raise to fail the statement before the database runs it (this one never does)."""


class RefusingBackend(CountingBackend):
    """A :class:`CountingBackend` whose database refuses the ``nth`` statement that starts with
    ``start`` once, with ``error`` (as PostgreSQL does on a serialization failure, or a full disk)."""

    def __init__(self, store: Store, start: str, nth: int, error: Exception) -> None:
        super().__init__(store)
        self.start, self.nth, self.error = start, nth, error
        self.refused = False

    def refuse(self, text: str) -> None:
        if not self.refused and text.startswith(self.start):
            self.nth -= 1
            if self.nth == 0:
                self.refused = True
                raise self.error
