"""Two accounts, each with a primary and a linked companion, as Messengers on a live server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from helpers_linking import link_one, primary

from lockstep.client.messenger import Messenger, Received
from lockstep.client.state import DeviceState


@dataclass
class Account:
    handle: str
    primary_dir: Path
    companion_dir: Path


async def make_account(url: str, root: Path, handle: str) -> Account:
    """Create an account and link one companion; every socket is closed again afterwards."""
    async with primary(url, root / f"{handle}-phone", handle) as phone:
        laptop = await link_one(url, phone, root / f"{handle}-laptop", "Laptop")
        await laptop.close()
    account = Account(handle, root / f"{handle}-phone", root / f"{handle}-laptop")
    async with messengers(account.primary_dir, account.companion_dir):
        pass  # each device publishes its E2E keys, as the apps do once linked
    return account


def load(directory: Path) -> DeviceState:
    import json

    role = json.loads((directory / "state.json").read_text())["role"]
    return DeviceState.load(directory, role)


@contextlib.asynccontextmanager
async def messengers(*directories: Path) -> AsyncIterator[list[Messenger]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Messenger.open(load(d))) for d in directories]


def shown(received: list[Received]) -> bool:
    """Something a person would see arrived (not only keys and receipts)."""
    return any(m.kind in ("text", "media", "undecryptable") for m in received)
