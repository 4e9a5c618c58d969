"""Server time over the WebSocket (time.sync): a device with a wrong clock still signs server time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers_linking import link_one, primary

from lockstep.client import timesync
from lockstep.client.connection import ServerConnection

pytestmark = pytest.mark.anyio


async def test_a_device_clock_ahead_by_an_hour_is_measured(live_server, monkeypatch) -> None:
    real = timesync._local_seconds
    monkeypatch.setattr(timesync, "_local_seconds", lambda: real() + 3600)
    live_server.clock.tick_with_real_time()
    connection = await ServerConnection.open(live_server.url)
    try:
        clock = await timesync.measure(connection)
    finally:
        await connection.close()
    assert abs(clock.offset_s + 3600) < 0.05  # loopback: the error is milliseconds at most
    assert clock.error_s < 0.05
    assert clock.far_off and "ahead of the server" in clock.describe()
    assert abs(clock.now_ms() - time.time_ns() // 1_000_000) < 50


async def test_time_sync_reads_the_server_clock(live_server) -> None:
    """Every server time comes from one clock: a server clock ten minutes ahead is what devices
    measure (the tests' fake clock reaches time.sync like every other server time)."""
    live_server.clock.now = time.time_ns() // 1_000_000 + 600_000
    connection = await ServerConnection.open(live_server.url)
    try:
        reply = await connection.request("time.sync", t1=1.5)
        live_server.clock.tick_with_real_time(ahead_ms=600_000)
        clock = await timesync.measure(connection)
    finally:
        await connection.close()
    assert reply == {"t1": 1.5, "t2": live_server.clock.now, "t3": live_server.clock.now}
    assert abs(clock.offset_s - 600) < 0.05


async def test_device_lists_carry_server_time_even_when_the_phone_clock_is_wrong(
    live_server, tmp_path: Path, monkeypatch
) -> None:
    real = timesync._local_seconds
    monkeypatch.setattr(timesync, "_local_seconds", lambda: real() - 86400)  # a day behind
    async with primary(live_server.url, tmp_path / "p") as phone:
        laptop = await link_one(live_server.url, phone, tmp_path / "c")
        entry = phone.state.devices.find(laptop.state.device_id)
        assert entry is not None
        assert abs(entry.linked_at - time.time_ns() // 1_000_000) < 5_000
        assert abs(phone.state.devices.primary.linked_at - time.time_ns() // 1_000_000) < 5_000
        await laptop.close()


async def test_time_sync_rejects_a_missing_t1(live_server) -> None:
    connection = await ServerConnection.open(live_server.url)
    try:
        with pytest.raises(Exception, match="'t1' must be a number"):
            await connection.request("time.sync")
    finally:
        await connection.close()
