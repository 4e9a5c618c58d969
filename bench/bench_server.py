"""A Lockstep server for benchmarks: its own process on loopback, rate limits raised.

Every simulated device connects from 127.0.0.1, which the per-address and per-device limits (and the
cap on unauthenticated sockets per address) would otherwise stop within a minute. Run as a script it
serves (``bench_server.py PORT DATA``); benchmarks use :func:`generous_server`.
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


def serve_with_generous_limits(port: int, data: str) -> None:
    import uvicorn

    from lockstep.server.admission import Admission, AdmissionLimits
    from lockstep.server.app import create_app
    from lockstep.server.ratelimit import MemoryRateLimiter
    from lockstep.server.runner import Listener, uvicorn_config
    from lockstep.server.services import Limits, Services
    from lockstep.server.settings import StorageLimits, default_web_root
    from lockstep.server.store import Store, sqlite_url

    many = MemoryRateLimiter(per_minute=1_000_000)
    limits = Limits(**{field.name: many for field in dataclasses.fields(Limits)})
    unlimited = {field.name: 2**50 for field in dataclasses.fields(StorageLimits)}
    services = Services(
        f"http://127.0.0.1:{port}",
        Store.for_url(sqlite_url(Path(data) / "bench.sqlite3")),
        limits=limits,
        storage_limits=StorageLimits(**{**unlimited, "min_free_bytes": 0}),
        media_dir=Path(data) / "media",
        admission=Admission(AdmissionLimits(per_address=1_000_000, total=1_000_000)),
    )
    app = create_app(services, default_web_root())
    uvicorn.Server(uvicorn_config(app, Listener("127.0.0.1", port))).run()


@contextlib.contextmanager
def generous_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the server, wait until it answers, yield ``(url, process)``; stop it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen([sys.executable, __file__, str(port), data])
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            yield url, server
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    serve_with_generous_limits(int(sys.argv[1]), sys.argv[2])
