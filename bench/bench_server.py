"""A Lockstep server for benchmarks: its own process on loopback, rate limits raised.

Every simulated device connects from 127.0.0.1, which the per-address and per-device limits (and the
cap on unauthenticated sockets per address) would otherwise stop within a minute. Run as a script it
serves (``bench_server.py PORT DATA [ORIGIN REDIS_URL PREFIX]``: with Redis, one of several instances
sharing it and the database); benchmarks use :func:`generous_server` or :func:`generous_servers`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lockstep_servers import free_port


def serve_with_generous_limits(
    port: int, data: str, origin: str | None = None, redis_url: str | None = None, prefix: str = "bench"
) -> None:
    import uvicorn

    from lockstep.server.admission import Admission, AdmissionLimits
    from lockstep.server.app import create_app
    from lockstep.server.backends import open_backends
    from lockstep.server.ratelimit import MemoryRateLimiter
    from lockstep.server.runner import Listener, uvicorn_config
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
        Store.for_url(sqlite_url(Path(data) / "bench.sqlite3")),
        hub=backends.hub,
        links=backends.links,
        media_tokens=backends.media_tokens,
        limits=limits,
        storage_limits=StorageLimits(**{**unlimited, "min_free_bytes": 0}),
        media_dir=Path(data) / "media",
        admission=Admission(AdmissionLimits(per_address=1_000_000, total=1_000_000)),
        allowed_origins=(f"http://127.0.0.1:{port}",),
    )
    app = create_app(services, default_web_root())
    uvicorn.Server(uvicorn_config(app, Listener("127.0.0.1", port))).run()


def _wait_until_up(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)


@contextlib.contextmanager
def generous_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the server, wait until it answers, yield ``(url, process)``; stop it afterwards."""
    with generous_servers(1) as (urls, processes):
        yield urls[0], processes[0]


@contextlib.contextmanager
def generous_servers(
    count: int, redis_url: str | None = None
) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    """``count`` instances sharing one SQLite database (and, for more than one, ``redis_url``)."""
    ports = [free_port() for _ in range(count)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    shared = [urls[0], redis_url, f"bench-{ports[0]}"] if redis_url else []
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
    serve_with_generous_limits(int(sys.argv[1]), sys.argv[2], *sys.argv[3:])
