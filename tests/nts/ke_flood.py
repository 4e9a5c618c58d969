"""Connection floods against an NTS-KE server, and legitimate clients measured under them.

Shared by ``tests/nts/test_ke_flood.py`` and ``bench/nts_ke_flood.py``. Every socket is bound
to a 127.0.0.x address, so one process plays many source addresses on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from OpenSSL import SSL

from lockstep.ntp.aio.nts_ke import NtsKeError, client_context, key_exchange_blocking
from lockstep.ntp.nts.records import ALPN


def loopback_addresses(first: int, count: int) -> list[str]:
    return [f"127.0.0.{first + i}" for i in range(count)]


def client_hello(cafile: str) -> bytes:
    """The first TLS record our NTS-KE client sends: a genuine ClientHello, made in memory."""
    conn = SSL.Connection(client_context(cafile), None)
    conn.set_alpn_protos([ALPN])
    conn.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):  # it waits for the ServerHello that never comes
        conn.do_handshake()
    return conn.bio_read(65536)


class Flood:
    """From each of ``addresses``, open a TCP connection every ``interval`` seconds, send
    ``payload`` (nothing by default) and then nothing more, and hold it for ``hold`` seconds."""

    def __init__(
        self,
        port: int,
        addresses: list[str],
        *,
        interval: float = 0.1,
        hold: float = 6.0,
        payload: bytes = b"",
    ) -> None:
        self.port = port
        self.addresses = addresses
        self.interval = interval
        self.hold = hold
        self.payload = payload
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, address: str) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((address, 0))
            sock.settimeout(1.0)
            sock.connect(("127.0.0.1", self.port))
            if self.payload:
                sock.sendall(self.payload)
        except OSError:
            sock.close()
            return None
        return sock

    def _run(self) -> None:
        held: deque[tuple[float, socket.socket]] = deque()
        next_round = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_round:
                    for address in self.addresses:
                        sock = self._open(address)
                        if sock is not None:
                            held.append((now, sock))
                            self.opened += 1
                    next_round += self.interval
                while held and held[0][0] + self.hold <= now:
                    held.popleft()[1].close()
                self._stop.wait(max(0.0, min(next_round - time.monotonic(), 0.05)))
        finally:
            for _, sock in held:
                sock.close()


@dataclass
class Outcomes:
    """What legitimate clients got: latencies of the exchanges that worked, reasons of the others."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.latencies) + len(self.failures)

    @property
    def success_rate(self) -> float:
        return len(self.latencies) / self.attempts if self.attempts else 0.0

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        median = ordered[len(ordered) // 2] * 1000 if ordered else float("nan")
        worst = ordered[-1] * 1000 if ordered else float("nan")
        return (
            f"{len(self.latencies)}/{self.attempts} NTS-KE exchanges succeeded "
            f"({self.success_rate:.1%}), median {median:.1f} ms, slowest {worst:.1f} ms"
        )


def legitimate_exchanges(
    port: int, cafile: str, addresses: list[str], *, attempts: int, interval: float = 0.1
) -> Outcomes:
    """``attempts`` key exchanges, one every ``interval`` seconds, taking turns over ``addresses``."""
    outcomes = Outcomes()
    start = time.monotonic()
    for i in range(attempts):
        time.sleep(max(0.0, start + i * interval - time.monotonic()))
        began = time.monotonic()
        try:
            key_exchange_blocking(
                "127.0.0.1", port, cafile=cafile, timeout=3.0, source=addresses[i % len(addresses)]
            )
        except NtsKeError as error:
            outcomes.failures.append(str(error))
        else:
            outcomes.latencies.append(time.monotonic() - began)
    return outcomes
