"""Lockstep servers on loopback for tests: an in-process app on a fake clock, or a real process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from lockstep.server.services import Services
from lockstep.server.settings import default_web_root
from lockstep_cli import LOCKSTEP

START_TIMEOUT = 60
"""Seconds a ``lockstep serve`` process may take to answer ``/healthz``."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class FakeClock:
    """Server time the test controls; starts at the real time so codes look fresh.

    Its ``sleep`` wakes when the test advances the clock past the deadline, so timers run on fake time.
    """

    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000
        self._moved = asyncio.Event()
        self._ahead_of_real_ms: int | None = None

    def __call__(self) -> int:
        if self._ahead_of_real_ms is not None:
            return time.time_ns() // 1_000_000 + self._ahead_of_real_ms
        return self.now

    def tick_with_real_time(self, ahead_ms: int = 0) -> None:
        """From now on the clock runs, ``ahead_ms`` ahead of real time: for tests that measure it over
        the network, where a stopped clock would count the measurement's own duration as offset."""
        self._ahead_of_real_ms = ahead_ms

    def advance(self, ms: int) -> None:
        self.now += ms
        self._moved.set()

    async def sleep(self, seconds: float) -> None:
        wake_at = self.now + seconds * 1000
        while self.now < wake_at:
            self._moved.clear()
            await self._moved.wait()


@contextlib.asynccontextmanager
async def serving(services: Services) -> AsyncIterator[str]:
    """The app on a free loopback port in this event loop, for as long as the context lasts; its URL.
    ``services.origin`` is set to that URL."""
    from lockstep.server.app import create_app
    from lockstep.server.runner import Listener, uvicorn_config

    port = free_port()
    services.origin = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn_config(create_app(services, default_web_root()), Listener("127.0.0.1", port))
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield services.origin
    finally:
        server.should_exit = True
        await task


@dataclass
class LiveServer:
    url: str
    services: Services
    clock: FakeClock
    database_url: str

    @property
    def engine(self) -> str:
        return self.database_url.partition(":")[0]


async def stored_bytes(database_url: str) -> bytes:
    """Everything a database holds, as bytes to search for secrets: SQLite's files (WAL included), or
    every value of every table in a PostgreSQL database (byte strings raw, the rest as text)."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///") :])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        found = []
        for (table,) in tables:
            for row in await connection.fetch(f'SELECT * FROM "{table}"'):
                found += [v if isinstance(v, bytes) else str(v).encode() for v in row.values()]
        return b"\n".join(found)
    finally:
        await connection.close()


@dataclass
class ServerProcess:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def database(self) -> Path:
        return self.data_dir / "lockstep.sqlite3"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(
    data_dir: Path,
    log_path: Path,
    *options: str,
    port: int | None = None,
    program: Sequence[str] = (LOCKSTEP,),
    **popen: Any,
) -> ServerProcess:
    """``lockstep serve`` on 127.0.0.1 with extra command-line ``options``; waits until it answers.
    ``program`` is what runs the ``serve`` verb (a test's wrapper around the CLI, say)."""
    port = port or free_port()
    command = [*program, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data_dir)]
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [*command, *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOCKSTEP_WEB_ROOT": str(default_web_root())},
            **popen,
        )
    url = f"http://127.0.0.1:{port}"
    # A start takes about a second; the deadline is for a machine whose cores are all busy (CI on a
    # loaded box has taken over 20 s), not a measure of anything.
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return ServerProcess(url, data_dir, process)
        time.sleep(0.1)
    process.kill()
    process.wait()  # reaped here, or its Popen warns "still running" into whichever test runs next
    raise RuntimeError(f"server did not start in {START_TIMEOUT} s: {log_path.read_text()[-2000:]}")


def restart_server(
    server: ServerProcess, log_path: Path, while_down: Callable[[], object] = lambda: None
) -> None:
    """Stop ``server``, run ``while_down()``, then start it again on the same port with the same data."""
    server.stop()
    while_down()
    port = int(server.url.rsplit(":", 1)[1])
    server.process = start_server(server.data_dir, log_path, port=port).process
