"""A throwaway PostgreSQL for tests: ``initdb`` + ``pg_ctl`` from the machine's server binaries.

One server per test session (see the ``postgres`` fixture in ``conftest.py``), listening on
127.0.0.1 at a free port with its socket in a private folder; each test module or test gets its own
database from :meth:`PostgresServer.create_database`, which is quick, so tests stay isolated.
``LOCKSTEP_TEST_DATABASE_URL`` (a role allowed to ``CREATE DATABASE``) replaces the throwaway server.

initdb refuses to run as root, so under root the server runs as ``nobody`` and its folders belong to it.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from lockstep_servers import free_port

ENV_URL = "LOCKSTEP_TEST_DATABASE_URL"
SUPERUSER = "lockstep"
# A test server trades durability for speed: nothing in it outlives the session.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200")
_names = itertools.count(1)


def server_binaries() -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb (scripts/ensure-debian-packages.sh installs it)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: run scripts/ensure-debian-packages.sh")
    return Path(found[-1]).parent


def psql() -> str:
    return shutil.which("psql") or str(server_binaries() / "psql")


def with_database(url: str, name: str) -> str:
    """``url`` naming another database on the same server."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


@dataclass
class PostgresServer:
    """A PostgreSQL reachable at ``url`` (its maintenance database); ``create_database`` makes fresh ones."""

    url: str
    data_dir: Path | None = None
    """Set when this harness started the server (and so may stop and start it again)."""
    base_dir: Path | None = None
    _run_as: list[str] = field(default_factory=list)
    _watchdog: subprocess.Popen[bytes] | None = None

    def sql(self, statement: str, database: str | None = None) -> str:
        """Run one statement through psql and return what it printed (unaligned, tuples only)."""
        url = self.url if database is None else with_database(self.url, database)
        done = subprocess.run(
            [psql(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", statement],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{os.getpid()}_{next(_names)}".lower()
        self.sql(f'CREATE DATABASE "{name}"')
        return with_database(self.url, name)

    def _pg_ctl(self, *args: str) -> None:
        assert self.data_dir is not None, "only a server this harness started can be stopped or started"
        subprocess.run(
            [*self._run_as, str(server_binaries() / "pg_ctl"), "-D", str(self.data_dir), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        """Stop now (``-m fast``: connections are cut), keeping the data for :meth:`start`."""
        self._pg_ctl("stop", "-m", "fast", "-w")

    def start(self) -> None:
        assert self.base_dir is not None
        port = urllib.parse.urlsplit(self.url).port
        options = " ".join(
            [f"-p {port}", f"-k {self.base_dir / 'socket'}", "-c listen_addresses=127.0.0.1"]
            + [f"-c {setting}" for setting in FAST_SETTINGS]
        )
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.base_dir / "postgres.log"), "-o", options)

    def close(self) -> None:
        if self.data_dir is not None:
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                self._pg_ctl("stop", "-m", "immediate", "-w")
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._watchdog is not None:  # its work is done
            self._watchdog.kill()
            self._watchdog.wait()


# Stops the server if the test process dies without closing it (killed by a timeout, SIGKILL): a
# process of its own, polling the test process once a second; it leaves once the folder is gone.
WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, base, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while os.path.isdir(base):
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        subprocess.run(stop, capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)
        break
    time.sleep(1)
"""


def start_postgres() -> PostgresServer:
    """initdb a new cluster in a private temporary folder and start it on a free loopback port."""
    run_as: list[str] = []
    base_dir = Path(tempfile.mkdtemp(prefix="lockstep-pg-"))
    data_dir, socket_dir = base_dir / "data", base_dir / "socket"
    socket_dir.mkdir()
    if os.geteuid() == 0:  # initdb refuses root: the server runs as nobody, in folders it owns
        nobody = pwd.getpwnam("nobody")
        for path in (base_dir, socket_dir):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        run_as = ["runuser", "-u", "nobody", "--"]
    subprocess.run(
        [
            *run_as,
            str(server_binaries() / "initdb"),
            "-D",
            str(data_dir),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = PostgresServer(
        f"postgresql://{SUPERUSER}@127.0.0.1:{free_port()}/postgres", data_dir, base_dir, run_as
    )
    try:
        server.start()
    except BaseException:
        shutil.rmtree(base_dir, ignore_errors=True)
        raise
    stop = [*run_as, str(server_binaries() / "pg_ctl"), "-D", str(data_dir), "stop", "-m", "immediate"]
    server._watchdog = subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(base_dir), *stop],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server


def postgres_for_tests() -> PostgresServer:
    """The server ``LOCKSTEP_TEST_DATABASE_URL`` names, or a throwaway one."""
    url = os.environ.get(ENV_URL)
    return PostgresServer(url) if url else start_postgres()
