"""Scan-to-linked latency with many concurrent link flows, on loopback.

A server runs in a child process with rate limits raised (bench_server.py). Primaries are Python
clients; each links up to four terminal companions, one after another, while many primaries work at
once. A flow is timed from the companion receiving its code to the companion holding a verified
grant and having authenticated with its new identity: inspect, approve (certificate, signed list,
HPKE), relay, open, verify, store, auth.

    .venv/bin/python bench/link_flows.py [--primaries 50] [--concurrency 16] [--instances 2]

With ``--instances 2`` two servers share the database and a throwaway Redis, and every companion
shows its code on the other instance than its primary's: each flow crosses instances.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench_server import generous_servers

from lockstep.client.companion import ShownCode, link
from lockstep.client.primary import PrimarySession, create_account
from redis_server import start_redis

COMPANIONS_PER_PRIMARY = 4


async def one_primary(
    urls: list[str], index: int, root: Path, gate: asyncio.Semaphore, latencies: list[float]
) -> None:
    url = urls[index % len(urls)]  # the primary's instance; its companions use the next one
    companion_url = urls[(index + 1) % len(urls)]
    async with gate:
        state = await create_account(url, f"bench{index}", f"Bench {index}", "Phone", root / f"p{index}")
        primary = await PrimarySession.open(state)
        try:
            for flow in range(COMPANIONS_PER_PRIMARY):
                shown: asyncio.Queue[tuple[float, ShownCode]] = asyncio.Queue()

                def note(code: ShownCode, shown: asyncio.Queue[tuple[float, ShownCode]] = shown) -> None:
                    shown.put_nowait((time.perf_counter(), code))

                task = asyncio.create_task(link(companion_url, root / f"c{index}-{flow}", note))
                started, code = await shown.get()
                await primary.inspect(code.code)
                await primary.approve(code.code, f"Companion {flow}")
                session = await task
                latencies.append(time.perf_counter() - started)
                await session.close()
        finally:
            await primary.close()


async def run(urls: list[str], primaries: int, concurrency: int) -> None:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        await asyncio.gather(*(one_primary(urls, i, Path(root), gate, latencies) for i in range(primaries)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"flows: {len(latencies)} ({primaries} primaries x {COMPANIONS_PER_PRIMARY}), "
        f"{concurrency} primaries at once"
    )
    print(
        f"throughput: {len(latencies) / elapsed:.1f} links/s over {elapsed:.1f} s (account creation included)"
    )
    print(
        f"scan-to-linked latency: p50 {statistics.median(ordered) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--primaries", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--instances", type=int, default=1, help="servers sharing Redis (default 1)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        redis_url = None
        if args.instances > 1:
            redis_url = stack.enter_context(contextlib.closing(start_redis())).url
        urls, _servers = stack.enter_context(generous_servers(args.instances, redis_url))
        asyncio.run(run(urls, args.primaries, args.concurrency))
    clients, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"CPU: server {children.ru_utime + children.ru_stime:.2f} s, "
        f"clients (both roles, one process) {clients.ru_utime + clients.ru_stime:.2f} s"
    )


if __name__ == "__main__":
    main()
