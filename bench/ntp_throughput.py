"""NTP server throughput: Lockstep's server vs chronyd, same box, same load generator, one run.

    .venv/bin/python bench/ntp_throughput.py [--duration 5] [--inflight 32] [--workers 1]
        [--sources 1024] [--no-rate-limit] [--server-source OLD/src]

Both servers are pinned to CPU 0 and the load generator to CPU 1 (when the machine has two), so
"responses/s" is per server core. Everything is on loopback. The load generator keeps
``--inflight`` requests outstanding, sending a new one for each reply (batched with
recvmmsg/sendmmsg so it is not the bottleneck), and re-fills the window if replies stop for 200 ms.
It sends from ``--sources`` loopback addresses in turn (127.0.x.y, picked per datagram with
IP_PKTINFO on one socket bound to the loopback device), so that with rate limiting on each address
stays under its limit; with ``--sources 1`` it sends from 127.0.0.1 only.

chronyd runs with ``-x`` (never touches the clock), ``local stratum 10`` and
``ratelimit interval -10 burst 16`` (1024 requests/s per address on average, bursts of 16); ours
runs ``lockstep ntp serve --local-stratum 10 --rate 1024 --burst 16``, the same limit. With
``--no-rate-limit`` neither limits (chronyd's default; ours ``--no-rate-limit``).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import multiprocessing
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lockstep.ntp.aio import mmsg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ntp.ntp_peers import running_chronyd

REQUEST = bytes([0x23]) + bytes(39)
RATE_LIMIT = (1024, 16)  # requests/s per address on average, burst: chronyd interval -10 = 1/1024 s
IP_PKTINFO = 8  # Linux <netinet/in.h>; a struct in_pktinfo control message picks the source address
PKTINFO_SPACE = socket.CMSG_SPACE(12)
SERVER_SOURCE: str | None = None  # --server-source: PYTHONPATH of our server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def source_addresses(count: int) -> array.array[int]:
    """``count`` loopback addresses 127.0.x.y (y in 1..254), as in_addr words in memory order."""
    packed = b"".join(bytes([127, 0, 1 + n // 254, 1 + n % 254]) for n in range(count))
    return array.array("I", packed)


def load(
    port: int,
    duration: float,
    inflight: int,
    cpu: int | None,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
    sources: int = 1,
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if sources > 1:
        # Replies come back to many 127.0.x.y addresses: bind to any address, but only on the
        # loopback device, and choose each request's source with IP_PKTINFO.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        sock.bind(("0.0.0.0", 0))
        batch = mmsg.DatagramBatch(
            sock, size=inflight, max_datagram=256, reply_size=48, send_control=PKTINFO_SPACE
        )
        for i in range(inflight):
            struct.pack_into(
                "@QiiI", batch.scontrol, i * PKTINFO_SPACE, socket.CMSG_LEN(12), 0, IP_PKTINFO, 0
            )
        # Source of send slot i: addresses[next + i]; the table is doubled so a slice never wraps.
        addresses = source_addresses(sources) * 2
        spec_dst = memoryview(batch.scontrol).cast("I")[5 :: PKTINFO_SPACE // 4]
    else:
        sock.bind(("127.0.0.1", 0))
        batch = mmsg.DatagramBatch(sock, size=inflight, max_datagram=256, reply_size=48)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    address = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + bytes([127, 0, 0, 1])
    for i in range(inflight):
        batch.sdata[i * 48 : i * 48 + 48] = REQUEST + i.to_bytes(8, "big")
        batch.saddr[i * mmsg.ADDRESS_SIZE : i * mmsg.ADDRESS_SIZE + 8] = address
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    replies = 0
    refills = 0
    next_source = 0

    def pick_sources(count: int) -> None:
        nonlocal next_source
        if sources > 1:
            spec_dst[:count] = memoryview(addresses)[next_source : next_source + count]
            next_source = (next_source + count) % sources

    pick_sources(inflight)
    batch.send(inflight)
    start = time.perf_counter()
    deadline = start + duration
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        if not poller.poll(200):
            refills += 1
            pick_sources(inflight)
            batch.send(inflight)  # replies lost: refill the window
            continue
        count = batch.receive()
        while count:
            replies += count
            pick_sources(count)
            batch.send(count)
            count = batch.receive()
    elapsed = time.perf_counter() - start
    sock.close()
    out.put((replies, elapsed, refills))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (and their reaped children), from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(pid: int) -> list[int]:
    """The server process and its children (our --workers processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        for child in children.read_text().split():
            found.extend(server_pids(int(child)))
    return found


def queued_bytes(port: int) -> int:
    """Bytes waiting in the receive queues of the UDP sockets bound to 127.0.0.1:``port``
    (``rx_queue`` in /proc/net/udp; one line per worker with SO_REUSEPORT)."""
    local = f"0100007F:{port:04X}"
    total = 0
    with open("/proc/net/udp") as table:
        for line in table:
            fields = line.split()
            if fields[1] == local:
                total += int(fields[4].split(":")[1], 16)
    return total


def measure(
    port: int, duration: float, inflight: int, cpu: int | None, pid: int, sources: int = 1
) -> tuple[float, int, float, float]:
    """Responses/s, window refills, the server's CPU use (cores) while measuring, and the share
    of samples (every 50 ms) in which requests were waiting in its socket: near 1, the server is
    saturated (it has work whenever it runs), however little of a core the machine gives it."""
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    busy = waiting = 0.0
    for phase_duration in (0.5, duration):  # warm up for half a second, then measure
        pids = server_pids(pid)
        before = cpu_seconds(pids)
        process = multiprocessing.Process(
            target=load, args=(port, phase_duration, inflight, cpu, queue, sources)
        )
        process.start()
        samples = []
        while queue.empty() and process.is_alive():
            samples.append(queued_bytes(port) > 0)
            time.sleep(0.05)
        replies, elapsed, refills = queue.get(timeout=phase_duration + 30)
        busy = (cpu_seconds(pids) - before) / elapsed
        waiting = sum(samples) / max(1, len(samples))
        process.join()
    return replies / elapsed, refills, busy, waiting


@contextlib.contextmanager
def chronyd(
    port: int, cpu: int | None, rate_limit: bool = False, lines: tuple[str, ...] = ()
) -> Iterator[int]:
    """chronyd -x serving ``local stratum 10`` on ``port``, rate-limited like ours or not at all
    (its default), with ``lines`` of extra configuration; yields its pid."""
    config = ["local stratum 10", "allow 127.0.0.0/8", "clientloglimit 100000000", *lines]
    if rate_limit:  # chronyd's interval is a power of 2 in seconds: -10 is 1/1024 s
        config.append(f"ratelimit interval -10 burst {RATE_LIMIT[1]}")
    with tempfile.TemporaryDirectory() as tmp, running_chronyd(Path(tmp), config, port, cpu=cpu) as peer:
        yield peer.process.pid


@contextlib.contextmanager
def lockstep_server(
    port: int, cpu: int | None, workers: int = 1, rate_limit: bool = False, options: tuple[str, ...] = ()
) -> Iterator[int]:
    """``lockstep ntp serve --local-stratum 10`` on ``port``, rate-limited like chronyd or not at
    all, with ``options``; yields its pid."""
    command = [
        sys.executable,
        "-m",
        "lockstep.cli.ntp",
        "ntp",
        "serve",
        "--port",
        str(port),
        "--local-stratum",
        "10",
        *(
            ("--rate", str(RATE_LIMIT[0]), "--burst", str(RATE_LIMIT[1]))
            if rate_limit
            else ("--no-rate-limit",)
        ),
        "--workers",
        str(workers),
        *options,
    ]
    if cpu is not None:
        cpus = ",".join(str(cpu + i) for i in range(workers)) if workers > 1 else str(cpu)
        command = ["taskset", "-c", cpus, *command]
    env = os.environ if SERVER_SOURCE is None else {**os.environ, "PYTHONPATH": SERVER_SOURCE}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        time.sleep(1.5)
        yield process.pid
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="our server's processes")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median kept)")
    parser.add_argument("--sources", type=int, default=1024, help="loopback source addresses of the load")
    parser.add_argument(
        "--no-rate-limit", dest="rate_limit", action="store_false", help="neither server rate-limits"
    )
    parser.add_argument(
        "--server-source",
        metavar="DIR",
        help="run our server from the lockstep package in DIR (an older src/)",
    )
    args = parser.parse_args()
    global SERVER_SOURCE
    SERVER_SOURCE = args.server_source
    if not 1 <= args.sources <= 254 * 255:
        parser.error("--sources must be within 1..64770")
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    print(
        f"{len(cpus)} CPUs; server on CPU {server_cpu}, load generator on CPU {load_cpu}; "
        f"{args.inflight} requests in flight from {args.sources} addresses, {args.duration:g} s per server, "
        f"rate limiting {'on' if args.rate_limit else 'off'}"
    )
    servers = {
        "chronyd": lambda port: chronyd(port, server_cpu, args.rate_limit),
        "lockstep ntp serve": lambda port: lockstep_server(port, server_cpu, args.workers, args.rate_limit),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    for round_number in range(1, args.rounds + 1):
        for name, start in servers.items():  # alternate, so background load hits both alike
            port = free_port()
            with start(port) as pid:
                rate, refills, busy, waiting = measure(
                    port, args.duration, args.inflight, load_cpu, pid, args.sources
                )
            results[name].append((rate, busy))
            print(
                f"round {round_number}  {name:<19} {rate:>9,.0f} responses/s"
                f"  server CPU {busy:4.2f} cores  requests waiting {waiting:4.0%}  window refills {refills}"
            )
    summarise(results, "responses/s")


def summarise(results: dict[str, list[tuple[float, float]]], unit: str, what: str = "") -> None:
    """Each server's median rate and rate per server CPU-second over its rounds, then ours over chronyd's."""
    print()
    medians = {}
    for name, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        per_cpu = statistics.median(r / max(b, 1e-9) for r, b in runs)
        medians[name] = (rate, per_cpu)
        print(f"{name:<19} median {rate:>9,.0f} {unit}, {per_cpu:>9,.0f} per server CPU-second")
    (ours, ours_cpu), (theirs, theirs_cpu) = medians["lockstep ntp serve"], medians["chronyd"]
    print(
        f"ratio lockstep/chronyd{what}: {ours / theirs:.2f}x responses/s, "
        f"{ours_cpu / theirs_cpu:.2f}x per server CPU-second"
    )


if __name__ == "__main__":
    main()
