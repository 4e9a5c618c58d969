"""Fixtures shared across test folders: Lockstep servers on loopback.

- ``live_server``: the app in this test's event loop (anyio), with a clock the test can move.
- ``server_process``: ``lockstep serve`` as a real process, for the CLI and browser tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from lockstep.server.app import create_app
from lockstep.server.link_sessions import LinkRegistry
from lockstep.server.services import Services
from lockstep.server.settings import default_web_root
from lockstep.server.storage import SqliteStore

REPO = Path(__file__).resolve().parent.parent
LOCKSTEP = Path(sys.executable).parent / "lockstep"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Server time the test controls; starts at the real time so codes look fresh.

    Its ``sleep`` wakes when the test advances the clock past the deadline, so timers run on fake time.
    """

    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000
        self._moved = asyncio.Event()

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms
        self._moved.set()

    async def sleep(self, seconds: float) -> None:
        wake_at = self.now + seconds * 1000
        while self.now < wake_at:
            self._moved.clear()
            await self._moved.wait()


@dataclass
class LiveServer:
    url: str
    services: Services
    clock: FakeClock
    database: Path


@pytest.fixture
async def live_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    port = free_port()
    clock = FakeClock()
    url = f"http://127.0.0.1:{port}"
    services = Services(origin=url, store=SqliteStore(tmp_path / "lockstep.sqlite3"), links=LinkRegistry())
    services.clock = clock
    services.sleep = clock.sleep
    app = create_app(services, default_web_root())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield LiveServer(url, services, clock, tmp_path / "lockstep.sqlite3")
    finally:
        server.should_exit = True
        await task


@dataclass
class ServerProcess:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def database(self) -> Path:
        return self.data_dir / "lockstep.sqlite3"


def start_server(data_dir: Path, log_path: Path) -> ServerProcess:
    port = free_port()
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(LOCKSTEP), "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOCKSTEP_WEB_ROOT": str(default_web_root())},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return ServerProcess(url, data_dir, process)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start in 20 s")


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path / "server-data", tmp_path / "server.log")
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
