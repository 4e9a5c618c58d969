"""Load from several client processes: a worker runtime, the orchestrator that drives the workers, and
the figures (messages/s, delivery latency, server CPU).

Standard library only: the XMPP workers run under another interpreter (a venv with slixmpp) and
import this module too.

A worker is ``python <script>``: it reads one JSON spec line on stdin (its share of the devices), signs
them in, and then follows the orchestrator's lines, answering on stdout (one JSON object a line)::

    orchestrator                                    worker
    spec {...}                                  ->  (connects, signs in)
                                                <-  {"ready": ...}
    {"start_ns", "stop_ns", "interval_s"}       ->  (sends until stop_ns)
                                                <-  {"sent": {receiving account: count}}
    {"expect": n, "deadline_ns": t}             ->  (waits until its devices got n copies, or t)
                                                <-  {"result": {...}}

Every body carries its own send time (``time.monotonic_ns``, CLOCK_MONOTONIC: one clock for every
process on the machine), so latency is measured by the receiving process without sharing state: from
just before the sender hands the message to its client library to the receiving device having it (and,
where the protocol has acknowledgements, before acknowledging it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

STAMP = struct.Struct(">QII")
"""send time (monotonic ns), sender number, message number: the first 16 bytes of every body."""


def stamped_body(sender: int, number: int, size: int) -> bytes:
    """``size`` bytes (at least 16) that a receiver can time and identify: stamp + random filler."""
    return STAMP.pack(time.monotonic_ns(), sender, number) + os.urandom(max(0, size - STAMP.size))


def read_stamp(body: bytes) -> tuple[int, int, int]:
    sent_ns, sender, number = STAMP.unpack_from(body)
    return sent_ns, sender, number


def b64_chars(raw_bytes: int) -> int:
    """Length of unpadded base64 text for ``raw_bytes`` bytes."""
    return math.ceil(raw_bytes * 4 / 3)


def raw_bytes_for(b64_length: int) -> int:
    """How many random bytes make about ``b64_length`` characters of base64."""
    return b64_length * 3 // 4


def b64_decode(text: str) -> bytes:
    """Standard base64, padded or not."""
    return base64.b64decode(text + "=" * (-len(text) % 4))


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the worker side -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the devices of one worker received during the measured window."""

    received: int = 0
    duplicates: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    last_ns: int = 0
    measuring: bool = False
    _seen: set[tuple[str, int, int]] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def delivered(self, device: str, body: bytes) -> None:
        """Call when ``device`` has a message (before acknowledging it, where the protocol acks)."""
        now = time.monotonic_ns()
        if not self.measuring or len(body) < STAMP.size:
            return  # warm-up traffic
        sent_ns, sender, number = read_stamp(body)
        key = (device, sender, number)
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        self.received += 1
        self.latencies_ns.append(now - sent_ns)
        self.last_ns = now
        self._changed.set()

    async def wait_for(self, count: int, deadline_ns: int) -> None:
        while self.received < count and time.monotonic_ns() < deadline_ns:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=0.2)


@dataclass
class Sender:
    """One sending device: ``send(body)`` returns once the server has accepted the message."""

    number: int
    """Unique across all workers (it goes into every stamp)."""
    to: str
    """The receiving account (every one of its devices gets a copy)."""
    send: Callable[[bytes], Awaitable[None]]


class LoadClient(Protocol):
    """What a worker script supplies: its devices signed in, receiving into the tally."""

    async def start(self, spec: dict[str, Any], tally: Tally) -> list[Sender]: ...

    async def close(self) -> None: ...


class Channel:
    """The worker's protocol lines: stdin in, a private copy of stdout out (stray prints go to stderr)."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)

    def emit(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    async def read(self) -> dict[str, Any]:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            raise SystemExit("the orchestrator went away")
        message: dict[str, Any] = json.loads(line)
        return message


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _send_loop(sender: Sender, size: int, start_ns: int, stop_ns: int, interval_ns: int) -> int:
    number, next_ns = 0, start_ns
    while (next_ns if interval_ns else time.monotonic_ns()) < stop_ns:
        if interval_ns:
            await asyncio.sleep(max(0, next_ns - time.monotonic_ns()) / 1e9)
            next_ns += interval_ns
        await sender.send(stamped_body(sender.number, number, size))
        number += 1
    return number


async def _serve_worker(client: LoadClient) -> None:
    channel = Channel()
    spec = await channel.read()
    tally = Tally()
    senders = await client.start(spec, tally)
    channel.emit({"ready": {"senders": len(senders)}})
    go = await channel.read()
    start_ns, stop_ns = int(go["start_ns"]), int(go["stop_ns"])
    await asyncio.sleep(max(0, start_ns - time.monotonic_ns()) / 1e9)
    tally.measuring = True
    cpu_before = cpu_now()
    interval_ns = int(go["interval_s"] * 1e9)
    size = int(spec["body_bytes"])
    counts = await asyncio.gather(
        *(
            # pacing: sender k of N starts k/N of an interval late, so the offered load is even
            _send_loop(
                s, size, start_ns + interval_ns * s.number // int(go["senders_total"]), stop_ns, interval_ns
            )
            for s in senders
        )
    )
    sent: dict[str, int] = {}
    for sender, count in zip(senders, counts, strict=True):
        sent[sender.to] = sent.get(sender.to, 0) + count
    channel.emit({"sent": sent})
    expect = await channel.read()
    await tally.wait_for(int(expect["expect"]), int(expect["deadline_ns"]))
    channel.emit(
        {
            "result": {
                "received": tally.received,
                "duplicates": tally.duplicates,
                "latencies_ns": tally.latencies_ns,
                "last_ns": tally.last_ns,
                "cpu_s": cpu_now() - cpu_before,
            }
        }
    )
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), timeout=20)


def run_worker(client: LoadClient) -> None:
    """The body of a worker script's ``if __name__ == "__main__"``."""
    asyncio.run(_serve_worker(client))


# --- the orchestrator side -------------------------------------------------------------------------


def _tree_cpu(root: int) -> float:
    """User + system CPU of a process and all its descendants (alive now), plus its reaped children."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    reaped = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            pid = int(entry.name)
            parents[pid] = int(fields[1])
            times[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if pid == root:
                reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    total, wanted = reaped, {root}
    changed = True
    while changed:  # descendants: walk down from the root
        changed = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return total + sum(times.get(pid, 0.0) for pid in wanted)


def venv_with(folder: Path, requirement: str) -> str:
    """A virtual environment in ``folder`` holding ``requirement`` (made once, with pip from PyPI), for
    a peer that is no dependency of Lockstep's; returns its Python."""
    python = folder / "bin" / "python"
    marker = folder / "installed.txt"
    if not marker.exists() or marker.read_text() != requirement:
        print(f"installing {requirement} into {folder} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", requirement], check=True, timeout=1800)
        marker.write_text(requirement)
    return str(python)


def postmaster_pid(data_dir: Path) -> int:
    """The main process of a PostgreSQL cluster (the root of its process tree)."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])


class CpuMeter:
    """CPU seconds used by named process trees (a server, its database, Redis) between two readings."""

    def __init__(self, roots: dict[str, list[int]]) -> None:
        self.roots = roots
        self._start: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        return {name: sum(_tree_cpu(pid) for pid in pids) for name, pids in self.roots.items()}

    def start(self) -> None:
        self._start = self.read()

    def used(self) -> dict[str, float]:
        return {name: value - self._start.get(name, 0.0) for name, value in self.read().items()}


@dataclass
class Outcome:
    sent: int
    delivered: int
    expected: int
    duplicates: int
    elapsed: float
    latencies_ms: list[float]
    server_cpu: dict[str, float]
    """CPU seconds by process tree during the run (e.g. {"lockstep": 3.1, "postgresql": 1.2})."""
    client_cpu: float


@dataclass
class Worker:
    """The orchestrator's end of one worker process (see :class:`Channel` for the other)."""

    process: asyncio.subprocess.Process
    spec: dict[str, Any]

    @classmethod
    async def start(
        cls, command: list[str], spec: dict[str, Any], env: dict[str, str] | None = None
    ) -> Worker:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=2**26,  # a result line carries every latency
        )
        worker = cls(process, spec)
        await worker.say(spec)
        return worker

    async def say(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()

    async def hear(self, key: str, timeout: float) -> Any:
        """The value of ``key`` in the worker's next line."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=timeout)
        if not line:
            raise RuntimeError(f"a worker exited (code {await self.process.wait()}); see its stderr above")
        message = json.loads(line)
        if key not in message:
            raise RuntimeError(f"expected {key!r} from a worker, got {line[:200]!r}")
        return message[key]

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def run_fleet(
    command: list[str],
    specs: list[dict[str, Any]],
    cpu: CpuMeter,
    *,
    seconds: float,
    rate: float,
    grace: float = 30.0,
    env: dict[str, str] | None = None,
) -> Outcome:
    """Start one worker per spec, sign everyone in, send for ``seconds``, wait for the copies.

    Each spec names its ``receivers`` (``[{"account": ..., ...}]``, one entry per device: each gets a
    copy of every message to its account) and carries ``body_bytes``; the rest is the worker's own.
    """
    workers = []
    try:
        for spec in specs:
            workers.append(await Worker.start(command, spec, env))
        ready = [await w.hear("ready", timeout=600) for w in workers]
        senders_total = sum(r["senders"] for r in ready)
        start_ns = time.monotonic_ns() + 500_000_000
        stop_ns = start_ns + int(seconds * 1e9)
        interval = senders_total / rate if rate else 0.0
        go = {
            "start_ns": start_ns,
            "stop_ns": stop_ns,
            "interval_s": interval,
            "senders_total": senders_total,
        }
        for w in workers:
            await w.say(go)
        await asyncio.sleep(max(0, start_ns - time.monotonic_ns()) / 1e9)
        cpu.start()
        sent_by_worker = [await w.hear("sent", timeout=seconds + 120) for w in workers]
        totals: dict[str, int] = {}
        for sent in sent_by_worker:
            for account, count in sent.items():
                totals[account] = totals.get(account, 0) + count
        deadline_ns = time.monotonic_ns() + int(grace * 1e9)
        expected = 0
        for w in workers:
            mine = sum(totals.get(r["account"], 0) for r in w.spec["receivers"])
            expected += mine
            await w.say({"expect": mine, "deadline_ns": deadline_ns})
        results = [await w.hear("result", timeout=grace + 60) for w in workers]
        server_cpu = cpu.used()
        for w in workers:
            await asyncio.wait_for(w.process.wait(), timeout=60)
    finally:
        for w in workers:
            await w.stop()
    last_ns = max([r["last_ns"] for r in results] + [stop_ns])
    return Outcome(
        sent=sum(totals.values()),
        delivered=sum(r["received"] for r in results),
        expected=expected,
        duplicates=sum(r["duplicates"] for r in results),
        elapsed=(last_ns - start_ns) / 1e9,
        latencies_ms=[ns / 1e6 for r in results for ns in r["latencies_ns"]],
        server_cpu=server_cpu,
        client_cpu=sum(r["cpu_s"] for r in results),
    )


def worker_specs(
    devices: list[dict[str, Any]], processes: int, body_bytes: int, **shared: Any
) -> list[dict[str, Any]]:
    """Deal devices over ``processes`` workers: receiving devices (those with an ``account``) and
    senders (those with a ``number``) each round-robin; ``shared`` goes into every spec."""
    receiving = [d for d in devices if "account" in d]
    sending = sorted((d for d in devices if "number" in d), key=lambda d: int(d["number"]))
    return [
        {
            **shared,
            "body_bytes": body_bytes,
            "receivers": receiving[i::processes],
            "senders": sending[i::processes],
        }
        for i in range(processes)
    ]


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def figures(outcome: Outcome) -> dict[str, float]:
    ordered = sorted(outcome.latencies_ms)
    server = sum(outcome.server_cpu.values())
    return {
        "messages/s": outcome.sent / outcome.elapsed,
        "deliveries/s": outcome.delivered / outcome.elapsed,
        "p50 ms": percentile(ordered, 0.50),
        "p99 ms": percentile(ordered, 0.99),
        "server CPU ms/delivery": 1000 * server / max(outcome.delivered, 1),
    }


def describe(name: str, outcome: Outcome) -> str:
    f = figures(outcome)
    cpu = ", ".join(f"{part} {seconds:.2f} s" for part, seconds in outcome.server_cpu.items())
    lost = outcome.expected - outcome.delivered
    return (
        f"{name}: sent {outcome.sent}, delivered {outcome.delivered} of {outcome.expected} copies "
        f"({lost} missing, {outcome.duplicates} duplicates) in {outcome.elapsed:.1f} s; "
        f"{f['messages/s']:.0f} messages/s, {f['deliveries/s']:.0f} deliveries/s; latency p50 "
        f"{f['p50 ms']:.1f} ms, p99 {f['p99 ms']:.1f} ms; server CPU {cpu} = "
        f"{f['server CPU ms/delivery']:.3f} ms per delivered copy; clients' CPU {outcome.client_cpu:.1f} s"
    )
