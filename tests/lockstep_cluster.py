"""Several ``lockstep serve`` processes acting as one server: one PostgreSQL database, one Redis, one
public origin, one media folder, each instance on its own loopback port (what docs/deploy.md sets up behind a
load balancer; tests pick the instance a client talks to themselves)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lockstep_servers import ServerProcess, free_port, start_server
from pg_server import PostgresServer
from redis_server import RedisServer, new_prefix


@dataclass
class Cluster:
    origin: str
    data_dir: Path
    logs: Path
    redis: RedisServer
    database_url: str
    prefix: str
    ports: list[int]
    instances: dict[int, ServerProcess] = field(default_factory=dict)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def start(self, index: int) -> ServerProcess:
        args = ["--public-origin", self.origin, "--database", self.database_url]
        args += ["--redis", self.redis.url, "--redis-prefix", self.prefix]
        for port in self.ports:  # behind a load balancer every instance has the public name; here
            args += ["--allowed-origin", f"http://127.0.0.1:{port}"]  # clients pick an instance by port
        server = start_server(
            self.data_dir, self.logs / f"instance-{index}.log", *args, port=self.ports[index]
        )
        self.instances[index] = server
        return server

    def kill(self, index: int) -> None:
        """SIGKILL, as a crash or the OOM killer would: nothing is flushed or closed."""
        process = self.instances[index].process
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def log(self, index: int) -> str:
        return (self.logs / f"instance-{index}.log").read_text(errors="replace")

    def stop(self) -> None:
        for server in self.instances.values():
            if server.process.poll() is None:
                server.process.terminate()
        for server in self.instances.values():
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()


@contextlib.contextmanager
def cluster(tmp_path: Path, redis: RedisServer, postgres: PostgresServer, size: int) -> Iterator[Cluster]:
    """``size`` instances sharing a new PostgreSQL database, Redis and a media folder; the public
    origin is the first instance's address."""
    ports = [free_port() for _ in range(size)]
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    database_url = postgres.create_database("cluster")
    origin = f"http://127.0.0.1:{ports[0]}"
    group = Cluster(origin, tmp_path / "data", logs, redis, database_url, new_prefix("cluster"), ports)
    try:
        for index in range(size):
            group.start(index)
        yield group
    finally:
        group.stop()
