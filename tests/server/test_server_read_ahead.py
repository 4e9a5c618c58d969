"""The server keeps reading a socket while a few frames wait for the app (server/ws_protocol.py), and
stops only once they pile up: uvicorn's own protocol stops after every frame, two system calls each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect

from lockstep.server.runner import Listener, uvicorn_config
from lockstep.server.ws_protocol import READ_AHEAD_FRAMES, ReadAheadProtocol
from lockstep_servers import free_port

pytestmark = pytest.mark.anyio


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_reading_stops_only_when_frames_pile_up_and_resumes_once_the_app_took_them() -> None:
    app_may_read = asyncio.Event()

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket" and (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await app_may_read.wait()
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})

    port = free_port()
    server = uvicorn.Server(uvicorn_config(echo, Listener("127.0.0.1", port), lifespan=False))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        async with connect(f"ws://127.0.0.1:{port}/") as socket:
            (protocol,) = [p for p in server.server_state.connections if isinstance(p, ReadAheadProtocol)]
            await socket.send("0")
            await eventually(lambda: protocol.queue.qsize() == 1)
            assert protocol.transport.is_reading()  # uvicorn's own protocol has stopped reading here
            for number in range(1, READ_AHEAD_FRAMES):
                await socket.send(str(number))
            await eventually(lambda: not protocol.transport.is_reading())
            assert protocol.queue.qsize() == READ_AHEAD_FRAMES

            app_may_read.set()
            assert [await socket.recv() for _ in range(READ_AHEAD_FRAMES)] == [
                str(n) for n in range(READ_AHEAD_FRAMES)
            ]
            await eventually(protocol.transport.is_reading)
            await socket.send("again")  # and frames that come later are read as ever
            assert await socket.recv() == "again"
    finally:
        app_may_read.set()  # uvicorn waits for the app before it stops
        server.should_exit = True
        await serving
