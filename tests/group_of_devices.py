"""Many Python devices against one in-process server, for the large-group test
(tests/webmsg/test_webmsg_large_group.py) and bench/group_fanout.py.

The server and every device run in one asyncio loop in a thread of its own (:class:`LoopThread`), so
the test's own thread stays free for Playwright's sync API. Accounts are made and companions linked
through the real flows (``account.register``, the link handshake), and each device opens a real
:class:`Messenger`, which publishes its keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lockstep.client import qrimage
from lockstep.client.companion import ShownCode, link
from lockstep.client.messenger import Messenger, Received
from lockstep.client.primary import PrimarySession, create_account
from lockstep.client.state import DeviceState
from lockstep.link.devices import Role
from lockstep.link.qr import decode_text
from lockstep.server.ratelimit import MemoryRateLimiter
from lockstep.server.services import Limits

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a thread of its own; :meth:`run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # Media uploads and downloads block a worker thread each until the server, in this same loop,
        # has stored the blob, and the server writes blobs in worker threads too: with the default
        # handful of workers, a hundred devices syncing history at once would starve the server's.
        self.loop.set_default_executor(ThreadPoolExecutor(max_workers=512, thread_name_prefix="devices"))
        self._thread = threading.Thread(target=self.loop.run_forever, name="devices", daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 240) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def limits(**per_minute: int) -> Limits:
    """The server's rate limits with some of them changed, by name (``registrations=10_000``)."""
    return Limits.build(
        lambda name, rate, window_ms: MemoryRateLimiter(per_minute=per_minute.get(name, rate))
    )


@dataclass(frozen=True)
class Person:
    handle: str
    phone: Path
    laptop: Path | None = None

    @property
    def devices(self) -> list[Path]:
        return [self.phone] if self.laptop is None else [self.phone, self.laptop]


def load(directory: Path) -> DeviceState:
    return DeviceState.load(directory, Role(json.loads((directory / "state.json").read_text())["role"]))


async def link_laptop(url: str, phone: DeviceState, directory: Path) -> None:
    """Link a Python companion to ``phone``'s account, as `lockstep companion link` would."""
    shown: asyncio.Queue[ShownCode] = asyncio.Queue()
    primary = await PrimarySession.open(phone)
    try:
        task = asyncio.create_task(link(url, directory, shown.put_nowait))
        code = (await asyncio.wait_for(shown.get(), timeout=30)).code
        await primary.inspect(code)
        await primary.approve(code, "Laptop")
        await (await asyncio.wait_for(task, timeout=30)).close()
    finally:
        await primary.close()


async def approve_browser(phone: Path, qr: Path, origin: str | None) -> None:
    """``phone`` scans a browser companion page's link code (a screenshot of it) and approves it."""
    code = decode_text(qrimage.read_image(qr), own_origin=origin)
    primary = await PrimarySession.open(load(phone))
    try:
        await primary.inspect(code)
        await primary.approve(code, "Browser")
    finally:
        await primary.close()


async def gathered(jobs: list[Awaitable[T]], parallel: int = 16) -> list[T]:
    """Await every job, at most ``parallel`` at a time, in order."""
    gate = asyncio.Semaphore(parallel)

    async def gated(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(gated(job) for job in jobs)))


async def make_people(url: str, root: Path, handles: list[str], laptops: int) -> list[Person]:
    """An account with a phone for each handle; the first ``laptops`` of them also link a laptop."""

    async def person(index: int, handle: str) -> Person:
        phone = await create_account(url, handle, handle.title(), "Phone", root / f"{handle}-phone")
        if index >= laptops:
            return Person(handle, phone.directory)
        await link_laptop(url, phone, root / f"{handle}-laptop")
        return Person(handle, phone.directory, root / f"{handle}-laptop")

    return await gathered([person(index, handle) for index, handle in enumerate(handles)])


class Devices:
    """Open Messengers by state folder; each can be closed on its own (before it is unlinked)."""

    def __init__(self) -> None:
        self.open: dict[Path, Messenger] = {}
        self._stacks: dict[Path, contextlib.AsyncExitStack] = {}

    async def add(self, directories: list[Path]) -> None:
        async def one(directory: Path) -> None:
            stack = contextlib.AsyncExitStack()
            self.open[directory] = await stack.enter_async_context(Messenger.open(load(directory)))
            self._stacks[directory] = stack

        await gathered([one(directory) for directory in directories])

    async def close(self, directory: Path) -> None:
        self.open.pop(directory)
        await self._stacks.pop(directory).aclose()

    async def close_all(self) -> None:
        for directory in list(self._stacks):
            await self.close(directory)

    async def receive_until(
        self, directories: list[Path], done: Callable[[list[Received]], bool], wait: float = 60
    ) -> dict[Path, list[Received]]:
        """What each device receives until ``done`` holds for it (or ``wait`` seconds pass)."""

        async def one(directory: Path) -> list[Received]:
            return await self.open[directory].receive(wait, receipts=False, until=done, settle=0.2)

        return dict(
            zip(
                directories,
                await gathered([one(d) for d in directories], parallel=len(directories) or 1),
                strict=True,
            )
        )


@contextlib.asynccontextmanager
async def opened(directories: list[Path]) -> AsyncIterator[Devices]:
    devices = Devices()
    try:
        await devices.add(directories)
        yield devices
    finally:
        await devices.close_all()
