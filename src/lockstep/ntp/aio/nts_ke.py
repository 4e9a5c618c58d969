"""NTS-KE over TLS 1.3 (RFC 8915 §4): the client call and the server, with pyOpenSSL.

Python's ``ssl`` module has no RFC 5705 exporter (CPython gh-82133), so TLS here is pyOpenSSL's
``OpenSSL.SSL``; ``Connection.export_keying_material`` gives the C2S and S2C keys (§5.1).
Both sides use non-blocking sockets driven by ``poll`` with one deadline per exchange: the
client runs on a worker thread (:func:`key_exchange` is ``async`` and uses
``asyncio.to_thread``); the server keeps accepted connections in a waiting room (one thread, one
selector) until their TLS ClientHello is in, then serves each on a bounded pool of threads. The
protocol logic is the pure :mod:`lockstep.ntp.nts.ke`; this module only moves bytes.

Server hardening: TLS 1.3 only; ALPN ``ntske/1`` required (a client that does not negotiate it
is disconnected, §4); a per-address rate limit (an IPv6 /64 is one address); no session slot
before a whole ClientHello, with a short deadline for it; a cap on sessions, overall and per
address; deadlines for the handshake and the whole session; a session that stalls before its
request is in gives its slot up to a waiting client; requests larger than 16 KiB refused;
nothing about keys or cookies logged.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import logging
import math
import os
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography import x509
from OpenSSL import SSL

from lockstep.ntp.aio import clock
from lockstep.ntp.errors import NtpError
from lockstep.ntp.limit_key import limit_key
from lockstep.ntp.nts.cookies import CookieKeys
from lockstep.ntp.nts.fields import KEY_LENGTH
from lockstep.ntp.nts.ke import (
    C2S,
    S2C,
    KeAccepted,
    KeClient,
    KeFailed,
    KeResult,
    KeServerSession,
    exporter_context,
)
from lockstep.ntp.nts.records import ALPN, EXPORTER_LABEL, KE_PORT, NextProtocol

logger = logging.getLogger(__name__)

T = TypeVar("T")


class NtsKeError(NtpError):
    """NTS-KE failed: connection, TLS, certificate or protocol; the message says which."""


@dataclass(frozen=True, slots=True)
class KeOutcome:
    """Keys and cookies from one NTS-KE, and where to send NTP (§4.1.7, §4.1.8)."""

    result: KeResult
    c2s: bytes
    s2c: bytes
    ntp_host: str
    ntp_port: int

    def __repr__(self) -> str:  # never print keys
        return f"KeOutcome({self.result!r}, ntp={self.ntp_host}:{self.ntp_port})"


def _wait(sock: socket.socket, for_write: bool, deadline: float) -> None:
    """Wait until ``sock`` is ready, or raise TimeoutError at ``deadline`` (monotonic).

    ``poll``, not ``select``: a busy server's descriptors can be numbered past FD_SETSIZE."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("NTS-KE timed out")
    poller = select.poll()
    poller.register(sock, select.POLLOUT if for_write else select.POLLIN)
    if not poller.poll(math.ceil(remaining * 1000)):
        raise TimeoutError("NTS-KE timed out")


def _retry(sock: socket.socket, operation: Callable[[], T], deadline: float) -> T:
    while True:
        try:
            return operation()
        except SSL.WantReadError:
            _wait(sock, False, deadline)
        except SSL.WantWriteError:
            _wait(sock, True, deadline)


def _send_all(conn: SSL.Connection, sock: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        chunk = bytes(view[:16384])
        sent = _retry(sock, lambda chunk=chunk: conn.send(chunk), deadline)  # type: ignore[misc]
        view = view[sent:]


def _export(conn: SSL.Connection, aead: int) -> tuple[bytes, bytes]:
    """The two keys of §5.1 from the TLS exporter (RFC 5705)."""
    c2s = conn.export_keying_material(
        EXPORTER_LABEL, KEY_LENGTH, exporter_context(NextProtocol.NTPV4, aead, C2S)
    )
    s2c = conn.export_keying_material(
        EXPORTER_LABEL, KEY_LENGTH, exporter_context(NextProtocol.NTPV4, aead, S2C)
    )
    return c2s, s2c


# -- client -----------------------------------------------------------------------------------------


def _hostname_matches(certificate: x509.Certificate, host: str) -> bool:
    """RFC 6125 style check of a server certificate against the name we connected to."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return address in names.get_values_for_type(x509.IPAddress)
    host = host.rstrip(".").lower()
    for pattern in names.get_values_for_type(x509.DNSName):
        pattern = pattern.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host and host.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def client_context(cafile: str | None = None) -> SSL.Context:
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.set_verify(SSL.VERIFY_PEER)
    if cafile is not None:
        context.load_verify_locations(cafile)
    else:
        context.set_default_verify_paths()
    return context


def key_exchange_blocking(
    host: str,
    port: int = KE_PORT,
    *,
    cafile: str | None = None,
    timeout: float = 5.0,
    alpn: bytes = ALPN,
    source: str | None = None,
) -> KeOutcome:
    """One NTS-KE with ``host`` (from the local address ``source``, when given); raise
    :class:`NtsKeError` with the reason."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=None if source is None else (source, 0)
        )
    except OSError as error:
        raise NtsKeError(
            f"cannot connect to NTS-KE server {host} port {port}: {error.strerror or error}"
        ) from None
    sock.setblocking(False)
    conn = SSL.Connection(client_context(cafile), sock)
    conn.set_alpn_protos([alpn])
    if not _is_address(host):
        conn.set_tlsext_host_name(host.encode("idna"))  # SNI only for names (RFC 6066 §3)
    conn.set_connect_state()
    ke = KeClient()
    try:
        try:
            _retry(sock, conn.do_handshake, deadline)
        except SSL.Error as error:
            raise NtsKeError(f"TLS handshake with {host} port {port} failed: {_ssl_reason(error)}") from None
        certificate = conn.get_peer_certificate()
        if certificate is None or not _hostname_matches(certificate.to_cryptography(), host):
            raise NtsKeError(f"the certificate of {host} port {port} is not valid for {host}")
        if conn.get_alpn_proto_negotiated() != ALPN:
            raise NtsKeError(f"{host} port {port} did not negotiate ALPN ntske/1")
        _send_all(conn, sock, ke.request(), deadline)
        result: KeResult | None = None
        while result is None:
            try:
                data = _retry(sock, lambda: conn.recv(16384), deadline)
            except (SSL.ZeroReturnError, SSL.SysCallError):
                ke.connection_closed()
                raise
            if not data:
                ke.connection_closed()
            result = ke.receive_data(data)
        c2s, s2c = _export(conn, result.aead)
        with contextlib.suppress(SSL.Error, OSError):
            conn.shutdown()
    except KeFailed as error:
        raise NtsKeError(f"NTS-KE with {host} port {port} failed: {error}") from None
    except TimeoutError:
        raise NtsKeError(f"NTS-KE with {host} port {port} timed out after {timeout:g} s") from None
    except SSL.Error as error:
        raise NtsKeError(f"NTS-KE with {host} port {port} failed: {_ssl_reason(error)}") from None
    except OSError as error:
        raise NtsKeError(f"NTS-KE with {host} port {port} failed: {error.strerror or error}") from None
    finally:
        sock.close()
    return KeOutcome(result, c2s, s2c, result.server or host, 123 if result.port is None else result.port)


async def key_exchange(
    host: str, port: int = KE_PORT, *, cafile: str | None = None, timeout: float = 5.0
) -> KeOutcome:
    import asyncio

    return await asyncio.to_thread(key_exchange_blocking, host, port, cafile=cafile, timeout=timeout)


def _ssl_reason(error: Exception) -> str:
    if isinstance(error, SSL.Error) and error.args and isinstance(error.args[0], list) and error.args[0]:
        return "; ".join(str(item[-1]) for item in error.args[0])
    return str(error) or type(error).__name__


# -- server -----------------------------------------------------------------------------------------


def load_or_create_secret(path: str, length: int = 32) -> bytes:
    """The cookie master secret kept in ``path`` (RFC 8915 §6 keys derive from it).

    A missing file is created with ``length`` random bytes, readable by its owner only; an
    existing one must hold at least 32 bytes and must not be readable by group or others.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise ValueError("the secret file is readable by group or others (chmod 600 it)") from None
        with open(path, "rb") as handle:
            secret = handle.read()
        if len(secret) < 32:
            raise ValueError(f"the secret file holds {len(secret)} bytes, not at least 32") from None
        return secret
    secret = os.urandom(length)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret


@dataclass(slots=True)
class KeRateLimit:
    """Per-address limits on NTS-KE connections (``lockstep ntp serve`` uses the defaults); an
    IPv6 /64 counts as one address (:func:`lockstep.ntp.limit_key.limit_key`).

    A token bucket per address admits connections (``per_second``, ``burst``; ``max_clients``
    bounds the table). At most ``max_sessions`` sessions run at once, at most
    ``max_sessions_per_address`` of them for one address, and at most ``max_queued_per_address``
    connections of one address wait for their ClientHello or for a slot.
    """

    per_second: float = 1.0
    burst: int = 8
    max_sessions: int = 32
    max_sessions_per_address: int = 4
    max_queued_per_address: int = 8
    max_clients: int = 10_000


#: Connections waiting for their ClientHello or for a slot, all addresses together; when full,
#: the one that has waited longest is dropped (a genuine client's ClientHello came long before).
MAX_QUEUED = 256
_TLS_RECORD_HEADER = 5  # content type, legacy version (2), length (2): RFC 8446 §5.1
_MAX_TLS_RECORD = 1 << 14  # 2^14 bytes of plaintext at most (RFC 8446 §5.1)
_TLS_HANDSHAKE = 0x16  # record content type "handshake"
_CLIENT_HELLO = 0x01  # handshake message type (RFC 8446 §4)
#: How long an address whose session stalled stays behind the others in the queue for slots.
STALL_MEMORY = 60.0
PREEMPTED = "stalled while others waited for a slot"
_HANDSHAKE_TIMED_OUT = "TLS handshake timed out"


@dataclass(slots=True)
class KeServerCounters:
    served: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


def server_context(certfile: str, keyfile: str) -> SSL.Context:
    """TLS 1.3 only; ALPN ``ntske/1`` selected when offered (checked again after the handshake)."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.use_certificate_chain_file(certfile)
    context.use_privatekey_file(keyfile)
    context.check_privatekey()

    def select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes:
        return ALPN if ALPN in offered else SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]

    context.set_alpn_select_callback(select_alpn)
    return context


def first_record_length(data: bytes) -> int | str:
    """From the first bytes of a connection (at least one): how many bytes its first TLS record
    takes (header included), or why it is not a ClientHello. Six bytes suffice to judge; with
    fewer, the answer is 6 (look again when there are six)."""
    if data[0] != _TLS_HANDSHAKE or (len(data) > 1 and data[1] != 3):
        return "not a TLS handshake"
    if len(data) <= _TLS_RECORD_HEADER:
        return _TLS_RECORD_HEADER + 1
    length = int.from_bytes(data[3:5], "big")
    if not 0 < length <= _MAX_TLS_RECORD or data[5] != _CLIENT_HELLO:
        return "not a TLS ClientHello"
    return _TLS_RECORD_HEADER + length


@dataclass(slots=True)
class _Queued:
    """An accepted connection in the waiting room."""

    sock: socket.socket
    peer: str  # the limit key of its address: the address, or an IPv6 address's /64
    deadline: float  # monotonic: its ClientHello, then its slot, must come by then
    needed: int = _TLS_RECORD_HEADER + 1  # bytes to wait for (SO_RCVLOWAT) before looking again


class NtsKeServer:
    """An NTS-KE server on a TCP socket, handing out cookies for our NTP service.

    Accepted connections wait in a waiting room (one thread, one selector) until their first
    TLS record, the ClientHello, has fully arrived; only then do they take one of the session
    slots served by the thread pool, at most ``max_sessions_per_address`` per address, the
    address with the fewest sessions first. A connection without a whole ClientHello (or a free
    slot) within ``hello_timeout`` seconds is closed, and so is a session whose TLS handshake
    has not finished ``hello_timeout`` seconds after it started. So peers that connect and send
    nothing, or dribble, never hold a slot. A peer that sends a ClientHello and stalls holds one
    only briefly: while all slots are taken and a connection from an address with no recent
    stall waits, the session that has gone longest without its request, if that is more than
    ``preempt_after`` seconds (a genuine client needs one round trip), is closed to make room;
    an address whose session stalled (preempted or timed out) waits behind the others for
    :data:`STALL_MEMORY` seconds. Legitimate clients are served while such floods go on. The
    kernel wakes the selector only once the bytes it waits for are there (``SO_RCVLOWAT``), so a
    slow sender costs nothing until then.
    """

    def __init__(
        self,
        context: SSL.Context,
        cookie_keys: CookieKeys,
        *,
        host: str = "127.0.0.1",
        port: int = KE_PORT,
        ntp_server: str | None = None,
        ntp_port: int | None = None,
        rate_limit: KeRateLimit | None = None,
        timeout: float = 5.0,
        hello_timeout: float = 2.0,
        preempt_after: float = 0.5,
    ) -> None:
        self.context = context
        self.cookie_keys = cookie_keys
        self.ntp_server = ntp_server
        self.ntp_port = ntp_port
        self.rate_limit = rate_limit
        self.timeout = timeout
        self.hello_timeout = hello_timeout
        self.preempt_after = preempt_after
        self.counters = KeServerCounters()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
            self.sock.listen(128)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.max_sessions = rate_limit.max_sessions if rate_limit else 32
        self._pool = ThreadPoolExecutor(max_workers=self.max_sessions, thread_name_prefix="nts-ke")
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()  # guards counters and _sessions (pool threads write them)
        self._sessions: dict[str, int] = {}  # sessions holding a slot, by address
        # Sessions whose request is not in yet, oldest first (when they took their slot), those
        # of them closed to make room, and when each address last stalled (oldest first).
        self._unanswered: dict[socket.socket, float] = {}
        self._preempted: set[socket.socket] = set()
        self._stalled: dict[str, float] = {}
        # The waiting room, touched by its own thread only: connections waiting for their
        # ClientHello (oldest first), those waiting for a slot, and how many of each address.
        self._waiting: dict[socket.socket, _Queued] = {}
        self._ready: list[_Queued] = []
        self._queued: dict[str, int] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def sessions(self) -> int:
        """Sessions holding a slot now."""
        with self._lock:
            return sum(self._sessions.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._waiting_room, name="nts-ke-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        else:
            self._selector.close()
        self.sock.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._wake_reader.close()
        self._wake_writer.close()

    def _refuse(self, reason: str) -> None:
        with self._lock:
            self.counters.refuse(reason)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (so a wake-up is pending anyway) or closed
            self._wake_writer.send(b"\0")

    def _admit(self, address: str) -> bool:
        limit = self.rate_limit
        if limit is None:
            return True
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(address, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - last) * limit.per_second)
            if len(self._buckets) >= limit.max_clients:
                del self._buckets[next(iter(self._buckets))]
            admitted = tokens >= 1.0
            self._buckets[address] = (tokens - 1.0 if admitted else tokens, now)
        return admitted

    # -- the waiting room (its own thread) -----------------------------------------------------

    def _waiting_room(self) -> None:
        selector = self._selector
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self._wake_reader, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                oldest = next(iter(self._waiting.values()), None)
                deadline = min([queued.deadline for queued in self._ready], default=math.inf)
                if oldest is not None:
                    deadline = min(deadline, oldest.deadline)
                if self._ready:  # when the next unanswered session may have to make room
                    deadline = min(deadline, self._next_preemptible(time.monotonic()))
                timeout = min(0.2, deadline - time.monotonic())
                for key, _ in selector.select(max(0.0, timeout)):
                    if key.fileobj is self.sock:
                        self._accept_all()
                    elif key.fileobj is self._wake_reader:
                        with contextlib.suppress(OSError):
                            self._wake_reader.recv(4096)
                    else:
                        queued = self._waiting.get(key.fileobj)  # type: ignore[call-overload]
                        if queued is not None:  # else dropped earlier in this round
                            self._look(queued)
                self._expire(time.monotonic())
                self._dispatch()
        finally:
            for queued in [*self._waiting.values(), *self._ready]:
                queued.sock.close()
            self._waiting.clear()
            self._ready.clear()
            selector.close()

    def _accept_all(self) -> None:
        per_address = self.rate_limit.max_queued_per_address if self.rate_limit else MAX_QUEUED
        for _ in range(128):  # the listen backlog; then let the loop look at the others
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE) and self._waiting:
                    # Out of descriptors: the connection that has waited longest gives its up.
                    self._drop(next(iter(self._waiting.values())), "out of file descriptors")
                return  # the next round tries again
            peer = limit_key(address[0])
            if not self._admit(peer):
                self._refuse("rate limited")
                sock.close()
                continue
            if self._queued.get(peer, 0) >= per_address:
                self._refuse("too many connections waiting from this address")
                sock.close()
                continue
            if len(self._waiting) + len(self._ready) >= MAX_QUEUED:
                self._drop(self._first_to_drop(), "waiting room full")
            sock.setblocking(False)
            queued = _Queued(sock, peer, time.monotonic() + self.hello_timeout)
            self._set_lowat(queued.sock, queued.needed)
            self._waiting[sock] = queued
            self._queued[peer] = self._queued.get(peer, 0) + 1
            self._selector.register(sock, selectors.EVENT_READ)

    def _first_to_drop(self) -> _Queued:
        """Who leaves a full waiting room: the connection from an address with a recent stall
        that has waited longest for a slot, else the one that has waited longest for its
        ClientHello (a genuine client's came long before), else the oldest waiting for a slot."""
        now = time.monotonic()
        with self._lock:
            stalled = [queued for queued in self._ready if self._stalled_since(queued.peer, now)]
        return stalled[0] if stalled else next(iter(self._waiting.values()), None) or self._ready[0]

    @staticmethod
    def _set_lowat(sock: socket.socket, count: int) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, count)

    def _leave(self, queued: _Queued) -> None:
        """Take ``queued`` out of the waiting room (its socket stays open)."""
        if self._waiting.pop(queued.sock, None) is not None:
            self._selector.unregister(queued.sock)
        else:
            self._ready.remove(queued)
        left = self._queued[queued.peer] - 1
        if left:
            self._queued[queued.peer] = left
        else:
            del self._queued[queued.peer]

    def _drop(self, queued: _Queued, reason: str) -> None:
        self._leave(queued)
        self._refuse(reason)  # counted before the peer can see the close
        queued.sock.close()

    def _look(self, queued: _Queued) -> None:
        """Judge what a waiting connection has sent so far, without consuming it."""
        try:
            data = queued.sock.recv(_TLS_RECORD_HEADER + _MAX_TLS_RECORD, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if len(data) < queued.needed:
            # SO_RCVLOWAT is what we wait for: only an end of stream or an error wakes us early.
            self._drop(queued, "closed before sending a ClientHello")
            return
        needed = first_record_length(data)
        if isinstance(needed, str):
            self._drop(queued, needed)
        elif len(data) < needed:
            queued.needed = needed
            self._set_lowat(queued.sock, needed)
        else:
            del self._waiting[queued.sock]
            self._selector.unregister(queued.sock)
            self._ready.append(queued)

    def _expire(self, now: float) -> None:
        while self._waiting and (oldest := next(iter(self._waiting.values()))).deadline <= now:
            self._drop(oldest, f"no ClientHello within {self.hello_timeout:g} s")
        for queued in [queued for queued in self._ready if queued.deadline <= now]:
            self._drop(queued, "no free session slot")

    def _dispatch(self) -> None:
        """Give free slots to connections whose ClientHello is in: first to addresses without a
        recent stall, then to the one whose address has the fewest sessions (the oldest among
        equals), never past the per-address cap. When every slot is taken, make room for those
        without a recent stall (:meth:`_preempt`)."""
        per_address = self.rate_limit.max_sessions_per_address if self.rate_limit else self.max_sessions
        while self._ready:
            now = time.monotonic()
            with self._lock:
                candidates = [
                    (self._stalled_since(q.peer, now), load, i)
                    for i, q in enumerate(self._ready)
                    if (load := self._sessions.get(q.peer, 0)) < per_address
                ]
                if not candidates:
                    return
                if sum(self._sessions.values()) >= self.max_sessions:
                    self._preempt(sum(not stalled for stalled, _, _ in candidates), now)
                    return
                _, load, chosen = min(candidates)
                queued = self._ready[chosen]
                self._sessions[queued.peer] = load + 1
                self._unanswered[queued.sock] = now
            self._leave(queued)
            self._set_lowat(queued.sock, 1)
            try:
                future = self._pool.submit(self._session_guarded, queued.sock, queued.peer)
            except RuntimeError:  # shutting down
                self._abandon(queued)
            else:
                # close() cancels sessions that have not started: their sockets close here.
                future.add_done_callback(functools.partial(self._abandon_cancelled, queued))

    def _stalled_since(self, peer: str, now: float) -> bool:
        """Whether a session of ``peer`` stalled in the last :data:`STALL_MEMORY` seconds."""
        return now - self._stalled.get(peer, -math.inf) < STALL_MEMORY

    def _preempt(self, waiting: int, now: float) -> None:
        """With ``waiting`` connections of addresses without a recent stall waiting for a slot,
        close as many sessions that have waited more than ``preempt_after`` seconds for their
        request, oldest first (call with the lock held). Their threads see the connection end,
        the slots come free, and :meth:`_dispatch` runs again on the wake-up."""
        waiting -= len(self._preempted)  # slots about to come free already
        cutoff = now - self.preempt_after
        for sock, started in self._unanswered.items():
            if waiting <= 0 or started > cutoff:
                return
            if sock not in self._preempted:
                self._preempted.add(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                waiting -= 1

    def _next_preemptible(self, now: float) -> float:
        """When the next session becomes old enough for :meth:`_preempt` (monotonic), or inf."""
        with self._lock:
            starts = (started for started in self._unanswered.values() if started + self.preempt_after > now)
            return next(starts, math.inf) + self.preempt_after

    def _answered(self, sock: socket.socket) -> bool:
        """A session's request is in (or it ended): it can no longer be preempted. Whether it
        was preempted before that."""
        with self._lock:
            self._unanswered.pop(sock, None)
            if sock in self._preempted:
                self._preempted.discard(sock)
                return True
            return False

    def _record_stall(self, peer: str) -> None:
        limit = self.rate_limit.max_clients if self.rate_limit else MAX_QUEUED
        with self._lock:
            self._stalled.pop(peer, None)
            if len(self._stalled) >= limit:
                del self._stalled[next(iter(self._stalled))]
            self._stalled[peer] = time.monotonic()

    def _abandon_cancelled(self, queued: _Queued, future: Future[None]) -> None:
        if future.cancelled():
            self._abandon(queued)

    def _abandon(self, queued: _Queued) -> None:
        """A connection given a slot whose session will not run (the server is closing)."""
        self._answered(queued.sock)
        self._release(queued.peer)
        queued.sock.close()

    # -- sessions (pool threads) ---------------------------------------------------------------

    def _release(self, peer: str) -> None:
        with self._lock:
            left = self._sessions[peer] - 1
            if left:
                self._sessions[peer] = left
            else:
                del self._sessions[peer]

    def _session_guarded(self, sock: socket.socket, peer: str) -> None:
        try:
            try:
                reason = self._session(sock)
            except Exception:  # a bug must not take the server down: log it and go on
                logger.exception("NTS-KE session with %s failed", peer)
                reason = "internal error"
            if self._answered(sock):  # whatever its own end said, it was cut to make room
                reason = PREEMPTED
            if reason in (PREEMPTED, _HANDSHAKE_TIMED_OUT):
                self._record_stall(peer)
            if reason is None:  # counted before the peer can see the close
                with self._lock:
                    self.counters.served += 1
            else:
                self._refuse(reason)
                logger.info("NTS-KE with %s refused: %s", peer, reason)
        finally:
            sock.close()
            self._release(peer)
            self._wake()  # a slot is free: the waiting room may start the next session

    def _session(self, sock: socket.socket) -> str | None:
        """Serve one connection; return None when cookies were handed out, else the reason."""
        started = time.monotonic()
        deadline = started + self.timeout
        sock.setblocking(False)
        conn = SSL.Connection(self.context, sock)
        conn.set_accept_state()
        try:
            # The ClientHello is in: a genuine client finishes the handshake within a round trip.
            _retry(sock, conn.do_handshake, min(deadline, started + self.hello_timeout))
        except SSL.Error as error:
            return f"TLS handshake failed: {_ssl_reason(error)}"
        except TimeoutError:
            return _HANDSHAKE_TIMED_OUT
        except OSError as error:
            return f"connection error: {error}"
        if conn.get_alpn_proto_negotiated() != ALPN:
            with contextlib.suppress(SSL.Error, OSError):
                conn.shutdown()
            return "client did not negotiate ALPN ntske/1"
        session = KeServerSession(self.cookie_keys, ntp_server=self.ntp_server, ntp_port=self.ntp_port)
        try:
            outcome = None
            while outcome is None:
                try:
                    data = _retry(sock, lambda: conn.recv(16384), deadline)
                except (SSL.ZeroReturnError, SSL.SysCallError):
                    return session.connection_closed()
                if not data:
                    return session.connection_closed()
                outcome = session.receive_data(data)
            if self._answered(sock):
                return PREEMPTED
            if isinstance(outcome, KeAccepted):
                c2s, s2c = _export(conn, outcome.aead)
                _send_all(conn, sock, session.respond(c2s, s2c, clock.now()), deadline)
                reason = None
            else:
                _send_all(conn, sock, outcome.response, deadline)
                reason = outcome.reason
            with contextlib.suppress(SSL.Error, OSError):
                conn.shutdown()
            return reason
        except TimeoutError:
            return "session timed out"
        except SSL.Error as error:
            return f"TLS error: {_ssl_reason(error)}"
        except OSError as error:
            return f"connection error: {error}"
