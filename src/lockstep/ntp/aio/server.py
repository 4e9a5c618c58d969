"""The UDP side of the NTP server.

:class:`UdpServer` reads its socket with ``loop.add_reader`` and drains it — up to ``batch``
datagrams per wake-up — instead of asyncio's one-datagram-per-loop-turn ``DatagramProtocol``,
answering each with :meth:`lockstep.ntp.server.NtpServer.respond`. The receive time is read once
per datagram, right after ``recvfrom`` returns. :func:`serve_workers` runs several processes on one
port with ``SO_REUSEPORT`` (the kernel spreads clients over them by address hash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from lockstep.ntp.server import NtpServer
from lockstep.ntp.timestamps import from_unix_ns

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 1024  # larger NTP requests (NTS, big extensions) are not served unauthenticated


def open_udp_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port), IPv4 or IPv6 by the host's form."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class UdpServer:
    """Serve one :class:`NtpServer` core on one socket inside a running event loop."""

    def __init__(self, core: NtpServer, sock: socket.socket, *, batch: int = 256) -> None:
        self.core = core
        self.sock = sock
        self.batch = batch
        self.send_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._drain)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def _drain(self) -> None:
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        respond = self.core.respond
        clock = time.time_ns
        for _ in range(self.batch):
            try:
                data, address = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP errors from earlier sends surface here on Linux; nothing to do with them.
                continue
            reply = respond(data, address[0], from_unix_ns(clock()))
            if type(reply) is bytes:
                try:
                    sendto(reply, address)
                except OSError:
                    self.send_errors += 1


async def serve(
    core: NtpServer,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[UdpServer], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled (or until ``stop`` is set)."""
    server = UdpServer(core, open_udp_socket(host, port, reuse_port=reuse_port))
    server.start()
    logger.info("serving NTP on %s port %d", *server.address)
    if on_ready is not None:
        on_ready(server)
    try:
        if stop is None:
            await asyncio.Future()
        else:
            await stop.wait()
    finally:
        server.close()


def _worker(make_core: Callable[[], NtpServer], host: str, port: int) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(make_core(), host, port, reuse_port=True))


def serve_workers(
    make_core: Callable[[], NtpServer], host: str, port: int, workers: int
) -> list[BaseProcess]:
    """Start ``workers`` processes sharing the port with SO_REUSEPORT; return them (started).

    Each worker keeps its own rate-limit table; the kernel sends a given client address and port
    to the same worker, so per-client limits still hold for clients that keep their port.
    """
    context = multiprocessing.get_context("fork")
    processes: list[BaseProcess] = []
    for _ in range(workers):
        process = context.Process(target=_worker, args=(make_core, host, port), daemon=True)
        process.start()
        processes.append(process)
    return processes
