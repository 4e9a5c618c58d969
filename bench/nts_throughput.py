"""NTS throughput: authenticated NTP requests/s of Lockstep's server vs chronyd's NTS server.

    .venv/bin/python bench/nts_throughput.py [--duration 5] [--inflight 32] [--rounds 3]

Same load generator as bench/ntp_throughput.py (imported, not copied: its recvmmsg/sendmmsg
``load`` loop and ``measure``), same CPU pinning (server on CPU 0, load on CPU 1), one run with
alternating rounds. The only difference is the datagram: before measuring, the script runs
NTS-KE (RFC 8915) with the server under test, and every request is then one NTS request (unique
identifier, one cookie, no placeholders, authenticator: 232 bytes) that the server must open
(cookie AEAD), verify (request AEAD), and answer with a new cookie under a fresh authenticator
(reply 232 bytes). NTS servers are stateless, so the same request can be sent again and again.

chronyd: ``-x``, ``local stratum 10``, ``ntsserverkey``/``ntsservercert``, no rate limiting.
Ours: ``lockstep ntp serve --local-stratum 10 --no-rate-limit --nts-cert ... --nts-key ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
import time
import types
from pathlib import Path

import ntp_throughput  # the plain-NTP benchmark: its load generator and measurement

from lockstep.ntp.aio import mmsg
from lockstep.ntp.aio.nts_ke import NtsKeError, key_exchange_blocking
from lockstep.ntp.nts.client import NtsClientSession
from lockstep.ntp.wire import Packet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nts.nts_peers import make_certificate


def use_request(request: bytes) -> None:
    """Make ntp_throughput's load generator send ``request`` instead of its 48-byte one.

    Its ``load`` writes 48-byte requests into ``batch.sdata``; the batch here keeps those writes
    in a scratch buffer and sends ``request`` from the real send slots, which it fills once.
    """

    class NtsBatch(mmsg.DatagramBatch):
        def __init__(self, sock: socket.socket, *, size: int, max_datagram: int, reply_size: int) -> None:
            super().__init__(sock, size=size, max_datagram=max(max_datagram, 1024), reply_size=len(request))
            for i in range(size):
                self.sdata[i * len(request) : (i + 1) * len(request)] = request
            self.sdata = bytearray(size * 48)  # the ctypes send slots keep the filled buffer

    ntp_throughput.mmsg = types.SimpleNamespace(  # type: ignore[assignment]
        DatagramBatch=NtsBatch, ADDRESS_SIZE=mmsg.ADDRESS_SIZE
    )


def nts_request(ke_port: int, cafile: Path) -> tuple[bytes, int]:
    deadline = time.monotonic() + 10
    while True:  # the server may still be starting
        try:
            outcome = key_exchange_blocking("127.0.0.1", ke_port, cafile=str(cafile))
            break
        except NtsKeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    session = NtsClientSession(outcome.c2s, outcome.s2c, outcome.result.cookies)  # full jar: no placeholders
    return session.protect(Packet(transmit_timestamp=1).encode()), outcome.ntp_port


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chronyd(port: int, ke_port: int, cpu: int | None, pki: Path) -> contextlib.AbstractContextManager[int]:
    nts = (f"ntsport {ke_port}", f"ntsserverkey {pki}/localhost.key", f"ntsservercert {pki}/localhost.crt")
    return ntp_throughput.chronyd(port, cpu, lines=nts)


def lockstep_server(
    port: int, ke_port: int, cpu: int | None, pki: Path
) -> contextlib.AbstractContextManager[int]:
    nts = ("--nts-cert", str(pki / "localhost.crt"), "--nts-key", str(pki / "localhost.key"))
    return ntp_throughput.lockstep_server(port, cpu, options=(*nts, "--nts-port", str(ke_port)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median kept)")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    print(
        f"{len(cpus)} CPUs; server on CPU {server_cpu}, load generator on CPU {load_cpu}; "
        f"{args.inflight} NTS requests in flight, {args.duration:g} s per server"
    )
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp)
        make_certificate(pki)
        servers = {"chronyd": chronyd, "lockstep ntp serve": lockstep_server}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        for round_number in range(1, args.rounds + 1):
            for name, start in servers.items():  # alternate, so background load hits both alike
                port, ke_port = ntp_throughput.free_port(), free_tcp_port()
                with start(port, ke_port, server_cpu, pki) as pid:
                    request, ntp_port = nts_request(ke_port, pki / "localhost.crt")
                    assert ntp_port == port
                    use_request(request)
                    rate, refills, busy = ntp_throughput.measure(
                        port, args.duration, args.inflight, load_cpu, pid
                    )
                results[name].append((rate, busy))
                print(
                    f"round {round_number}  {name:<19} {rate:>9,.0f} NTS responses/s"
                    f"  server CPU {busy:4.2f} cores  window refills {refills}  ({len(request)} B requests)"
                )
    ntp_throughput.summarise(results, "NTS responses/s", " (NTS)")


if __name__ == "__main__":
    main()
