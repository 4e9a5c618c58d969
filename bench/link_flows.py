"""Scan-to-linked latency with many link flows at once, over one or two instances, on loopback.

``--flows`` companions (terminal clients) start linking and show their codes, all at once, so that
many link sessions are open together (each rotating its refs on the server). Primaries (one per four
companions: an account links at most four) then scan them: flow *k* is scanned ``k / --rate`` seconds
after the start, a primary's four flows one after another (its device list changes one version at a
time), or all as fast as possible with ``--rate 0``. A flow is timed from the scan (the primary
about to send ``link.inspect``) to the companion holding a verified grant and having signed in with
its new identity: inspect, approve (certificate, signed list, HPKE), relay, open, verify, store, auth.

The clients are ``--processes`` worker processes (a primary and its companions in one), so they are
not the limit. With ``--instances 2`` two servers share a throwaway PostgreSQL and Redis
(tests/pg_server.py, tests/redis_server.py) and every companion links on the other instance than its
primary's: the grant crosses instances through Redis. With one instance the server uses SQLite.

    .venv/bin/python bench/link_flows.py [--flows 1000] [--instances 2] [--processes 4] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_server import generous_servers
from loadgen import Channel, CpuMeter, Worker, cpu_now, percentile, postmaster_pid

COMPANIONS_PER_PRIMARY = 4


# --- the worker ------------------------------------------------------------------------------------


class Flow:
    """One companion linking: its task, and the code it shows now (refs rotate while it waits)."""

    def __init__(self, url: str, directory: Path) -> None:
        from lockstep.client.companion import ShownCode, link

        self.shown = asyncio.Event()
        self.code: Any = None

        def show(code: ShownCode) -> None:
            self.code = code.code
            self.shown.set()

        self.task = asyncio.create_task(link(url, directory, show))


async def worker() -> None:
    from lockstep.client.primary import PrimarySession, create_account

    channel = Channel()
    spec = await channel.read()
    urls, root = spec["urls"], Path(spec["root"])
    gate = asyncio.Semaphore(16)

    async def primary(index: int) -> PrimarySession:
        async with gate:
            url = urls[index % len(urls)]
            state = await create_account(url, f"bench{index}", f"Bench {index}", "Phone", root / f"p{index}")
            return await PrimarySession.open(state)

    mine: list[int] = spec["primaries"]
    primaries = await asyncio.gather(*(primary(i) for i in mine))
    flows: dict[int, list[Flow]] = {}
    for index in mine:  # each companion on the instance after its primary's
        url = urls[(index + 1) % len(urls)]
        flows[index] = [Flow(url, root / f"c{index}-{n}") for n in range(COMPANIONS_PER_PRIMARY)]
    everyone = [flow for group in flows.values() for flow in group]
    await asyncio.wait_for(asyncio.gather(*(flow.shown.wait() for flow in everyone)), timeout=600)
    channel.emit({"ready": len(everyone)})

    go = await channel.read()
    start_ns, interval_ns, total = int(go["start_ns"]), int(go["interval_ns"]), int(go["primaries"])
    latencies: list[int] = []
    failures: list[str] = []
    cpu_before = cpu_now()

    async def scan_all(session: PrimarySession, index: int) -> None:
        for number, flow in enumerate(flows[index]):
            due = start_ns + (number * total + index) * interval_ns  # primaries interleaved
            await asyncio.sleep(max(0, due - time.monotonic_ns()) / 1e9)
            started = time.monotonic_ns()
            try:
                await session.inspect(flow.code)
                await session.approve(flow.code, f"Companion {number}")
                companion = await flow.task
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}")
                continue
            latencies.append(time.monotonic_ns() - started)
            await companion.close()

    await asyncio.gather(*(scan_all(s, i) for s, i in zip(primaries, mine, strict=True)))
    channel.emit({"done": {"latencies_ns": latencies, "failures": failures, "cpu_s": cpu_now() - cpu_before}})
    await asyncio.gather(*(s.close() for s in primaries), return_exceptions=True)


# --- the orchestrator ------------------------------------------------------------------------------


async def orchestrate(args: argparse.Namespace, urls: list[str], cpu: CpuMeter) -> None:
    count = -(-args.flows // COMPANIONS_PER_PRIMARY)
    with tempfile.TemporaryDirectory() as root:
        workers = [
            await Worker.start(
                [sys.executable, __file__, "--worker"],
                {"urls": urls, "root": root, "primaries": list(range(count))[i :: args.processes]},
            )
            for i in range(args.processes)
        ]
        try:
            waiting = sum([await w.hear("ready", 900) for w in workers])
            print(f"{waiting} companions showing their codes, link sessions open on {len(urls)} instance(s)")
            interval_ns = int(1e9 / args.rate) if args.rate else 0
            start_ns = time.monotonic_ns() + 500_000_000
            for w in workers:
                await w.say({"start_ns": start_ns, "interval_ns": interval_ns, "primaries": count})
            await asyncio.sleep(0.5)
            cpu.start()
            results = [await w.hear("done", 900) for w in workers]
            elapsed = (time.monotonic_ns() - start_ns) / 1e9
            server_cpu = cpu.used()
        finally:
            for w in workers:
                await w.stop()
    latencies = sorted(ns / 1e6 for r in results for ns in r["latencies_ns"])
    failures = [f for r in results for f in r["failures"]]
    offered = f"scans at {args.rate:.0f}/s" if args.rate else "all scans at once"
    print(
        f"{len(latencies)} flows linked ({len(failures)} failed), {offered}, in {elapsed:.1f} s: "
        f"{len(latencies) / elapsed:.0f} links/s"
    )
    for failure in failures[:5]:
        print(f"  failed: {failure}")
    print(
        f"scan-to-linked latency: p50 {percentile(latencies, 0.5):.1f} ms, p99 "
        f"{percentile(latencies, 0.99):.1f} ms, max {percentile(latencies, 1.0):.1f} ms"
    )
    parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in server_cpu.items())
    total = sum(server_cpu.values())
    print(
        f"server CPU {parts} ({1000 * total / max(len(latencies), 1):.1f} ms per link); clients' CPU "
        f"{sum(r['cpu_s'] for r in results):.1f} s in {args.processes} processes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=2, choices=(1, 2))
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0, help="scans per second (0: all at once)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker())
        return
    print(
        f"{args.flows} link flows, {args.instances} instance(s), {args.processes} client processes; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        redis = postgres = None
        database_url = redis_url = None
        if args.instances > 1:
            from pg_server import start_postgres
            from redis_server import start_redis

            postgres = stack.enter_context(contextlib.closing(start_postgres()))
            redis = stack.enter_context(contextlib.closing(start_redis()))
            database_url, redis_url = postgres.create_database("links"), redis.url
        urls, servers = stack.enter_context(
            generous_servers(args.instances, redis_url, database_url=database_url)
        )
        roots = {"lockstep": [s.pid for s in servers]}
        if postgres is not None and redis is not None:
            roots["postgresql"] = [postmaster_pid(postgres.data_dir)]
            roots["redis"] = [redis.process.pid] if redis.process else []
        asyncio.run(orchestrate(args, urls, CpuMeter(roots)))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
