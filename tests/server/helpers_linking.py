"""Driving a primary and companions of the Python client against a live server, for API tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from lockstep.client.companion import ShownCode, link
from lockstep.client.primary import PrimarySession, create_account
from lockstep.client.session import DeviceSession
from lockstep.link.qr import LinkCode


@dataclass
class CompanionRun:
    """A companion's link session running in the background, its shown codes in a queue."""

    codes: asyncio.Queue[ShownCode] = field(default_factory=asyncio.Queue)
    scanned: asyncio.Event = field(default_factory=asyncio.Event)
    numbers: list[str] = field(default_factory=list)
    """The matching number shown after each scan (linking.md §6.5)."""
    task: asyncio.Task[DeviceSession] | None = None

    def on_scanned(self, number: str) -> None:
        self.numbers.append(number)
        self.scanned.set()

    async def next_code(self) -> LinkCode:
        shown = await asyncio.wait_for(self.codes.get(), timeout=10)
        return shown.code

    async def result(self) -> DeviceSession:
        assert self.task is not None
        return await asyncio.wait_for(self.task, timeout=10)


@contextlib.asynccontextmanager
async def companion(url: str, directory: Path, *, typed_code: bool = False) -> AsyncIterator[CompanionRun]:
    run = CompanionRun()
    run.task = asyncio.create_task(
        link(url, directory, run.codes.put_nowait, run.on_scanned, typed_code=typed_code)
    )
    try:
        yield run
    finally:
        if not run.task.done():  # the test is done with a companion that never linked
            run.task.cancel()
            with contextlib.suppress(BaseException):
                await run.task


@contextlib.asynccontextmanager
async def primary(url: str, directory: Path, handle: str = "alice") -> AsyncIterator[PrimarySession]:
    state = await create_account(url, handle, handle.title(), "Phone", directory)
    session = await PrimarySession.open(state)
    try:
        yield session
    finally:
        await session.close()


async def link_one(
    url: str, session: PrimarySession, directory: Path, name: str = "Laptop", other_network: str | None = None
) -> DeviceSession:
    """Link a companion; ``other_network``: as one the server saw at that address on another network,
    which the primary lists on probation (linking.md §4.6)."""
    async with companion(url, directory) as run:
        code = await run.next_code()
        await session.inspect(code)
        await session.approve(code, name, other_network)
        return await run.result()
