"""The PostgreSQL test harness itself: a real server, fresh databases, stop and start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pg_server import PostgresServer, start_postgres


def test_each_test_database_is_new_and_separate(postgres: PostgresServer) -> None:
    first, second = postgres.create_database(), postgres.create_database()
    assert first != second
    postgres.sql("CREATE TABLE marks (mark TEXT)", first.rsplit("/", 1)[1])
    postgres.sql("INSERT INTO marks VALUES ('here')", first.rsplit("/", 1)[1])
    assert postgres.sql("SELECT mark FROM marks", first.rsplit("/", 1)[1]).strip() == "here"
    with pytest.raises(RuntimeError, match="marks"):
        postgres.sql("SELECT mark FROM marks", second.rsplit("/", 1)[1])


def test_a_private_server_stops_and_starts_again_with_its_data() -> None:
    server = start_postgres()
    try:
        server.sql("CREATE TABLE kept (n INTEGER); INSERT INTO kept VALUES (7)")
        server.stop()
        with pytest.raises(RuntimeError, match=r"connect|refused"):
            server.sql("SELECT 1")
        server.start()
        assert server.sql("SELECT n FROM kept").strip() == "7"
    finally:
        server.close()
    with pytest.raises((RuntimeError, subprocess.CalledProcessError)):
        server.sql("SELECT 1")


def test_a_server_left_behind_by_a_killed_test_process_is_stopped() -> None:
    script = (
        "import os, sys; sys.path.insert(0, 'tests'); from pg_server import start_postgres; "
        "server = start_postgres(); print(server.url, server.base_dir, flush=True); os.kill(os.getpid(), 9)"
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    url, base_dir = killed.stdout.split()
    leftover = PostgresServer(url)
    deadline = time.monotonic() + 30
    while Path(base_dir).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(base_dir).exists()
    with pytest.raises(RuntimeError, match=r"connect|refused"):
        leftover.sql("SELECT 1")
