"""What an idle signed-in socket costs the server: no per-message compression state, no leftover timer.

The connections benchmark (bench/connections.py, docs/benchmarks.md) counts server memory per idle
device; these are the two things that took most of it and that a change could quietly bring back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from lockstep.client.primary import create_account
from lockstep.client.session import DeviceSession
from lockstep_servers import LiveServer

pytestmark = pytest.mark.anyio


async def test_the_server_declines_per_message_compression(live_server: LiveServer) -> None:
    # websockets offers permessage-deflate by default, as browsers do; zlib streams for it would cost
    # the server about 34 KiB for every open socket.
    async with connect(live_server.url.replace("http", "ws", 1) + "/ws") as socket:
        assert socket.response is not None
        assert "Sec-WebSocket-Extensions" not in socket.response.headers
        assert socket.protocol.extensions == []
        assert "challenge" in await socket.recv()  # and the protocol works as ever


def deadline_timers() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "ws-deadline" and not t.done()]


async def test_a_signed_in_socket_keeps_no_sign_in_deadline_timer(
    live_server: LiveServer, tmp_path: Path
) -> None:
    state = await create_account(live_server.url, "idle", "Idle", "Phone", tmp_path / "idle")
    waiting = await connect(live_server.url.replace("http", "ws", 1) + "/ws")  # never signs in
    await waiting.recv()
    assert len(deadline_timers()) == 1  # the unauthenticated socket is still timed
    session = await DeviceSession.open(state)
    try:
        assert len(deadline_timers()) == 1  # ... and the signed-in one is not
    finally:
        await session.close()
        await waiting.close()
