"""NTS-protected NTP clients (RFC 8915): a one-shot :func:`nts_query` and :class:`NtsMonitor`.

Both run NTS-KE (:mod:`lockstep.ntp.aio.nts_ke`) first, then poll the NTP server it named with
an :class:`~lockstep.ntp.association.Association` holding an
:class:`~lockstep.ntp.nts.client.NtsClientSession`, so every request carries a cookie and a
fresh unique identifier and only authenticated replies count. :class:`NtsMonitor` runs NTS-KE
again whenever a source's cookies run out or the server answers NTSN (§5.7), with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from lockstep.ntp.aio import clock
from lockstep.ntp.aio.client import (
    QueryFailed,
    QueryResult,
    kiss_code,
    query_result,
    resolve,
    sleep_until_due,
    split_host_port,
)
from lockstep.ntp.aio.nts_ke import KeOutcome, NtsKeError, key_exchange
from lockstep.ntp.association import Association
from lockstep.ntp.client import NtpClient, SystemEvent
from lockstep.ntp.events import KissReceived, PacketDropped, SampleAccepted, SourceDemobilized
from lockstep.ntp.nts.client import NtsClientSession
from lockstep.ntp.nts.records import KE_PORT
from lockstep.ntp.wire import reference_id_for_address

logger = logging.getLogger(__name__)


class _Endpoint(asyncio.DatagramProtocol):
    """A connected UDP socket on an ephemeral port (RFC 9109 §3); T4 is read on arrival."""

    def __init__(
        self, on_datagram: Callable[[bytes], None], on_error: Callable[[Exception], None] | None
    ) -> None:
        self.on_datagram = on_datagram
        self.on_error = on_error

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        if self.on_error is not None:
            self.on_error(exc)


async def _connect(
    family: int,
    address: tuple[str, int],
    on_datagram: Callable[[bytes], None],
    on_error: Callable[[Exception], None] | None = None,
) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Endpoint(on_datagram, on_error), remote_addr=address, family=family
    )
    return transport


def _session(outcome: KeOutcome) -> NtsClientSession:
    return NtsClientSession(outcome.c2s, outcome.s2c, outcome.result.cookies, aead=outcome.result.aead)


async def nts_query(
    server: str, *, cafile: str | None = None, timeout: float = 5.0, ke_timeout: float = 5.0
) -> QueryResult:
    """NTS-KE with ``server`` (HOST[:KE_PORT]), then one authenticated exchange; raise QueryFailed.

    A reply that fails an NTS check is dropped and the wait goes on (a forger must not be able
    to end the query); if no authentic reply arrives, the error names the last refusal.
    """
    host, ke_port = split_host_port(server, KE_PORT)
    try:
        outcome = await key_exchange(host, ke_port, cafile=cafile, timeout=ke_timeout)
    except NtsKeError as error:
        raise QueryFailed(str(error)) from None
    family, address = await resolve(outcome.ntp_host, outcome.ntp_port)
    association = Association(server, now=clock.now(), iburst=False)
    association.nts = _session(outcome)
    done: asyncio.Future[SampleAccepted | KissReceived | SourceDemobilized | PacketDropped]
    done = asyncio.get_running_loop().create_future()
    refusals: list[str] = []

    def on_datagram(data: bytes) -> None:
        event = association.receive(data, clock.now())
        if done.done() or event is None:
            return
        if isinstance(event, PacketDropped) and (
            association.server is None or event.reason.startswith("NTS")
        ):
            refusals.append(event.reason)
            logger.info("%s: reply refused: %s", server, event.reason)
            return
        done.set_result(event)

    def on_error(error: Exception) -> None:
        if not done.done():
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            done.set_exception(QueryFailed(f"{server}: NTP port {address[1]}: {reason}"))

    transport = await _connect(family, address, on_datagram, on_error)
    try:
        request = association.poll_due(clock.now())
        assert request is not None
        transport.sendto(request)
        try:
            event = await asyncio.wait_for(done, timeout)
        except TimeoutError:
            why = f" (refused: {refusals[-1]})" if refusals else ""
            raise QueryFailed(f"no authentic reply from {server} within {timeout:g} s{why}") from None
    finally:
        transport.close()
    if isinstance(event, KissReceived | SourceDemobilized) and kiss_code(event) == "NTSN":
        raise QueryFailed(f"{server} sent NTS NAK (NTSN): it could not use our cookie")
    return query_result(server, address, association, event)


class NtsMonitor:
    """Runs an :class:`NtpClient` whose sources are NTS-KE servers; keeps cookies topped up.

    The same shape as :class:`lockstep.ntp.aio.client.Monitor` (``add_source``, ``run``,
    ``close``): timers come from the core, one connected socket per source.
    """

    def __init__(
        self,
        client: NtpClient,
        *,
        cafile: str | None = None,
        on_event: Callable[[SystemEvent], None] | None = None,
        ke_timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.on_event = on_event
        self.cafile = cafile
        self.ke_timeout = ke_timeout
        self._transports: dict[str, asyncio.DatagramTransport] = {}
        self._wake = asyncio.Event()
        self._ke_tasks: dict[str, asyncio.Task[None]] = {}
        self._ke_failures: dict[str, int] = {}
        self.ke_count: dict[str, int] = {}

    async def add_source(
        self, server: str, *, iburst: bool = True, minpoll: int = 6, maxpoll: int = 10
    ) -> None:
        """NTS-KE with ``server`` (HOST[:KE_PORT]), then poll the NTP server it names."""
        host, ke_port = split_host_port(server, KE_PORT)
        try:
            outcome = await key_exchange(host, ke_port, cafile=self.cafile, timeout=self.ke_timeout)
        except NtsKeError as error:
            raise QueryFailed(str(error)) from None
        self.ke_count[server] = 1
        family, address = await resolve(outcome.ntp_host, outcome.ntp_port)
        association = self.client.add_source(
            server,
            now=clock.now(),
            reference_id=reference_id_for_address(address[0]),
            iburst=iburst,
            minpoll=minpoll,
            maxpoll=maxpoll,
        )
        association.nts = _session(outcome)

        def on_datagram(data: bytes) -> None:
            for event in self.client.receive(server, data, clock.now()):
                if isinstance(event, PacketDropped):
                    logger.info("%s: dropped: %s", server, event.reason)
                if self.on_event is not None:
                    self.on_event(event)
            self._check_cookies(server)
            self._wake.set()

        self._transports[server] = await _connect(family, address, on_datagram)
        self._wake.set()

    def _check_cookies(self, server: str) -> None:
        association = self.client.associations[server]
        session = association.nts
        if session is None or not session.needs_ke or server in self._ke_tasks:
            return
        self._ke_tasks[server] = asyncio.ensure_future(self._rekey(server, association, session))

    async def _rekey(self, server: str, association: Association, session: NtsClientSession) -> None:
        host, ke_port = split_host_port(server, KE_PORT)
        try:
            while True:
                try:
                    outcome = await key_exchange(host, ke_port, cafile=self.cafile, timeout=self.ke_timeout)
                except NtsKeError as error:
                    failures = self._ke_failures[server] = self._ke_failures.get(server, 0) + 1
                    delay = min(2.0**failures, 1024.0)
                    logger.warning("%s: %s; retrying NTS-KE in %g s", server, error, delay)
                    await asyncio.sleep(delay)
                    continue
                break
            self._ke_failures.pop(server, None)
            self.ke_count[server] = self.ke_count.get(server, 0) + 1
            logger.info("%s: new NTS-KE done, %d cookies", server, len(outcome.result.cookies))
            session.rekey(outcome.c2s, outcome.s2c, outcome.result.cookies, outcome.result.aead)
            association.next_poll = clock.now()
            self._wake.set()
        finally:
            self._ke_tasks.pop(server, None)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until cancelled or until ``stop`` is set."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                for transmit in self.client.handle_timer(clock.now()):
                    self._transports[transmit.source].sendto(transmit.data)
                for server in list(self.client.associations):
                    self._check_cookies(server)  # polls skipped for lack of cookies send nothing
                await sleep_until_due(self.client, stop, self._wake)
        finally:
            self.close()

    def close(self) -> None:
        for task in list(self._ke_tasks.values()):
            task.cancel()
        for transport in self._transports.values():
            with contextlib.suppress(Exception):
                transport.close()
        self._transports.clear()
