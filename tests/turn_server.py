"""A throwaway coturn for tests: Debian's ``turnserver`` on a free loopback UDP port, with a shared secret
(``use-auth-secret``, the scheme ``lockstep serve --turn-secret`` hands credentials out in), relaying only
between loopback addresses. Nothing listens beyond 127.0.0.1; no TCP, no TLS, no CLI, no database
of its own."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lockstep.calls.turn import TurnServer

TURNSERVER = "/usr/bin/turnserver"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stun_binding_answered(port: int, timeout: float = 0.2) -> bool:
    """Send one STUN Binding request (RFC 8489 §5: type 0x0001, magic cookie) and wait for any answer."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(timeout)
        probe.sendto(request, ("127.0.0.1", port))
        try:
            answer = probe.recv(2048)
        except OSError:
            return False
    return answer[:2] == b"\x01\x01" and answer[8:20] == request[8:20]


@dataclass
class Coturn:
    port: int
    secret: str
    folder: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def secret_file(self) -> Path:
        return self.folder / "turn-secret"

    def server(self) -> TurnServer:
        return TurnServer(self.url, self.secret.encode())

    def log(self) -> str:
        return (self.folder / "turn.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop the relay: every allocation (and so every relayed media path) is gone."""
        _stop(self.process)

    def start(self) -> None:
        """Start it again on the same port with the same secret (credentials handed out stay valid)."""
        self.process = _start(self.port, self.folder)


def config(port: int, secret: str, folder: Path) -> str:
    return "\n".join(
        [
            "listening-ip=127.0.0.1",
            f"listening-port={port}",
            "relay-ip=127.0.0.1",
            "allow-loopback-peers",  # the tests' peers are on 127.0.0.1; a real deployment must not allow it
            "use-auth-secret",
            f"static-auth-secret={secret}",
            "realm=lockstep.test",
            "fingerprint",
            # UDP only, as every test's TURN URL says: a TCP listener on the same port number could find it
            # taken by some other process's outgoing connection, and coturn then retries for ever.
            "no-tcp",
            "no-tls",
            "no-dtls",
            "no-cli",
            "no-software-attribute",
            "no-multicast-peers",
            f"userdb={folder / 'turndb'}",
            f"pidfile={folder / 'turn.pid'}",
            f"log-file={folder / 'turn.log'}",
            "simple-log",
            "",
        ]
    )


def _start(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """Debian's turnserver with ``folder``'s configuration, once it answers a STUN Binding request."""
    process = subprocess.Popen(
        [TURNSERVER, "-c", str(folder / "turnserver.conf"), "--no-stdout-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not stun_binding_answered(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            log = folder / "turn.log"
            raise RuntimeError(f"coturn did not start: {log.read_text() if log.exists() else ''}")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def coturn() -> Iterator[Coturn]:
    folder = Path(tempfile.mkdtemp(prefix="lockstep-coturn-"))
    port, secret = free_udp_port(), secrets.token_urlsafe(24)
    (folder / "turnserver.conf").write_text(config(port, secret, folder))
    (folder / "turn-secret").write_text(secret + "\n")
    server = Coturn(port, secret, folder, _start(port, folder))
    try:
        yield server
    finally:
        _stop(server.process)
        shutil.rmtree(folder, ignore_errors=True)
