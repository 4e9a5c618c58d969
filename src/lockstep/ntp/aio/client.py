"""UDP client adapters: a one-shot :func:`query` and the continuous :class:`Monitor`, for plain
NTP and for NTS (RFC 8915) alike.

Each source gets its own connected UDP socket on a random ephemeral port (RFC 9109 §3), so
replies from anywhere else are discarded by the kernel, and each reply is checked by the core
against the random transmit timestamp it sent. Replies are stamped by the kernel on arrival.

With NTS, a source is named by its NTS-KE server (``HOST[:KE_PORT]``): NTS-KE
(:mod:`lockstep.ntp.aio.nts_ke`) runs first and names the NTP server to poll, and the
association holds an :class:`~lockstep.ntp.nts.client.NtsClientSession`, so every request
carries a cookie and a fresh unique identifier and only authenticated replies count. When the
core asks for NTS-KE again (:class:`~lockstep.ntp.events.KeyExchangeNeeded`: cookies run out,
or an NTS NAK), :class:`Monitor` runs it, with backoff, and hands the result back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lockstep.ntp.aio import clock
from lockstep.ntp.association import Association, ServerInfo
from lockstep.ntp.client import NtpClient, SystemEvent, Transmit
from lockstep.ntp.constants import PORT
from lockstep.ntp.errors import NtpError
from lockstep.ntp.events import (
    DropReason,
    KeyExchangeNeeded,
    KissReceived,
    PacketDropped,
    SampleAccepted,
    SourceDemobilized,
)
from lockstep.ntp.nts.client import NtsClientSession
from lockstep.ntp.nts.records import KE_PORT
from lockstep.ntp.timestamps import from_unix_ns, to_seconds
from lockstep.ntp.wire import reference_id_for_address

if TYPE_CHECKING:
    from lockstep.ntp.aio.nts_ke import KeOutcome

logger = logging.getLogger(__name__)


class QueryFailed(NtpError):
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


# Linux: ask the kernel to stamp each datagram's arrival and each request's departure (software
# timestamps, struct scm_timestamping in a control message; the departure on the error queue).
# Python's socket module does not name these constants (Documentation/networking/timestamping.rst).
SO_TIMESTAMPING = 37
_CLIENT_TIMESTAMPING = (
    (1 << 1)  # SOF_TIMESTAMPING_TX_SOFTWARE
    | (1 << 3)  # SOF_TIMESTAMPING_RX_SOFTWARE
    | (1 << 4)  # SOF_TIMESTAMPING_SOFTWARE
    | (1 << 11)  # SOF_TIMESTAMPING_OPT_TSONLY: the timestamp without the request's bytes
)
_TIMESPEC = struct.Struct("@qq")
_CONTROL_SIZE = socket.CMSG_SPACE(3 * _TIMESPEC.size)
_ERROR_CONTROL_SIZE = _CONTROL_SIZE + socket.CMSG_SPACE(64)  # and the sock_extended_err


def _software_timestamp(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The software timestamp in a message's control data, as a full NTP time, if any."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(payload) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
            if seconds or nanoseconds:
                return from_unix_ns(seconds * 1_000_000_000 + nanoseconds)
    return None


class _UdpSource:
    """A connected UDP socket on a random port, with kernel receive and transmit timestamps.

    The receive time T4 is the kernel's, not the moment the event loop got round to the
    datagram, so scheduling latency does not bias the offset; where the kernel offers no
    timestamp the clock is read on arrival instead. On Linux the kernel also reports when each
    request left (read off the error queue right after sending, and whenever it signals more):
    ``on_sent`` gets it, so the core can use it as T1 (what interleaved mode needs, RFC 9769).
    """

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[bytes, int], None],
        on_error: Callable[[Exception], None] | None,
        on_sent: Callable[[int], object] | None = None,
    ) -> None:
        self.sock = sock
        self.on_datagram = on_datagram
        self.on_error = on_error
        self.on_sent = on_sent
        self.kernel_timestamps = False
        with contextlib.suppress(OSError):
            if sys.platform == "linux":
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _CLIENT_TIMESTAMPING)
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
        on_sent: Callable[[int], object] | None = None,
    ) -> _UdpSource:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(address)  # an ephemeral port chosen by the kernel (RFC 9109 §3)
        except BaseException:
            sock.close()
            raise
        return cls(sock, on_datagram, on_error, on_sent)

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError as error:
            self._error(error)
            return
        if self.kernel_timestamps:
            self._read_sent()  # usually there already: before the reply can be read

    def _read_sent(self) -> None:
        """Hand the transmit timestamps queued on the error queue to ``on_sent``."""
        while True:
            try:
                _, ancillary, _, _ = self.sock.recvmsg(0, _ERROR_CONTROL_SIZE, socket.MSG_ERRQUEUE)
            except OSError:  # nothing queued (the socket is non-blocking)
                return
            sent = _software_timestamp(ancillary)
            if sent is not None and self.on_sent is not None:
                self.on_sent(sent)

    def _readable(self) -> None:
        if self.kernel_timestamps:
            self._read_sent()
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(2048, _CONTROL_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # ICMP errors (port unreachable) on a connected socket
                self._error(error)
                return
            received_at = _software_timestamp(ancillary)
            self.on_datagram(data, clock.now() if received_at is None else received_at)

    def _error(self, error: Exception) -> None:
        logger.debug("UDP error: %s", error)
        if self.on_error is not None:
            self.on_error(error)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def nts_key_exchange(server: str, cafile: str | None, timeout: float) -> KeOutcome:
    """NTS-KE with ``server`` (``HOST[:KE_PORT]``); raise :class:`QueryFailed` with the reason."""
    from lockstep.ntp.aio.nts_ke import NtsKeError, key_exchange

    host, ke_port = split_host_port(server, KE_PORT)
    try:
        return await key_exchange(host, ke_port, cafile=cafile, timeout=timeout)
    except NtsKeError as error:
        raise QueryFailed(str(error)) from None


def nts_session(outcome: KeOutcome) -> NtsClientSession:
    return NtsClientSession(outcome.c2s, outcome.s2c, outcome.result.cookies, aead=outcome.result.aead)


async def query(
    server: str,
    *,
    timeout: float = 5.0,
    port: int = PORT,
    nts: bool = False,
    cafile: str | None = None,
    ke_timeout: float = 5.0,
) -> QueryResult:
    """One exchange (RFC 9109 style) with ``server``; return the checked result or raise
    :class:`QueryFailed`.

    With ``nts``, ``server`` is an NTS-KE server (``HOST[:KE_PORT]``, CA certificates from
    ``cafile`` or the system's): NTS-KE first, then one authenticated exchange with the NTP server
    it names. A reply that fails an NTS check is dropped and the wait goes on (a forger must not
    be able to end the query); if no authentic reply arrives, the error names the last refusal.
    """
    association = Association(server, now=clock.now(), iburst=False)
    if nts:
        outcome = await nts_key_exchange(server, cafile, ke_timeout)
        family, address = await resolve(outcome.ntp_host, outcome.ntp_port)
        association.nts = nts_session(outcome)
    else:
        family, address = await resolve(*split_host_port(server, port))
    done: asyncio.Future[SampleAccepted | KissReceived | SourceDemobilized | PacketDropped]
    done = asyncio.get_running_loop().create_future()
    refusals: list[str] = []

    def on_datagram(data: bytes, received_at: int) -> None:
        event = association.receive(data, received_at)
        if done.done() or event is None:
            return
        if isinstance(event, PacketDropped) and (
            association.server is None or event.reason is DropReason.NTS
        ):
            # Not our reply, or not an authentic one: keep waiting.
            refusals.append(event.message)
            logger.log(logging.INFO if nts else logging.DEBUG, "%s: reply refused: %s", server, event.message)
            return
        done.set_result(event)

    def on_error(error: Exception) -> None:
        if not done.done():
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            where = f"NTP port {address[1]}: " if nts else ""
            done.set_exception(QueryFailed(f"{server}: {where}{reason}"))

    transport = await _UdpSource.open(family, address, on_datagram, on_error, association.transmitted)
    try:
        request = association.poll_due(clock.now())
        assert isinstance(request, bytes)  # a new association polls at once, with cookies
        transport.send(request)
        try:
            event = await asyncio.wait_for(done, timeout)
        except TimeoutError:
            if not nts:
                raise QueryFailed(f"no reply from {server} within {timeout:g} s") from None
            why = f" (refused: {refusals[-1]})" if refusals else ""
            raise QueryFailed(f"no authentic reply from {server} within {timeout:g} s{why}") from None
    finally:
        transport.close()
    if nts and isinstance(event, KissReceived | SourceDemobilized) and kiss_code(event) == "NTSN":
        raise QueryFailed(f"{server} sent NTS NAK (NTSN): it could not use our cookie")
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
        raise QueryFailed(f"{server}: {event.message}")
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
    """Runs an :class:`NtpClient` over UDP: one connected socket per source, timers and NTS-KE
    requests from the core.

    ``on_event`` sees every event the core emits (samples, selection changes, kisses, steps).
    ``cafile`` and ``ke_timeout`` apply to NTS sources (``add_source(..., nts=True)``); a failed
    NTS-KE is retried with exponential backoff (2, 4, ..., 1024 s).
    """

    def __init__(
        self,
        client: NtpClient,
        *,
        on_event: Callable[[SystemEvent], None] | None = None,
        cafile: str | None = None,
        ke_timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.on_event = on_event
        self.cafile = cafile
        self.ke_timeout = ke_timeout
        self._transports: dict[str, _UdpSource] = {}
        self._wake = asyncio.Event()
        self._ke_tasks: dict[str, asyncio.Task[None]] = {}
        self.ke_count: dict[str, int] = {}  # NTS-KE runs per source

    async def add_source(
        self, server: str, *, nts: bool = False, iburst: bool = True, minpoll: int = 6, maxpoll: int = 10
    ) -> None:
        """Poll ``server`` (``HOST[:PORT]``), or with ``nts`` run NTS-KE with ``server``
        (``HOST[:KE_PORT]``) and poll the NTP server it names; raise :class:`QueryFailed`."""
        session = None
        if nts:
            outcome = await nts_key_exchange(server, self.cafile, self.ke_timeout)
            self.ke_count[server] = 1
            family, address = await resolve(outcome.ntp_host, outcome.ntp_port)
            session = nts_session(outcome)
        else:
            family, address = await resolve(*split_host_port(server))
        self.client.add_source(
            server,
            now=clock.now(),
            reference_id=reference_id_for_address(address[0]),
            iburst=iburst,
            minpoll=minpoll,
            maxpoll=maxpoll,
            nts=session,
        )

        def on_datagram(data: bytes, received_at: int) -> None:
            for event in self.client.receive(server, data, received_at):
                if isinstance(event, PacketDropped):
                    level = logging.INFO if event.reason is DropReason.NTS else logging.DEBUG
                    logger.log(level, "%s: dropped: %s", server, event.message)
                if self.on_event is not None:
                    self.on_event(event)
            self._wake.set()

        def on_sent(sent: int) -> None:
            self.client.transmitted(server, sent)

        transport = await _UdpSource.open(family, address, on_datagram, on_sent=on_sent)
        self._transports[server] = transport
        # Our address as this server sees it, for the loop check of the fitness test (A.5.5.2).
        local = transport.sock.getsockname()[0]
        self.client.associations[server].local_reference_id = reference_id_for_address(local)
        self._wake.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until cancelled or until ``stop`` is set."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                for action in self.client.handle_timer(clock.now()):
                    self._carry_out(action)
                await sleep_until_due(self.client, stop, self._wake)
        finally:
            self.close()

    def _carry_out(self, action: Transmit | KeyExchangeNeeded) -> None:
        if isinstance(action, Transmit):
            self._transports[action.source].send(action.data)
        elif action.source not in self._ke_tasks:
            self._ke_tasks[action.source] = asyncio.ensure_future(self._key_exchange_again(action.source))

    async def _key_exchange_again(self, server: str) -> None:
        """NTS-KE until it works (backoff 2, 4, ..., 1024 s), then hand the result to the core.

        The NTP server stays the one the first NTS-KE named."""
        failures = 0
        try:
            while True:
                try:
                    outcome = await nts_key_exchange(server, self.cafile, self.ke_timeout)
                    break
                except QueryFailed as error:
                    failures += 1
                    delay = min(2.0**failures, 1024.0)
                    logger.warning("%s: %s; retrying NTS-KE in %g s", server, error, delay)
                    await asyncio.sleep(delay)
            self.ke_count[server] = self.ke_count.get(server, 0) + 1
            logger.info("%s: new NTS-KE done, %d cookies", server, len(outcome.result.cookies))
            result = outcome.result
            self.client.rekey(server, outcome.c2s, outcome.s2c, result.cookies, result.aead, clock.now())
            self._wake.set()
        finally:
            self._ke_tasks.pop(server, None)

    def close(self) -> None:
        for task in list(self._ke_tasks.values()):
            task.cancel()
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
