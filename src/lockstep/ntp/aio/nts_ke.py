"""NTS-KE over TLS 1.3 (RFC 8915 §4): the client call and the server, with pyOpenSSL.

Python's ``ssl`` module has no RFC 5705 exporter (CPython gh-82133), so TLS here is pyOpenSSL's
``OpenSSL.SSL``; ``Connection.export_keying_material`` gives the C2S and S2C keys (§5.1).
Both sides use blocking sockets driven by ``select`` with one deadline per exchange: the client
runs on a worker thread (:func:`key_exchange` is ``async`` and uses ``asyncio.to_thread``), the
server accepts on one thread and serves each connection on a bounded pool of threads. The
protocol logic is the pure :mod:`lockstep.ntp.nts.ke`; this module only moves bytes.

Server hardening: TLS 1.3 only; ALPN ``ntske/1`` required (a client that does not negotiate it
is disconnected, §4); a per-address rate limit and a cap on concurrent sessions; a deadline for
the whole session; requests larger than 16 KiB refused; nothing about keys or cookies is logged.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography import x509
from OpenSSL import SSL

from lockstep.ntp.aio import clock
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


class NtsKeError(Exception):
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
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("NTS-KE timed out")
    readable, writable, _ = select.select(
        [] if for_write else [sock], [sock] if for_write else [], [], remaining
    )
    if not readable and not writable:
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
) -> KeOutcome:
    """One NTS-KE with ``host``; raise :class:`NtsKeError` with the reason."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
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
    """Per-address token bucket for NTS-KE connections, plus a cap on sessions in progress."""

    per_second: float = 1.0
    burst: int = 8
    max_sessions: int = 32
    max_clients: int = 10_000


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


class NtsKeServer:
    """An NTS-KE server on a TCP socket, handing out cookies for our NTP service."""

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
    ) -> None:
        self.context = context
        self.cookie_keys = cookie_keys
        self.ntp_server = ntp_server
        self.ntp_port = ntp_port
        self.rate_limit = rate_limit
        self.timeout = timeout
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
        self.sock.settimeout(0.2)
        max_sessions = rate_limit.max_sessions if rate_limit else 32
        self._pool = ThreadPoolExecutor(max_workers=max_sessions, thread_name_prefix="nts-ke")
        self._slots = threading.BoundedSemaphore(max_sessions)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="nts-ke-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

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

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, address = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if not self._admit(address[0]):
                self.counters.refuse("rate limited")
                sock.close()
                continue
            if not self._slots.acquire(blocking=False):
                self.counters.refuse("too many sessions")
                sock.close()
                continue
            try:
                self._pool.submit(self._session_guarded, sock, address[0])
            except RuntimeError:  # shutting down
                self._slots.release()
                sock.close()

    def _session_guarded(self, sock: socket.socket, peer: str) -> None:
        try:
            reason = self._session(sock)
        except Exception:  # a bug must not take the server down: log it and go on
            logger.exception("NTS-KE session with %s failed", peer)
            reason = "internal error"
        finally:
            sock.close()
            self._slots.release()
        if reason is None:
            self.counters.served += 1
        else:
            self.counters.refuse(reason)
            logger.info("NTS-KE with %s refused: %s", peer, reason)

    def _session(self, sock: socket.socket) -> str | None:
        """Serve one connection; return None when cookies were handed out, else the reason."""
        deadline = time.monotonic() + self.timeout
        sock.setblocking(False)
        conn = SSL.Connection(self.context, sock)
        conn.set_accept_state()
        try:
            _retry(sock, conn.do_handshake, deadline)
        except SSL.Error as error:
            return f"TLS handshake failed: {_ssl_reason(error)}"
        except TimeoutError:
            return "TLS handshake timed out"
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
