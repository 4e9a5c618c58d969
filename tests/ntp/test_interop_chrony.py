"""Interoperation with a real chronyd (chrony 4) on loopback, never touching the system clock."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from lockstep.ntp.aio import clock
from lockstep.ntp.aio.client import query
from lockstep.ntp.client import NtpClient
from lockstep.ntp.events import ClockUpdated
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from ntp.ntp_peers import (
    Chronyd,
    lockstep_ntp,
    parse_sources,
    run_monitor,
    run_server_in_thread,
    start_chronyd,
    stop_chronyd,
)

pytestmark = pytest.mark.interop


def test_query_against_chronyd_reads_stratum_refid_and_near_zero_offset(
    chronyd_server: Chronyd,
) -> None:
    result = asyncio.run(query(f"127.0.0.1:{chronyd_server.port}", timeout=5))
    assert result.info.stratum == 8  # `local stratum 8`
    assert result.info.reference_id == 0x7F7F0101  # chrony's local reference, 127.127.1.1
    assert abs(result.offset) < 0.001
    assert 0 < result.delay < 0.01


def test_cli_query_json_against_chronyd(chronyd_server: Chronyd) -> None:
    completed = lockstep_ntp("query", f"127.0.0.1:{chronyd_server.port}", "--json")
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    assert answer["leap"] == "no warning"
    assert abs(answer["offset"]) < 0.001
    assert answer["reference_id"] == "127.127.1.1"


def test_monitor_against_chronyd_converges_within_a_millisecond(
    chronyd_server: Chronyd,
) -> None:
    client = NtpClient(precision=clock.measure_precision())
    events = run_monitor(client, f"127.0.0.1:{chronyd_server.port}", 9, minpoll=4, maxpoll=4)
    updates = [event for event in events if isinstance(event, ClockUpdated)]
    assert updates, "no clock update within 9 s of iburst"
    assert client.system is not None
    assert abs(client.system.offset) < 0.001
    assert client.system.stratum == 9


def test_chronyd_client_selects_our_server(tmp_path: Path) -> None:
    core = NtpServer(
        ServerState.local(stratum=3, now=clock.now(), precision=-20),
        rate_limit=RateLimit(average_rate=4, burst=16),
    )
    with run_server_in_thread(core) as server:
        chronyd = start_chronyd(
            tmp_path / "chronyd-client",
            [f"server 127.0.0.1 port {server.port} iburst minpoll -1 maxpoll -1"],
        )
        try:
            deadline = time.monotonic() + 30
            state = ""
            while time.monotonic() < deadline:
                state = parse_sources(chronyd.chronyc("sources")).get("127.0.0.1", "")
                if state == "^*":
                    break
                time.sleep(0.5)
            assert state == "^*", chronyd.chronyc("sources") + chronyd.log()
            tracking = chronyd.chronyc("-c", "tracking").split(",")
            # CSV: refid, name, stratum, ref time, system time, last offset, ...
            assert int(tracking[2]) == 4  # one below our stratum 3
            assert abs(float(tracking[5])) < 0.001  # last offset: sane
        finally:
            stop_chronyd(chronyd)
    assert core.counters.replied >= 3
    assert core.counters.dropped == {}
