"""Run the app under uvicorn: one listener, or (``--lan``) local HTTP plus HTTPS for phones on the LAN."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from lockstep.server.admission import Admission
from lockstep.server.app import create_app
from lockstep.server.backends import open_backends
from lockstep.server.ca_page import LocalCa
from lockstep.server.disk import DiskGuard
from lockstep.server.frames import MAX_FRAME_BYTES
from lockstep.server.services import Services
from lockstep.server.settings import Settings
from lockstep.server.store import Store
from lockstep.server.ws_protocol import ReadAheadProtocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Listener:
    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    app: ASGIApp | None = None
    """What this listener serves instead of the Lockstep app (the local CA's download, plain HTTP)."""

    def url(self, host: str | None = None) -> str:
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host or self.host}:{self.port}"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`serve`, which stops every listener at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_config(app: ASGIApp, listener: Listener, *, lifespan: bool = True) -> uvicorn.Config:
    """How every Lockstep listener runs under uvicorn (the tests' in-process servers use it too)."""
    return uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        ssl_certfile=listener.tls_cert,
        ssl_keyfile=listener.tls_key,
        ws=ReadAheadProtocol,  # uvicorn's, without two epoll_ctl calls per frame (ws_protocol.py)
        ws_max_size=MAX_FRAME_BYTES,
        # No permessage-deflate: its zlib streams cost about 34 KiB per socket for as long as the socket
        # is open (half the server's memory per idle device, docs/benchmarks.md) and CPU on every
        # frame, for frames that are mostly base64 ciphertext and barely shrink; nor does compressed
        # secret material (challenges, link refs) then share a context with what a peer sends.
        ws_per_message_deflate=False,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        log_level="warning",
        lifespan="on" if lifespan else "off",
        server_header=False,
        # Client addresses feed rate limits and the "same network" signal. uvicorn's own proxy support
        # would rewrite them from X-Forwarded-For sent by 127.0.0.1 (its default FORWARDED_ALLOW_IPS),
        # which any local process can do; lockstep.server.client_address believes only --trusted-proxy.
        proxy_headers=False,
        forwarded_allow_ips=[],
    )


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit and return the soft limit now in force.

    Every socket costs a descriptor; a process out of them accepts no one, health checks included.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:  # e.g. macOS caps the soft limit below an infinite hard one
            log.warning("could not raise the open-file limit from %d: %s", soft, error)
    return soft


async def serve(
    settings: Settings, origin: str, listeners: list[Listener], banner: str, local_ca: LocalCa | None = None
) -> None:
    """Open the store (migrating it; errors raise before anything listens), print ``banner``, serve."""
    open_files = raise_open_file_limit()
    store = Store.for_url(settings.database_url)
    await store.open()
    backends = open_backends(settings.redis_url, settings.redis_prefix, settings.storage)
    services = Services(
        origin=origin,
        store=store,
        hub=backends.hub,
        links=backends.links,
        limits=backends.limits,
        media_tokens=backends.media_tokens,
        media_uploads=backends.media_uploads,
        media_max_bytes=settings.media_max_bytes,
        media_dir=settings.media_root,
        storage_limits=settings.storage,
        proxies=settings.proxies,
        allowed_origins=settings.allowed_origins,
        separate_networks=settings.separate_networks,
        admission=Admission(settings.admission_limits(open_files)),
        local_ca=local_ca,
        turn=settings.turn_server(),
    )
    services.disk = DiskGuard([*settings.folders, services.media_root], settings.storage.min_free_bytes)
    app = create_app(services, settings.web_root)
    servers = [
        _Server(uvicorn_config(listener.app or app, listener, lifespan=index == 0 and listener.app is None))
        for index, listener in enumerate(listeners)
    ]

    def exit_now() -> None:
        for server in servers:
            server.should_exit = True

    def stop() -> None:
        """First signal: /readyz turns 503 so the load balancer stops sending new clients, then
        (after ``drain_seconds``) the listeners close; a second signal stops at once."""
        if services.draining:
            exit_now()
            return
        services.draining = True
        loop.call_later(settings.drain_seconds, exit_now)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    print(banner, flush=True)
    await asyncio.gather(*(server.serve() for server in servers))
