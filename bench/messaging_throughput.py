"""Messaging throughput, delivery latency and server CPU: Lockstep (SQLite, PostgreSQL, two instances on
PostgreSQL + Redis), Synapse on PostgreSQL and ejabberd, side by side in one run, on loopback.

The same workload for every server: ``--senders`` accounts with one device each and ``--recipients``
accounts with two devices each (Lockstep: a primary and a companion linked by scanning; Synapse: two
logins; ejabberd: two resources with message carbons), every message to one recipient account, so it
reaches exactly 2 devices; bodies are the size of a real Olm message carrying a 60-character text.
The devices are played by ``--processes`` worker processes (loadgen.py), so the clients are not the
limit. Senders send for ``--seconds``, each the next message once the server accepted the previous
one (closed loops: throughput at saturation) or, with ``--rate``, at that total offered rate.

Figures per server: messages/s (sent and accepted, over the time until the last copy arrived),
p50/p99 delivery latency (send to receiving device, across processes on one monotonic clock), and
server CPU per delivered copy: the CPU time of the server's processes — including its PostgreSQL and
Redis, where it has them — over the run, divided by the copies delivered. Then ratios: each
Lockstep set-up against Synapse (messages/s) and against ejabberd (CPU per delivered copy).

    .venv/bin/python bench/messaging_throughput.py [--seconds 20] [--senders 50] [--recipients 25]
        [--processes 4] [--rate R] [--targets sqlite,postgresql,cluster,synapse,ejabberd]

Synapse and slixmpp are installed on first use into venvs in ``$LOCKSTEP_BENCH_CACHE`` (default
``~/.cache/lockstep-bench``); Debian's ejabberd is installed when missing (as root). PostgreSQL and
Redis are throwaway servers started by the test harness (tests/pg_server.py, tests/redis_server.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_server import generous_server
from loadgen import CpuMeter, Outcome, describe, figures, postmaster_pid, run_fleet, worker_specs

BENCH = Path(__file__).resolve().parent
TARGETS = ("sqlite", "postgresql", "cluster", "synapse", "ejabberd")
NAMES = {
    "sqlite": "Lockstep, SQLite",
    "postgresql": "Lockstep, PostgreSQL",
    "cluster": "Lockstep x2, PostgreSQL + Redis",
    "synapse": "Synapse, PostgreSQL",
    "ejabberd": "ejabberd",
}


@contextlib.contextmanager
def lockstep_servers(
    count: int, database_url: str | None, redis_url: str | None
) -> Iterator[tuple[list[str], list[int]]]:
    if count == 1:
        with generous_server(database_url) as (url, server):
            yield [url], [server.pid]
        return
    from bench_server import generous_servers

    with generous_servers(count, redis_url, database_url=database_url) as (urls, servers):
        yield urls, [s.pid for s in servers]


def run_lockstep(
    args: argparse.Namespace,
    body_bytes: int,
    count: int,
    database_url: str | None,
    extra: dict[str, list[int]],
    redis_url: str | None = None,
) -> Outcome:
    import lockstep_load

    with (
        lockstep_servers(count, database_url, redis_url) as (urls, pids),
        tempfile.TemporaryDirectory() as root,
    ):
        devices = asyncio.run(lockstep_load.prepare(urls, args.senders, args.recipients, Path(root)))
        specs = worker_specs(devices, args.processes, body_bytes)
        cpu = CpuMeter({"lockstep": pids, **extra})
        command = [sys.executable, str(BENCH / "lockstep_load.py")]
        return asyncio.run(run_fleet(command, specs, cpu, seconds=args.seconds, rate=args.rate))


def run_synapse(args: argparse.Namespace, body_bytes: int, cache: Path, postgres: Any) -> Outcome:
    import synapse_peer

    from lockstep_servers import free_port

    python = args.synapse or synapse_peer.ensure_venv(cache)
    version = subprocess.run(
        [python, "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"  Synapse {version}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        server = synapse_peer.start(python, Path(directory), port, postgres.create_database("synapse"))
        try:
            base = f"http://127.0.0.1:{port}"
            devices = asyncio.run(synapse_peer.prepare(base, Path(directory), args.senders, args.recipients))
            specs = worker_specs(devices, args.processes, body_bytes, base=base)
            cpu = CpuMeter({"synapse": [server.pid], "postgresql": [postmaster_pid(postgres.data_dir)]})
            command = [sys.executable, str(BENCH / "synapse_peer.py")]
            return asyncio.run(run_fleet(command, specs, cpu, seconds=args.seconds, rate=args.rate))
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)


def run_ejabberd(args: argparse.Namespace, body_bytes: int, cache: Path) -> Outcome:
    import ejabberd_peer

    print(f"  ejabberd {ejabberd_peer.ensure_installed()} (Debian)", flush=True)
    python = ejabberd_peer.ensure_venv(cache)
    with ejabberd_peer.ejabberd() as (c2s_port, http_port, vm):
        devices = ejabberd_peer.prepare(http_port, args.senders, args.recipients)
        specs = worker_specs(devices, args.processes, body_bytes, port=c2s_port)
        cpu = CpuMeter({"ejabberd": [vm]})
        command = [python, str(BENCH / "ejabberd_peer.py")]
        return asyncio.run(run_fleet(command, specs, cpu, seconds=args.seconds, rate=args.rate))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--recipients", type=int, default=25)
    parser.add_argument("--processes", type=int, default=4, help="client worker processes per server")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered messages/s in total (default: closed loops)"
    )
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}"
    )
    parser.add_argument(
        "--synapse", metavar="PYTHON", help="a Python with matrix-synapse[postgres] (default: own venv)"
    )
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    cache = Path(os.environ.get("LOCKSTEP_BENCH_CACHE", "~/.cache/lockstep-bench")).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from lockstep_load import typical_ciphertext_bytes

    body_bytes = typical_ciphertext_bytes()
    mode = f"{args.rate:.0f} messages/s offered" if args.rate else "closed loops (as fast as accepted)"
    print(
        f"{args.senders} senders x 1 device, {args.recipients} recipients x 2 devices, every message to 2 "
        f"devices; {body_bytes}-byte bodies; {args.processes} client processes per server; "
        f"{args.seconds:.0f} s, {mode}; load average before: {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    outcomes: dict[str, Outcome] = {}
    with contextlib.ExitStack() as stack:
        postgres = redis = None
        if {"postgresql", "cluster", "synapse"} & set(targets):
            from pg_server import start_postgres

            postgres = stack.enter_context(contextlib.closing(start_postgres()))
        if "cluster" in targets:
            from redis_server import start_redis

            redis = stack.enter_context(contextlib.closing(start_redis()))
        for target in targets:
            print(f"{NAMES[target]} ...", flush=True)
            if target == "sqlite":
                outcome = run_lockstep(args, body_bytes, 1, None, {})
            elif target == "postgresql":
                assert postgres is not None
                pg = {"postgresql": [postmaster_pid(postgres.data_dir)]}
                outcome = run_lockstep(args, body_bytes, 1, postgres.create_database("lockstep"), pg)
            elif target == "cluster":
                assert postgres is not None and redis is not None
                shared = {
                    "postgresql": [postmaster_pid(postgres.data_dir)],
                    "redis": [redis.process.pid] if redis.process else [],
                }
                url = postgres.create_database("lockstep")
                outcome = run_lockstep(args, body_bytes, 2, url, shared, redis.url)
            elif target == "synapse":
                outcome = run_synapse(args, body_bytes, cache, postgres)
            else:
                outcome = run_ejabberd(args, body_bytes, cache)
            outcomes[target] = outcome
            print("  " + describe(NAMES[target], outcome), flush=True)
    report(outcomes)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def report(outcomes: dict[str, Outcome]) -> None:
    table = {target: figures(outcome) for target, outcome in outcomes.items()}
    print()
    print("| server | messages/s | p50 | p99 | server CPU per delivered copy | copies missing / duplicated |")
    print("|---|---|---|---|---|---|")
    for target, f in table.items():
        outcome = outcomes[target]
        print(
            f"| {NAMES[target]} | {f['messages/s']:.0f} | {f['p50 ms']:.1f} ms | {f['p99 ms']:.1f} ms | "
            f"{f['server CPU ms/delivery']:.3f} ms | {outcome.expected - outcome.delivered} / "
            f"{outcome.duplicates} |"
        )
    for target in ("sqlite", "postgresql", "cluster"):
        if target not in table:
            continue
        ours = table[target]
        parts = []
        if "synapse" in table:
            parts.append(f"messages/s {ours['messages/s'] / table['synapse']['messages/s']:.1f}x Synapse's")
            parts.append(f"p99 {ours['p99 ms'] / table['synapse']['p99 ms']:.2f}x")
        if "ejabberd" in table:
            ratio = ours["server CPU ms/delivery"] / table["ejabberd"]["server CPU ms/delivery"]
            parts.append(f"server CPU per delivered copy {ratio:.2f}x ejabberd's")
            parts.append(f"messages/s {ours['messages/s'] / table['ejabberd']['messages/s']:.2f}x ejabberd's")
        if parts:
            print(f"{NAMES[target]}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
