"""A server slow to answer, as the Python client sees it: a real `lockstep serve` process paused with
SIGSTOP, so requests are sent but no answer comes until it is resumed (issue 15: a 1,024-member send
under load was cut by a fixed 30 s timeout)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from lockstep.client.connection import ServerConnection, request_timeout
from lockstep.client.errors import RequestTimedOut, ServerRefused
from lockstep_servers import ServerProcess

pytestmark = pytest.mark.anyio

BASE = 0.3
"""The connection's timeout for a small request here (30 s in use)."""


def test_a_larger_request_gets_more_time() -> None:
    assert request_timeout(100, BASE) < request_timeout(60_000, BASE)
    assert request_timeout(60_000) == pytest.approx(90)  # the largest request a client sends


async def test_a_small_request_times_out_and_a_large_one_waits_for_its_answer(
    server_process: ServerProcess,
) -> None:
    connection = await ServerConnection.open(server_process.url, request_timeout=BASE)
    pid = server_process.process.pid
    try:
        os.kill(pid, signal.SIGSTOP)
        resume = threading.Timer(1.0, os.kill, (pid, signal.SIGCONT))
        try:
            started = time.monotonic()
            with pytest.raises(RequestTimedOut, match=r"did not answer groups\.list"):
                await connection.request("groups.list")
            assert time.monotonic() - started < 1.0  # given up while the server is still paused
            resume.start()
            # About 3,000 characters: 3 s more than a small request, enough to outlast the pause.
            with pytest.raises(ServerRefused) as answered:
                await connection.request("groups.list", padding="x" * 3_000)
            assert answered.value.code == "not_authenticated"
            assert time.monotonic() - started >= 1.0
        finally:
            resume.cancel()
            resume.join()
            os.kill(pid, signal.SIGCONT)
        # The first request's late answer was dropped: the next request gets its own.
        with pytest.raises(ServerRefused) as again:
            await connection.request("keys.claim", device_ids=["x"])
        assert again.value.code == "not_authenticated"
    finally:
        await connection.close()
