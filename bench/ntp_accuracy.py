"""NTP client accuracy: ``lockstep ntp monitor`` vs ``chronyd -x``, through the same delay proxy.

    .venv/bin/python bench/ntp_accuracy.py [--duration 300] [--offset 0.1] [--poll 1]
        [--drift 50 --step-delay 0.020 --step-length 60]

A Lockstep NTP server whose clock runs ``--offset`` seconds ahead of the system clock serves
behind a user-space UDP delay proxy (``tc netem`` is not available here). The proxy delays each
datagram by a fixed base plus exponentially distributed queueing jitter — heavier on the way
back than on the way out, so the path is asymmetric in its jitter — and drops a fraction of them.
Both clients poll every 2**poll s through the same proxy at the same time: our monitor (as a
subprocess, ``--json``) and chronyd with ``-x`` (never touches the clock). Every second the
benchmark samples both clients' current offset estimates; after a warm-up it prints each client's
error against the known offset (RMS and max) and the ratio. All traffic stays on 127.0.0.1.

The drift scenario (issue 11) tests frequency tracking: with ``--drift PPM`` the server's clock
runs PPM parts per million fast from ``--offset`` (its offset is recomputed every millisecond
from the monotonic clock, which the benchmark shares, so the true offset at any instant is
known), and with ``--step-delay S`` the client-to-server delay grows by S for ``--step-length``
seconds centred in the measured window (a route change: one way only, so it is also a step in
path asymmetry of S/2 that no client can see). Errors are then also reported before, during and
after the step.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import math
import multiprocessing
import os
import random
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from lockstep.ntp.aio.server import UdpServer, open_udp_socket
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import from_seconds, from_unix_ns

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ntp.ntp_peers import running_chronyd


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def true_offset(offset: float, drift_ppm: float, start: float, at: float) -> float:
    """The server clock's offset from the system clock at monotonic time ``at``: ``offset`` at
    ``start``, growing by ``drift_ppm`` µs per second."""
    return offset + drift_ppm * 1e-6 * (at - start)


def run_server(port: int, offset: float, drift_ppm: float = 0.0, start: float = 0.0) -> None:
    """A stratum-1-like server whose clock is ``offset`` seconds ahead of the system clock at
    monotonic time ``start`` and runs ``drift_ppm`` parts per million fast."""

    async def main() -> None:
        core = NtpServer(
            ServerState.local(stratum=1, now=from_unix_ns(time.time_ns())),
            clock_offset=from_seconds(offset),
        )
        UdpServer(core, open_udp_socket("127.0.0.1", port)).start()
        while True:  # 1 ms steps: 50 ns apart at 50 ppm, far below what the path lets us see
            core.clock_offset = from_seconds(true_offset(offset, drift_ppm, start, time.monotonic()))
            await asyncio.sleep(0.001)

    asyncio.run(main())


def run_proxy(
    listen: int,
    upstream: int,
    base: float,
    jitter_out: float,
    jitter_back: float,
    loss: float,
    step: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> None:
    """Relay datagrams with delay = base + Exp(jitter) per direction, and random loss; from
    monotonic time ``step[0]`` to ``step[1]`` client-to-server datagrams wait ``step[2]`` more."""
    rng = random.Random(2024)
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", listen))
    by_client: dict[tuple[str, int], socket.socket] = {}
    by_socket: dict[socket.socket, tuple[str, int]] = {}
    queue: list[tuple[float, int, socket.socket, bytes, tuple[str, int]]] = []
    sequence = 0
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
        readable, _, _ = select.select([front, *by_socket], [], [], timeout)
        now = time.monotonic()
        for sock in readable:
            data, address = sock.recvfrom(2048)
            if rng.random() < loss:
                continue
            if sock is front:
                back = by_client.get(address)
                if back is None:
                    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    back.bind(("127.0.0.1", 0))
                    by_client[address] = back
                    by_socket[back] = address
                delay = base + rng.expovariate(1 / jitter_out)
                if step[0] <= now < step[1]:
                    delay += step[2]
                item = (now + delay, sequence, back, data, ("127.0.0.1", upstream))
            else:
                delay = base + rng.expovariate(1 / jitter_back)
                item = (now + delay, sequence, front, data, by_socket[sock])
            sequence += 1
            heapq.heappush(queue, item)
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, sock, data, target = heapq.heappop(queue)
            sock.sendto(data, target)


@contextlib.contextmanager
def chronyd(proxy_port: int, poll: int) -> Iterator[Path]:
    """chronyd -x as a client of the proxy; yields its command socket."""
    server = f"server 127.0.0.1 port {proxy_port} iburst minpoll {poll} maxpoll {poll}"
    with tempfile.TemporaryDirectory() as tmp, running_chronyd(Path(tmp), [server]) as peer:
        yield peer.directory / "chronyd.sock"


def chrony_offset(sock: Path) -> float | None:
    """chronyd's estimate of (true time - system clock), from `chronyc -c tracking`."""
    result = subprocess.run(
        ["chronyc", "-c", "-h", str(sock), "tracking"], capture_output=True, text=True, timeout=5
    )
    fields = result.stdout.strip().split(",")
    if len(fields) < 6 or fields[2] in ("0", "16"):  # stratum 0/16: not synchronised yet
        return None
    # Field 4 is "system time", positive when the system clock is slow of NTP time (chronyd -x
    # leaves the clock free-running and keeps estimating it): NTP's offset, true - local.
    return float(fields[4])


class OurMonitor:
    """``lockstep ntp monitor --json`` as a subprocess; keeps its latest combined offset and
    the frequency and time it holds with, so :meth:`offset_now` carries it to the moment asked
    (as `chronyc tracking` does for chronyd's)."""

    def __init__(self, proxy_port: int, poll: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lockstep.cli.ntp",
                "ntp",
                "monitor",
                f"127.0.0.1:{proxy_port}",
                "--minpoll",
                str(poll),
                "--maxpoll",
                str(poll),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.update: tuple[float, float, float] | None = None  # (offset, frequency, its unix time)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            update = json.loads(line)
            if update["offset"] is not None:
                self.update = (update["offset"], update.get("frequency") or 0.0, update["time"])

    def offset_now(self) -> float | None:
        if self.update is None:
            return None
        offset, frequency, at = self.update
        return offset + frequency * (time.time() - at)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def summary(errors: list[float]) -> tuple[float, float]:
    return math.sqrt(sum(e * e for e in errors) / len(errors)), max(abs(e) for e in errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds ignored first")
    parser.add_argument("--offset", type=float, default=0.1, help="server clock ahead, s")
    parser.add_argument("--poll", type=int, default=1, help="log2 poll interval of both clients")
    parser.add_argument("--base", type=float, default=0.010, help="one-way base delay, s")
    parser.add_argument("--jitter-out", type=float, default=0.001, help="mean client->server")
    parser.add_argument("--jitter-back", type=float, default=0.004, help="mean server->client")
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--drift", type=float, default=0.0, help="server clock runs this many ppm fast")
    parser.add_argument("--step-delay", type=float, default=0.0, help="extra client->server delay, s")
    parser.add_argument("--step-length", type=float, default=60.0, help="seconds the extra delay lasts")
    args = parser.parse_args()
    server_port, proxy_port = free_port(), free_port()
    origin = time.monotonic()  # the server's offset is args.offset here (CLOCK_MONOTONIC is system-wide)
    step_start = origin + args.warmup + (args.duration - args.step_length) / 2
    step = (
        (step_start, step_start + args.step_length, args.step_delay) if args.step_delay else (0.0, 0.0, 0.0)
    )
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=run_server, args=(server_port, args.offset, args.drift, origin), daemon=True),
        context.Process(
            target=run_proxy,
            args=(proxy_port, server_port, args.base, args.jitter_out, args.jitter_back, args.loss, step),
            daemon=True,
        ),
    ]
    for child in children:
        child.start()
    print(
        f"server clock +{args.offset:g} s, {args.drift:g} ppm fast; "
        f"proxy: {args.base * 1e3:g} ms each way + Exp("
        f"{args.jitter_out * 1e3:g} ms) out / Exp({args.jitter_back * 1e3:g} ms) back, "
        f"{args.loss:.0%} loss; poll 2^{args.poll} s; {args.warmup:g} s warm-up, "
        f"{args.duration:g} s measured"
        + (
            f"; +{args.step_delay * 1e3:g} ms client->server for {args.step_length:g} s from "
            f"{step_start - origin:.0f} s"
            if args.step_delay
            else ""
        )
    )
    samples: list[tuple[float, float, float]] = []  # (monotonic time, our error, chronyd's error)
    try:
        with chronyd(proxy_port, args.poll) as chrony_socket:
            monitor = OurMonitor(proxy_port, args.poll)
            try:
                while (now := time.monotonic()) - origin < args.warmup + args.duration:
                    time.sleep(1.0)
                    if now - origin < args.warmup:
                        continue
                    chrony = chrony_offset(chrony_socket)
                    truth = true_offset(args.offset, args.drift, origin, time.monotonic())
                    ours = monitor.offset_now()
                    if ours is not None and chrony is not None:
                        samples.append((now, ours - truth, chrony - truth))
            finally:
                monitor.stop()
    finally:
        for child in children:
            child.terminate()
    if not samples:
        raise SystemExit("no samples: a client never synchronised")
    print(f"samples: {len(samples)} (one per second)")
    report("all", samples)
    if args.step_delay:
        settle = 30.0  # the step's after-effects: the filters' memory of delayed samples
        report("before the step", [x for x in samples if x[0] < step[0]])
        report("during the step", [x for x in samples if step[0] <= x[0] < step[1]])
        report(f"{settle:g} s after it", [x for x in samples if step[1] <= x[0] < step[1] + settle])
        report("later", [x for x in samples if x[0] >= step[1] + settle])


def report(label: str, samples: list[tuple[float, float, float]]) -> None:
    """Both clients' RMS, max and mean error over ``samples``, and ours over chronyd's."""
    if not samples:
        return
    ours = [e for _, e, _ in samples]
    theirs = [e for _, _, e in samples]
    our_rms, our_max = summary(ours)
    their_rms, their_max = summary(theirs)
    print(f"{label} ({len(samples)} samples)")
    print(
        f"  lockstep monitor  RMS error {our_rms * 1e3:7.3f} ms  max {our_max * 1e3:7.3f} ms"
        f"  mean {sum(ours) / len(ours) * 1e3:+7.3f} ms"
    )
    print(
        f"  chronyd -x        RMS error {their_rms * 1e3:7.3f} ms  max {their_max * 1e3:7.3f} ms"
        f"  mean {sum(theirs) / len(theirs) * 1e3:+7.3f} ms"
    )
    print(f"  ratio lockstep/chronyd: RMS {our_rms / their_rms:.2f}x, max {our_max / their_max:.2f}x")


if __name__ == "__main__":
    main()
