"""WebSocket connection floods against a real `lockstep serve`: one address is capped, many addresses
cannot exhaust the descriptors (the oldest unauthenticated socket makes room), idle sockets are closed
at a deadline, and authenticated devices and /healthz keep working throughout.

The flood server runs with a small open-file limit (hard 256) so that a flood of a few hundred sockets
from 24 loopback addresses would exhaust it if nothing stopped it; bounded and quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from lockstep.client.primary import PrimarySession, create_account
from lockstep.client.state import DeviceState
from lockstep_servers import ServerProcess, start_server

pytestmark = pytest.mark.anyio

HARD_OPEN_FILES = 256
PER_ADDRESS = 16  # the default cap
FLOOD_ADDRESSES = [f"127.0.2.{n}" for n in range(1, 25)]


def _small_open_file_limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, HARD_OPEN_FILES))


@pytest.fixture(scope="module")
def flood_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("flood")
    server = start_server(folder / "data", folder / "server.log", preexec_fn=_small_open_file_limit)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def deadline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("deadline")
    server = start_server(folder / "data", folder / "server.log", "--unauthenticated-deadline", "1")
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Opened:
    socket: ClientConnection
    hello: bool
    """Whether the server greeted it (else it was closed at once: see close_code / close_reason)."""

    @property
    def close_code(self) -> int | None:
        return self.socket.close_code

    @property
    def close_reason(self) -> str | None:
        return self.socket.close_reason


async def open_from(server: ServerProcess, source: str) -> Opened:
    """A /ws connection from the loopback address ``source``; waits for hello or the close."""
    socket = await connect(
        server.url.replace("http", "ws", 1) + "/ws", local_addr=(source, 0), open_timeout=20
    )
    try:
        first = json.loads(await asyncio.wait_for(socket.recv(), 20))
    except ConnectionClosed:
        return Opened(socket, hello=False)
    assert first["event"] == "hello"
    return Opened(socket, hello=True)


@contextlib.asynccontextmanager
async def held(sockets: list[Opened]) -> AsyncIterator[list[Opened]]:
    try:
        yield sockets
    finally:
        await asyncio.gather(*(opened.socket.close() for opened in sockets), return_exceptions=True)


async def flood(server: ServerProcess, addresses: list[str], per_address: int) -> list[Opened]:
    gate = asyncio.Semaphore(32)

    async def one(source: str) -> Opened:
        async with gate:
            return await open_from(server, source)

    return list(await asyncio.gather(*(one(a) for a in addresses for _ in range(per_address))))


def healthy(server: ServerProcess) -> bool:
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
        return bool(response.status == 200 and json.loads(response.read())["status"] == "ok")


async def new_account(server: ServerProcess, folder: Path, handle: str) -> DeviceState:
    return await create_account(server.url, handle, handle.title(), "Phone", folder)


async def test_one_address_is_refused_past_its_cap(flood_server: ServerProcess) -> None:
    async with held(await flood(flood_server, ["127.0.1.1"], PER_ADDRESS)) as sockets:
        assert all(opened.hello for opened in sockets)
        extra = await open_from(flood_server, "127.0.1.1")
        assert not extra.hello
        assert extra.close_code == 1013  # try again later
        assert "too many unauthenticated connections from this address" in str(extra.close_reason)
        other = await open_from(flood_server, "127.0.1.2")  # a neighbour is not affected
        assert other.hello
        await other.socket.close()


async def test_a_flood_from_many_addresses_leaves_devices_and_health_checks_working(
    flood_server: ServerProcess, tmp_path: Path
) -> None:
    phone = await new_account(flood_server, tmp_path / "phone", "flooded")
    signed_in = await PrimarySession.open(phone)
    try:
        attempts = len(FLOOD_ADDRESSES) * PER_ADDRESS
        assert attempts > HARD_OPEN_FILES  # enough to exhaust the server's descriptors unchecked
        async with held(await flood(flood_server, FLOOD_ADDRESSES, PER_ADDRESS)) as sockets:
            evicted = [s for s in sockets if s.close_code == 1013]
            assert evicted and all("server busy" in str(s.close_reason) for s in evicted)
            assert await asyncio.to_thread(healthy, flood_server)
            listing = await signed_in.connection.request("devices.list")  # a device signed in before
            assert len(listing["devices"]) == 1
            during = await PrimarySession.open(phone)  # and one signing in now
            await during.connection.request("devices.list")
            await during.close()
            again = await new_account(flood_server, tmp_path / "newcomer", "newcomer")  # registering too
            assert again.account.handle == "newcomer"
    finally:
        await signed_in.close()
    log = (flood_server.data_dir.parent / "server.log").read_text()
    assert "Too many open files" not in log


def test_the_server_raises_its_open_file_limit_to_the_hard_limit(flood_server: ServerProcess) -> None:
    limits = Path(f"/proc/{flood_server.process.pid}/limits").read_text()
    match = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
    assert match is not None
    assert (int(match.group(1)), int(match.group(2))) == (HARD_OPEN_FILES, HARD_OPEN_FILES)


async def test_a_socket_that_neither_authenticates_nor_links_is_closed_at_the_deadline(
    deadline_server: ServerProcess, tmp_path: Path
) -> None:
    phone = await new_account(deadline_server, tmp_path / "phone", "patient")
    signed_in = await PrimarySession.open(phone)
    idle = await open_from(deadline_server, "127.0.3.1")
    linking = await open_from(deadline_server, "127.0.3.2")
    try:
        await linking.socket.send(json.dumps({"id": 1, "op": "link.start", "client": "terminal"}))
        with pytest.raises(ConnectionClosed):
            while True:  # it may get nothing but the close; bounded by the timeout
                await asyncio.wait_for(idle.socket.recv(), 10)
        assert idle.close_code == 1008
        assert idle.close_reason == "authenticate or start linking within 1 s"
        await asyncio.sleep(0.5)  # past the deadline for the others too
        await linking.socket.send(json.dumps({"id": 2, "op": "time.sync", "t1": 1}))
        for _ in range(10):
            reply = json.loads(await asyncio.wait_for(linking.socket.recv(), 5))
            if reply.get("id") == 2:
                break
        assert reply["ok"] is True  # a companion showing a code waits as long as it likes
        await signed_in.connection.request("devices.list")  # and so does a signed-in device
    finally:
        await signed_in.close()
        await asyncio.gather(idle.socket.close(), linking.socket.close())
