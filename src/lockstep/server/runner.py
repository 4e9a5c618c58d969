"""Run the app under uvicorn: one listener, or (``--lan``) local HTTP plus HTTPS for phones on the LAN."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from lockstep.server.app import create_app
from lockstep.server.frames import MAX_FRAME_BYTES
from lockstep.server.services import Limits, Services
from lockstep.server.settings import Settings
from lockstep.server.storage import SqliteStore


@dataclass(frozen=True, slots=True)
class Listener:
    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def url(self, host: str | None = None) -> str:
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host or self.host}:{self.port}"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`serve`, which stops every listener at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings, origin: str, listeners: list[Listener]) -> None:
    services = Services(
        origin=origin,
        store=SqliteStore(settings.database),
        media_max_bytes=settings.media_max_bytes,
        limits=Limits.in_memory(settings.storage),
        storage_limits=settings.storage,
    )
    app = create_app(services, settings.web_root)
    servers: list[_Server] = []
    for listener in listeners:
        config = uvicorn.Config(
            app,
            host=listener.host,
            port=listener.port,
            ssl_certfile=listener.tls_cert,
            ssl_keyfile=listener.tls_key,
            ws_max_size=MAX_FRAME_BYTES,
            ws_ping_interval=20,
            ws_ping_timeout=20,
            log_level="warning",
            lifespan="on" if not servers else "off",
            server_header=False,
            # Client addresses feed rate limits and the "same network" signal: never take them from
            # X-Forwarded-For, which any local process could set.
            proxy_headers=False,
        )
        servers.append(_Server(config))

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    await asyncio.gather(*(server.serve() for server in servers))
