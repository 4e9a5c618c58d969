"""A Lockstep server for benchmarks: its own process on loopback, rate limits raised.

Every simulated device connects from 127.0.0.1, which the per-address and per-device limits (and the
cap on unauthenticated sockets per address) would otherwise stop within a minute. Run as a script it
serves (``bench_server.py PORT DATA [--database URL] [--origin ORIGIN --redis URL --prefix P]``:
SQLite in DATA unless a database URL is given; with Redis, one of several instances sharing it and the
database); benchmarks use :func:`generous_server` or :func:`generous_servers`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lockstep_servers import free_port

TRACEMALLOC_ENV = "LOCKSTEP_BENCH_TRACEMALLOC"
"""Set to a path prefix: the server traces Python allocations and, on each SIGUSR1, dumps a snapshot
to PREFIX.0, PREFIX.1, … (bench/connections.py --tracemalloc reads them)."""
PROFILE_ENV = "LOCKSTEP_BENCH_PROFILE"
"""Set to a path prefix: SIGUSR1 starts profiling the server's thread (cProfile, counting CPU time, not
wall time: on a loaded box a sampling profiler blames whatever ran when the process was preempted),
SIGUSR2 stops and writes PREFIX.0, PREFIX.1, … (``python -m pstats`` reads them)."""


def _snapshots_on_signal(prefix: str) -> None:
    import signal
    import tracemalloc

    tracemalloc.start(12)
    numbers = itertools.count()

    def dump(_signum: int, _frame: object) -> None:
        path = f"{prefix}.{next(numbers)}"
        tracemalloc.take_snapshot().dump(path + ".part")
        os.rename(path + ".part", path)

    signal.signal(signal.SIGUSR1, dump)


def _profile_on_signal(prefix: str) -> None:
    import cProfile
    import signal

    numbers = itertools.count()
    profiles: list[cProfile.Profile] = []

    def start(_signum: int, _frame: object) -> None:
        profiles.append(cProfile.Profile(time.thread_time))
        profiles[-1].enable()

    def stop(_signum: int, _frame: object) -> None:
        if profiles:
            profile = profiles.pop()
            profile.disable()
            profile.dump_stats(f"{prefix}.{next(numbers)}")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def serve_with_generous_limits(
    port: int,
    data: str,
    origin: str | None = None,
    redis_url: str | None = None,
    prefix: str = "bench",
    database_url: str | None = None,
) -> None:
    import uvicorn

    from lockstep.server.admission import Admission, AdmissionLimits
    from lockstep.server.app import create_app
    from lockstep.server.backends import open_backends
    from lockstep.server.ratelimit import MemoryRateLimiter
    from lockstep.server.runner import Listener, raise_open_file_limit, uvicorn_config
    from lockstep.server.services import Limits, Services
    from lockstep.server.settings import StorageLimits, default_web_root
    from lockstep.server.store import Store, sqlite_url

    backends = open_backends(redis_url, prefix)
    if redis_url:  # the shared buckets, as in production, with room for every simulated device
        from lockstep.server.redis_backend import RedisRateLimiter, connect

        client = connect(redis_url)
        limits = Limits.build(
            lambda name, rate, window: RedisRateLimiter(client, prefix, name, 10**6, window)
        )
    else:
        many = MemoryRateLimiter(per_minute=1_000_000)
        limits = Limits(**{field.name: many for field in dataclasses.fields(Limits)})
    unlimited = {field.name: 2**50 for field in dataclasses.fields(StorageLimits)}
    origin = origin or f"http://127.0.0.1:{port}"
    services = Services(
        origin,
        Store.for_url(database_url or sqlite_url(Path(data) / "bench.sqlite3")),
        hub=backends.hub,
        links=backends.links,
        media_tokens=backends.media_tokens,
        media_uploads=backends.media_uploads,
        limits=limits,
        storage_limits=StorageLimits(**{**unlimited, "min_free_bytes": 0}),
        media_dir=Path(data) / "media",
        admission=Admission(AdmissionLimits(per_address=1_000_000, total=1_000_000)),
        allowed_origins=(f"http://127.0.0.1:{port}",),
    )
    app = create_app(services, default_web_root())
    raise_open_file_limit()  # as `lockstep serve` does: one descriptor per socket
    if os.environ.get(TRACEMALLOC_ENV):
        _snapshots_on_signal(os.environ[TRACEMALLOC_ENV])
    if os.environ.get(PROFILE_ENV):
        _profile_on_signal(os.environ[PROFILE_ENV])
    uvicorn.Server(uvicorn_config(app, Listener("127.0.0.1", port))).run()


def _wait_until_up(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)


@contextlib.contextmanager
def generous_server(database_url: str | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the server, wait until it answers, yield ``(url, process)``; stop it afterwards."""
    with generous_servers(1, database_url=database_url) as (urls, processes):
        yield urls[0], processes[0]


@contextlib.contextmanager
def generous_servers(
    count: int, redis_url: str | None = None, *, database_url: str | None = None
) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    """``count`` instances sharing one database (SQLite unless ``database_url``) and, for more than
    one, ``redis_url``."""
    ports = [free_port() for _ in range(count)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    shared = ["--origin", urls[0], "--redis", redis_url, "--prefix", f"bench-{ports[0]}"] if redis_url else []
    shared += ["--database", database_url] if database_url else []
    with tempfile.TemporaryDirectory() as data:
        servers = [subprocess.Popen([sys.executable, __file__, str(port), data, *shared]) for port in ports]
        try:
            for url in urls:
                _wait_until_up(url)
            yield urls, servers
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("data")
    parser.add_argument("--origin")
    parser.add_argument("--redis")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--database")
    args = parser.parse_args()
    serve_with_generous_limits(args.port, args.data, args.origin, args.redis, args.prefix, args.database)
