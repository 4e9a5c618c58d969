"""NTP server throughput: Lockstep's server vs chronyd, same box, same load generator, one run.

    .venv/bin/python bench/ntp_throughput.py [--duration 5] [--inflight 32] [--workers 1]

Both servers are pinned to CPU 0 and the load generator to CPU 1 (when the machine has two), so
"responses/s" is per server core. Everything is on 127.0.0.1. The load generator keeps
``--inflight`` requests outstanding, sending a new one for each reply (batched with
recvmmsg/sendmmsg so it is not the bottleneck), and re-fills the window if replies stop for 200 ms.
chronyd runs with ``-x`` (never touches the clock), ``local stratum 10`` and no rate limiting; ours
runs ``lockstep ntp serve --local-stratum 10 --no-rate-limit``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import select
import shutil
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

REQUEST = bytes([0x23]) + bytes(39)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load(port: int, duration: float, inflight: int, cpu: int | None, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    batch = mmsg.DatagramBatch(sock, size=inflight, max_datagram=256, reply_size=48)
    address = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + bytes([127, 0, 0, 1])
    for i in range(inflight):
        batch.sdata[i * 48 : i * 48 + 48] = REQUEST + i.to_bytes(8, "big")
        batch.saddr[i * mmsg.ADDRESS_SIZE : i * mmsg.ADDRESS_SIZE + 8] = address
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    replies = 0
    refills = 0
    batch.send(inflight)
    start = time.perf_counter()
    deadline = start + duration
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        if not poller.poll(200):
            refills += 1
            batch.send(inflight)  # replies lost: refill the window
            continue
        count = batch.receive()
        while count:
            replies += count
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


def measure(port: int, duration: float, inflight: int, cpu: int | None, pid: int) -> tuple[float, int, float]:
    """Responses/s, window refills, and the server's CPU use (cores) while measuring."""
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    busy = 0.0
    for phase_duration in (0.5, duration):  # warm up for half a second, then measure
        pids = server_pids(pid)
        before = cpu_seconds(pids)
        process = multiprocessing.Process(target=load, args=(port, phase_duration, inflight, cpu, queue))
        process.start()
        replies, elapsed, refills = queue.get(timeout=phase_duration + 30)
        busy = (cpu_seconds(pids) - before) / elapsed
        process.join()
    return replies / elapsed, refills, busy


@contextlib.contextmanager
def chronyd(port: int, cpu: int | None) -> Iterator[int]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        directory.chmod(0o700)
        config = directory / "chrony.conf"
        config.write_text(
            f"port {port}\nbindaddress 127.0.0.1\ncmdport 0\n"
            f"bindcmdaddress {directory}/sock\npidfile {directory}/pid\n"
            f"driftfile {directory}/drift\nlocal stratum 10\nallow 127.0.0.1\n"
            "clientloglimit 100000000\n"
        )
        command = [
            shutil.which("chronyd") or "/usr/sbin/chronyd",
            "-x",
            "-d",
            "-u",
            "root",
            "-f",
            str(config),
        ]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            yield process.pid
        finally:
            process.terminate()
            process.wait(10)


@contextlib.contextmanager
def lockstep_server(port: int, cpu: int | None, workers: int) -> Iterator[int]:
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
        "--no-rate-limit",
        "--workers",
        str(workers),
    ]
    if cpu is not None:
        cpus = ",".join(str(cpu + i) for i in range(workers)) if workers > 1 else str(cpu)
        command = ["taskset", "-c", cpus, *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    print(
        f"{len(cpus)} CPUs; server on CPU {server_cpu}, load generator on CPU {load_cpu}; "
        f"{args.inflight} requests in flight, {args.duration:g} s per server"
    )
    servers = {
        "chronyd": lambda port: chronyd(port, server_cpu),
        "lockstep ntp serve": lambda port: lockstep_server(port, server_cpu, args.workers),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    for round_number in range(1, args.rounds + 1):
        for name, start in servers.items():  # alternate, so background load hits both alike
            port = free_port()
            with start(port) as pid:
                rate, refills, busy = measure(port, args.duration, args.inflight, load_cpu, pid)
            results[name].append((rate, busy))
            print(
                f"round {round_number}  {name:<19} {rate:>9,.0f} responses/s"
                f"  server CPU {busy:4.2f} cores  window refills {refills}"
            )
    print()
    medians = {}
    for name, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        per_cpu = statistics.median(r / max(b, 1e-9) for r, b in runs)
        medians[name] = (rate, per_cpu)
        print(f"{name:<19} median {rate:>9,.0f} responses/s, {per_cpu:>9,.0f} per server CPU-second")
    (ours, ours_cpu), (theirs, theirs_cpu) = medians["lockstep ntp serve"], medians["chronyd"]
    print(
        f"ratio lockstep/chronyd: {ours / theirs:.2f}x responses/s, "
        f"{ours_cpu / theirs_cpu:.2f}x per server CPU-second"
    )


if __name__ == "__main__":
    main()
