"""Malformed WebSocket input gets a typed error reply, never a crash; the socket keeps working."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers_frames import json_values, socketless_connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from lockstep.server.gateway import OPERATIONS, handle_frame
from lockstep.server.services import Services
from lockstep.server.store import Store

pytestmark = pytest.mark.anyio

MALFORMED = [
    ("not json", "hello", "bad_request"),
    ("array", "[1, 2]", "bad_request"),
    ("no id", '{"op": "auth"}', "bad_request"),
    ("string id", '{"id": "1", "op": "auth"}', "bad_request"),
    ("unknown op", '{"id": 1, "op": "drop.tables"}', "unknown_op"),
    ("auth without fields", '{"id": 1, "op": "auth"}', "bad_request"),
    ("bad base64", '{"id": 1, "op": "auth", "device_id": "x", "signature": "***"}', "bad_request"),
    ("short signature", '{"id": 1, "op": "auth", "device_id": "x", "signature": "AAAA"}', "bad_request"),
    ("inspect unauthenticated", '{"id": 1, "op": "link.inspect", "ref": "AAAA"}', "not_authenticated"),
    ("bad client kind", '{"id": 1, "op": "link.start", "client": "toaster"}', "bad_request"),
    ("deep nesting", '{"id": 1, "op": "auth", "x": ' + "[" * 5000 + "]" * 5000 + "}", "bad_request"),
    (
        "register with garbage list",
        json.dumps(
            {
                "id": 1,
                "op": "account.register",
                "handle": "zed",
                "display_name": "Z",
                "account_key": "A" * 43,
                "device_key": "A" * 43,
                "signature": "A" * 86,
                "device_list": {"payload": "e30", "signature": "A" * 86},
            }
        ),
        "invalid_device_list",
    ),
]


async def test_malformed_frames_get_precise_errors_and_the_socket_survives(live_server) -> None:
    async with connect(live_server.url.replace("http", "ws") + "/ws") as socket:
        assert json.loads(await socket.recv())["event"] == "hello"
        for name, frame, code in MALFORMED:
            await socket.send(frame)
            reply = json.loads(await socket.recv())
            assert reply["ok"] is False, name
            assert reply["error"]["code"] == code, (name, reply)
        await socket.send('{"id": 7, "op": "time.sync", "t1": 1}')
        assert json.loads(await socket.recv())["ok"] is True


async def test_binary_and_oversized_frames_close_the_socket(live_server) -> None:
    async with connect(live_server.url.replace("http", "ws") + "/ws", max_size=None) as socket:
        await socket.recv()
        await socket.send(b"\x00\x01")
        with pytest.raises(Exception):  # noqa: B017 - closed with 1003
            for _ in range(3):
                await asyncio.wait_for(socket.recv(), 5)
        assert socket.close_code == 1003


async def test_a_foreign_page_cannot_open_the_socket(live_server) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the handshake is refused or closed at once
        async with connect(
            live_server.url.replace("http", "ws") + "/ws", origin="https://evil.example"
        ) as socket:
            await asyncio.wait_for(socket.recv(), 5)


frames = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda op, fields, request_id: json.dumps({**fields, "id": request_id, "op": op}),
        st.sampled_from(sorted(OPERATIONS)),
        st.dictionaries(
            st.sampled_from(
                ["ref", "enc", "ciphertext", "device_list", "certificate", "handle", "t1", "client"]
            ),
            json_values(text_size=50, children=4, leaves=20),
        ),
        st.integers(min_value=-1, max_value=2**60),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames)
def test_random_frames_never_cause_an_internal_error(
    module_database_url, tmp_path_factory, frame: str
) -> None:
    async def run() -> dict[str, object]:
        store = Store.for_url(module_database_url)
        await store.open()
        services = Services(origin="http://127.0.0.1:1", store=store, media_dir=tmp_path_factory.mktemp("m"))
        connection = socketless_connection()
        try:
            return await handle_frame(services, connection, frame)
        finally:
            from lockstep.server.api_linking import end_link_session

            await end_link_session(services, connection)
            await store.close()

    reply = asyncio.run(run())
    assert reply.get("ok") is True or reply["error"]["code"] != "internal_error"  # type: ignore[index]
