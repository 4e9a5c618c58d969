"""NTS throughput: authenticated NTP requests/s of Lockstep's server vs chronyd's NTS server.

    .venv/bin/python bench/nts_throughput.py [--duration 5] [--inflight 32] [--rounds 3]
        [--server-source OLD/src]
    .venv/bin/python bench/nts_throughput.py --python-cost [--batch 32]

``--python-cost`` measures no throughput: it times (``time.thread_time``, so other processes'
load hardly matters) the server's batch answer for ``--batch`` copies of one NTS request in its
receive slots, replies really sent to a local socket — the whole batch in C when the compiled
path is built, then the general path (one ``respond`` per request) with and without its sends —
and ``NtpServer.respond`` alone, per request; run it with ``PYTHONPATH=OLD/src`` for an older
checkout.

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
import struct
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
from ntp.batch_slots import stamp_control
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


def python_cost(batch_size: int, rounds: int = 300) -> None:
    """Thread CPU time per NTS request: the batched adapter (recvmmsg slots filled by hand, as the
    kernel would, replies sent for real to a sink socket) and the core's respond() alone."""
    from lockstep.ntp.aio.server import UdpServer, open_udp_socket
    from lockstep.ntp.nts.cookies import CookieContents, CookieKeys
    from lockstep.ntp.nts.server import NtsServer
    from lockstep.ntp.server import NtpServer, ServerState
    from lockstep.ntp.timestamps import from_unix_ns

    now = from_unix_ns(time.time_ns())
    keys = CookieKeys(os.urandom(32))
    c2s, s2c = os.urandom(32), os.urandom(32)
    cookies = [keys.make(CookieContents(15, c2s, s2c), now) for _ in range(8)]
    request = NtsClientSession(c2s, s2c, cookies).protect(Packet(transmit_timestamp=1).encode())
    core = NtpServer(ServerState.local(10, now), nts=NtsServer(keys))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    server = UdpServer(core, open_udp_socket("127.0.0.1", 0), batched=True)
    batch = server._mmsg
    assert batch is not None
    sockaddr = struct.pack("<H", socket.AF_INET) + struct.pack(">H", sink.getsockname()[1])
    sockaddr += socket.inet_aton("127.0.0.1") + bytes(8)

    def fill() -> None:
        arrival = time.time_ns()
        for i in range(batch_size):
            batch.rdata[i * batch.max_datagram : i * batch.max_datagram + len(request)] = request
            batch.lengths[i * mmsg.STRIDE + mmsg.MSG_LEN_INDEX] = len(request)
            batch.lengths[i * mmsg.STRIDE + mmsg.CONTROLLEN_INDEX] = mmsg.CONTROL_SIZE
            batch.raddr[i * mmsg.ADDRESS_SIZE : i * mmsg.ADDRESS_SIZE + 16] = sockaddr
            stamp_control(batch, i, arrival)

    def timed(label: str) -> None:
        spent = 0.0
        for _ in range(rounds):
            fill()
            start = time.thread_time()
            server._answer(batch, batch_size)
            spent += time.thread_time() - start
        per_request = spent / (rounds * batch_size) * 1e6
        print(f"{label}: {per_request:5.2f} µs per NTS request (batches of {batch_size})")

    timed("batched adapter")
    replied = core.counters.replied
    # Each request through the general path instead (one respond() each, whose NTS part is the
    # compiled per-request path when built), with its sends (ReplySlots) left out.
    server._answer_nts_compiled = lambda batch, count: range(count)  # type: ignore[method-assign]
    timed("batched adapter, general path")
    slots = server._long_replies

    def discard() -> int:
        slots.used = 0
        return 0

    slots.send = discard  # type: ignore[method-assign]
    timed("batched adapter, general path, sends discarded")
    start = time.thread_time()
    for _ in range(rounds * batch_size):
        core.respond(request, 0x7F000001, now, now)
    spent = time.thread_time() - start
    print(f"NtpServer.respond: {spent / (rounds * batch_size) * 1e6:5.2f} µs per NTS request")
    assert replied == rounds * batch_size, "every request is answered"
    sink.close()
    server.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median kept)")
    parser.add_argument("--python-cost", action="store_true", help="time the server's Python per request")
    parser.add_argument("--batch", type=int, default=32, help="--python-cost: requests per batch")
    parser.add_argument("--server-source", help="PYTHONPATH of our server (e.g. an older checkout's src)")
    args = parser.parse_args()
    ntp_throughput.SERVER_SOURCE = args.server_source
    if args.python_cost:
        python_cost(args.batch)
        return
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
                    rate, refills, busy, waiting = ntp_throughput.measure(
                        port, args.duration, args.inflight, load_cpu, pid
                    )
                results[name].append((rate, busy))
                print(
                    f"round {round_number}  {name:<19} {rate:>9,.0f} NTS responses/s"
                    f"  server CPU {busy:4.2f} cores  requests waiting {waiting:4.0%}"
                    f"  window refills {refills}  ({len(request)} B requests)"
                )
    ntp_throughput.summarise(results, "NTS responses/s", " (NTS)")


if __name__ == "__main__":
    main()
