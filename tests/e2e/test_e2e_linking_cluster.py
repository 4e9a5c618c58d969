"""Linking across server instances in real Chromium: the computer's page is served by one instance, the
phone (the terminal primary) talks to another; both share a database and Redis (issue 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lockstep_cli import lockstep
from lockstep_cluster import cluster
from pg_server import PostgresServer
from phone_linking import TIMEOUT, open_companion
from redis_server import RedisServer

pytestmark = pytest.mark.browser


def test_a_browser_companion_on_one_instance_is_linked_and_unlinked_from_another(
    computer: Any, tmp_path: Path, redis: RedisServer, postgres: PostgresServer
) -> None:
    with cluster(tmp_path, redis, postgres, 2) as servers:
        state = tmp_path / "primary"
        created = lockstep(
            "primary",
            "init",
            "--server",
            servers.url(1),
            "--handle",
            "dana",
            "--name",
            "Dana",
            "--state",
            str(state),
        )
        assert created.returncode == 0, created.stderr
        laptop = open_companion(computer, servers.url(0))
        laptop.get_by_test_id("qr").screenshot(path=str(tmp_path / "qr.png"))
        scanned = lockstep(
            "primary", "scan", "--image", str(tmp_path / "qr.png"), "--yes", "--state", str(state)
        )
        assert scanned.returncode == 0, scanned.stderr
        laptop.get_by_test_id("linked-account").wait_for(timeout=TIMEOUT)
        assert "@dana" in laptop.get_by_test_id("linked-account").inner_text()

        unlinked = lockstep("primary", "unlink", "Chrome 156 on Linux", "--state", str(state))
        assert unlinked.returncode == 0, unlinked.stderr + unlinked.stdout
        laptop.get_by_test_id("logged-out").wait_for(timeout=TIMEOUT)  # told through Redis, at once
