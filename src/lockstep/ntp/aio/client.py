"""UDP client adapters: a one-shot :func:`query` and the continuous :class:`Monitor`.

Each source gets its own connected UDP socket on a random ephemeral port (RFC 9109 §3), so
replies from anywhere else are discarded by the kernel, and each reply is checked by the core
against the random transmit timestamp it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lockstep.ntp.aio import clock
from lockstep.ntp.association import Association, ServerInfo
from lockstep.ntp.client import NtpClient, SystemEvent
from lockstep.ntp.constants import PORT
from lockstep.ntp.events import KissReceived, PacketDropped, SampleAccepted, SourceDemobilized
from lockstep.ntp.timestamps import from_unix_ns, to_seconds
from lockstep.ntp.wire import reference_id_for_address

logger = logging.getLogger(__name__)


class QueryFailed(Exception):
    """A query got no usable answer; the message says why (timeout, kiss, unsynchronised)."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One exchange's outcome, as ``lockstep ntp query`` prints it."""

    server: str
    address: str
    port: int
    offset: float
    delay: float
    dispersion: float
    info: ServerInfo


def split_host_port(text: str, default_port: int = PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default_port


async def resolve(host: str, port: int) -> tuple[int, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise QueryFailed(f"cannot resolve {host}")
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


# Linux: ask the kernel to stamp each datagram's arrival (struct timespec in a control message).
# Python's socket module does not name these constants; 35 is SO_TIMESTAMPNS(_OLD) on Linux.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_CONTROL_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)


class _UdpSource:
    """A connected UDP socket on a random port, read with kernel receive timestamps.

    The receive time T4 is the kernel's (SO_TIMESTAMPNS), not the moment the event loop got
    round to the datagram, so scheduling latency does not bias the offset; where the kernel
    offers no timestamp the clock is read on arrival instead.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[bytes, int], None],
        on_error: Callable[[Exception], None] | None,
    ) -> None:
        self.sock = sock
        self.on_datagram = on_datagram
        self.on_error = on_error
        self.kernel_timestamps = False
        with contextlib.suppress(OSError):
            if sys.platform == "linux":
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.kernel_timestamps = True
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def open(
        cls,
        family: int,
        address: tuple[str, int],
        on_datagram: Callable[[bytes, int], None],
        on_error: Callable[[Exception], None] | None = None,
    ) -> _UdpSource:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(address)  # an ephemeral port chosen by the kernel (RFC 9109 §3)
        except BaseException:
            sock.close()
            raise
        return cls(sock, on_datagram, on_error)

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError as error:
            self._error(error)

    def _readable(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(2048, _CONTROL_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # ICMP errors (port unreachable) on a connected socket
                self._error(error)
                return
            received_at = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = _TIMESPEC.unpack(payload[: _TIMESPEC.size])
                    received_at = from_unix_ns(seconds * 1_000_000_000 + nanoseconds)
            self.on_datagram(data, clock.now() if received_at is None else received_at)

    def _error(self, error: Exception) -> None:
        logger.debug("UDP error: %s", error)
        if self.on_error is not None:
            self.on_error(error)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def query(server: str, *, timeout: float = 5.0, port: int = PORT) -> QueryResult:
    """Send one request (RFC 9109 style) and return the checked result; raise QueryFailed."""
    host, port = split_host_port(server, port)
    family, address = await resolve(host, port)
    association = Association(server, now=clock.now(), iburst=False)
    outcome: asyncio.Future[SampleAccepted | KissReceived | SourceDemobilized | PacketDropped]
    outcome = asyncio.get_running_loop().create_future()

    def on_datagram(data: bytes, received_at: int) -> None:
        event = association.receive(data, received_at)
        if outcome.done() or event is None:
            return
        if isinstance(event, PacketDropped) and association.server is None:
            logger.debug("ignored datagram: %s", event.reason)  # not our reply: keep waiting
            return
        outcome.set_result(event)

    def on_error(error: Exception) -> None:
        if not outcome.done():
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            outcome.set_exception(QueryFailed(f"{server}: {reason}"))

    transport = await _UdpSource.open(family, address, on_datagram, on_error)
    try:
        request = association.poll_due(clock.now())
        assert request is not None
        transport.send(request)
        try:
            event = await asyncio.wait_for(outcome, timeout)
        except TimeoutError:
            raise QueryFailed(f"no reply from {server} within {timeout:g} s") from None
    finally:
        transport.close()
    return query_result(server, address, association, event)


def kiss_code(event: KissReceived | SourceDemobilized) -> str:
    return event.code if isinstance(event, KissReceived) else event.reason.split()[-1]


def query_result(
    server: str,
    address: tuple[str, int],
    association: Association,
    event: SampleAccepted | KissReceived | SourceDemobilized | PacketDropped,
) -> QueryResult:
    """The result of a one-shot exchange from its final event, or :class:`QueryFailed` saying why."""
    if isinstance(event, KissReceived | SourceDemobilized):
        raise QueryFailed(f"{server} sent kiss-o'-death {kiss_code(event)}")
    if isinstance(event, PacketDropped):
        raise QueryFailed(f"{server}: {event.reason}")
    assert association.server is not None
    return QueryResult(
        server=server,
        address=address[0],
        port=address[1],
        offset=event.offset,
        delay=event.delay,
        dispersion=event.dispersion,
        info=association.server,
    )


class Monitor:
    """Runs an :class:`NtpClient` over UDP: one connected socket per source, timers from the core.

    ``on_event`` sees every event the core emits (samples, selection changes, kisses, steps).
    """

    def __init__(
        self,
        client: NtpClient,
        *,
        on_event: Callable[[SystemEvent], None] | None = None,
    ) -> None:
        self.client = client
        self.on_event = on_event
        self._transports: dict[str, _UdpSource] = {}
        self._wake = asyncio.Event()

    async def add_source(
        self, server: str, *, iburst: bool = True, minpoll: int = 6, maxpoll: int = 10
    ) -> None:
        host, port = split_host_port(server)
        family, address = await resolve(host, port)
        self.client.add_source(
            server,
            now=clock.now(),
            reference_id=reference_id_for_address(address[0]),
            iburst=iburst,
            minpoll=minpoll,
            maxpoll=maxpoll,
        )

        def on_datagram(data: bytes, received_at: int) -> None:
            for event in self.client.receive(server, data, received_at):
                if isinstance(event, PacketDropped):
                    logger.debug("%s: dropped: %s", server, event.reason)
                if self.on_event is not None:
                    self.on_event(event)
            self._wake.set()

        self._transports[server] = await _UdpSource.open(family, address, on_datagram)
        self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until cancelled or until ``stop`` is set."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                for transmit in self.client.handle_timer(clock.now()):
                    self._transports[transmit.source].send(transmit.data)
                await sleep_until_due(self.client, stop, self._wake)
        finally:
            self.close()

    def close(self) -> None:
        for transport in self._transports.values():
            with contextlib.suppress(Exception):
                transport.close()
        self._transports.clear()


async def sleep_until_due(client: NtpClient, stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Wait for the core's next timer, a new source (``wake``) or ``stop``, whichever comes first."""
    due = client.next_timer()
    delay = 3600.0 if due is None else max(0.0, to_seconds(due - clock.now()))
    wake.clear()
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def monitor(
    servers: Sequence[str],
    client: NtpClient,
    *,
    on_event: Callable[[SystemEvent], None] | None = None,
    stop: asyncio.Event | None = None,
    minpoll: int = 6,
    maxpoll: int = 10,
    iburst: bool = True,
) -> None:
    """Convenience: a :class:`Monitor` over ``servers`` run until ``stop``."""
    runner = Monitor(client, on_event=on_event)
    for server in servers:
        await runner.add_source(server, iburst=iburst, minpoll=minpoll, maxpoll=maxpoll)
    await runner.run(stop)
