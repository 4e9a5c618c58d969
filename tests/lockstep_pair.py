"""Two instances in the test's event loop sharing one Redis and one database, on one fake clock: for
what only time shows across instances (codes rotating while a primary elsewhere holds a claim)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn

from lockstep.server.app import create_app
from lockstep.server.backends import open_backends
from lockstep.server.runner import Listener, uvicorn_config
from lockstep.server.services import Services
from lockstep.server.settings import default_web_root
from lockstep.server.store import Store
from lockstep_servers import FakeClock, LiveServer, free_port
from redis_server import new_prefix


@contextlib.asynccontextmanager
async def instance_pair(tmp_path: Path, redis_url: str, database_url: str) -> AsyncIterator[list[LiveServer]]:
    clock, prefix = FakeClock(), new_prefix("pair")
    ports = [free_port(), free_port()]
    origin = f"http://127.0.0.1:{ports[0]}"
    async with contextlib.AsyncExitStack() as stack:
        pair = []
        for port in ports:
            backends = open_backends(redis_url, prefix)
            services = Services(
                origin,
                Store.for_url(database_url),
                hub=backends.hub,
                links=backends.links,
                limits=backends.limits,
                media_tokens=backends.media_tokens,
                media_uploads=backends.media_uploads,
                media_dir=tmp_path / "media",
                clock=clock,
                sleep=clock.sleep,
                allowed_origins=tuple(f"http://127.0.0.1:{p}" for p in ports),  # clients pick by port
            )
            app = create_app(services, default_web_root())
            server = uvicorn.Server(uvicorn_config(app, Listener("127.0.0.1", port)))
            task = asyncio.create_task(server.serve())
            stack.push_async_callback(lambda s=server, t=task: _stop(s, t))
            while not server.started:
                await asyncio.sleep(0.01)
            pair.append(LiveServer(f"http://127.0.0.1:{port}", services, clock, database_url))
        yield pair


async def _stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task
