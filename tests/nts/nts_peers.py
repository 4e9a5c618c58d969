"""Helpers for the NTS tests: certificates, chronyd with NTS, our NTS server in threads."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lockstep.ntp.aio import clock
from lockstep.ntp.aio.nts_ke import KeRateLimit, NtsKeServer, server_context
from lockstep.ntp.aio.server import UdpServer, open_udp_socket
from lockstep.ntp.nts.cookies import CookieKeys
from lockstep.ntp.nts.server import NtsServer
from lockstep.ntp.server import NtpServer, RateLimit, ServerState


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def make_certificate(directory: Path, name: str = "localhost", days: int = 2) -> Certificate:
    """A self-signed EC certificate for ``name``, 127.0.0.1 and ::1."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(name),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(directory / f"{name}.crt", directory / f"{name}.key")
    paths.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@dataclass
class OurNtsServer:
    core: NtpServer
    ke: NtsKeServer
    ntp_port: int
    ke_port: int


@contextlib.contextmanager
def our_nts_server(
    certificate: Certificate,
    *,
    cookie_keys: CookieKeys | None = None,
    stratum: int = 5,
    rate_limit: RateLimit | None = None,
    ke_rate_limit: KeRateLimit | None = None,
    ntp_port: int = 0,
    ke_port: int = 0,
    advertised_ntp_port: int | None = None,
    ke_hello_timeout: float = 2.0,
) -> Iterator[OurNtsServer]:
    """Our NTP server (blocking recvmmsg thread) with NTS, and our NTS-KE server, on loopback."""
    keys = cookie_keys or CookieKeys(__import__("os").urandom(32))
    core = NtpServer(ServerState.local(stratum, clock.now()), rate_limit=rate_limit, nts=NtsServer(keys))
    udp = UdpServer(core, open_udp_socket("127.0.0.1", ntp_port))
    thread, stop = udp.start_thread()
    port = udp.address[1]
    ke = NtsKeServer(
        server_context(str(certificate.cert), str(certificate.key)),
        keys,
        port=ke_port,
        ntp_port=advertised_ntp_port or port,
        rate_limit=ke_rate_limit,
        hello_timeout=ke_hello_timeout,
    )
    ke.start()
    try:
        yield OurNtsServer(core, ke, port, ke.address[1])
    finally:
        ke.close()
        stop.set()
        thread.join(5)
        udp.close()


class UdpProxy:
    """A loopback UDP relay that lets a test rewrite, drop or replay the server's replies."""

    def __init__(self, target_port: int, transform: Callable[[bytes], bytes | None]) -> None:
        self.target_port = target_port
        self.transform = transform
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UdpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        upstream.settimeout(1.0)
        with upstream:
            while not self._stop.is_set():
                try:
                    data, client = self.sock.recvfrom(4096)
                except TimeoutError:
                    continue
                upstream.sendto(data, ("127.0.0.1", self.target_port))
                try:
                    reply = upstream.recv(4096)
                except TimeoutError:
                    continue
                changed = self.transform(reply)
                if changed is not None:
                    self.sock.sendto(changed, client)


def udp_exchange(port: int, request: bytes, timeout: float = 2.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(request, ("127.0.0.1", port))
        return sock.recv(4096)
