"""A throwaway Redis for tests: Debian's ``redis-server`` on a free loopback port, nothing saved.

One server per test session (the ``redis`` fixture in ``conftest.py``); tests keep apart by giving each
Lockstep deployment its own key and channel prefix (:func:`new_prefix`). ``LOCKSTEP_TEST_REDIS_URL``
replaces the throwaway server (then :meth:`RedisServer.restart` is not available). A private server
can be killed and started again on the same port, for the Redis-restart fault test.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from lockstep_servers import free_port

ENV_URL = "LOCKSTEP_TEST_REDIS_URL"
REDIS_SERVER = "/usr/bin/redis-server"
_prefixes = itertools.count(1)


def new_prefix(name: str = "test") -> str:
    """A key and channel prefix no other deployment in this test session uses."""
    return f"{name}-{os.getpid()}-{next(_prefixes)}"


@dataclass
class RedisServer:
    url: str
    port: int = 0
    """Set when this harness started the server (and so may stop and start it)."""
    base_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        assert self.base_dir is not None, "only a server this harness started can be started"
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.base_dir)]
        with (self.base_dir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.base_dir / 'redis.log').read_text()}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start in 10 s")

    def ping(self) -> bool:
        """A RESP PING over a plain socket (the harness needs no client library)."""
        parts = urllib.parse.urlsplit(self.url)
        try:
            with socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1
            ) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: whatever Redis held is gone (it saves nothing)."""
        assert self.process is not None, "only a server this harness started can be killed"
        self.process.kill()
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def start_redis() -> RedisServer:
    if not os.access(REDIS_SERVER, os.X_OK):
        raise RuntimeError(f"{REDIS_SERVER} is missing: run scripts/ensure-debian-packages.sh")
    port = free_port()
    server = RedisServer(
        f"redis://127.0.0.1:{port}/0", port, Path(tempfile.mkdtemp(prefix="lockstep-redis-"))
    )
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def redis_for_tests() -> RedisServer:
    """The server ``LOCKSTEP_TEST_REDIS_URL`` names, or a throwaway one."""
    url = os.environ.get(ENV_URL)
    return RedisServer(url) if url else start_redis()
