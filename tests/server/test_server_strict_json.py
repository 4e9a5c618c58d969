"""Numbers JSON cannot carry (NaN, ±Infinity, 1e999, integers past the double range) are refused with
``bad_request`` in every request, and whatever the server sends is strict JSON (RFC 8259 §6)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from lockstep.link.encoding import parse_json_object
from lockstep.link.errors import EncodingError
from lockstep.server.gateway import OPERATIONS
from lockstep_servers import ServerProcess, start_server

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "9" * 5000]


def strict_loads(text: str) -> Any:
    """Parse as RFC 8259 JSON only: a non-finite number anywhere fails the test."""

    def refuse(token: str) -> Any:
        raise AssertionError(f"the server sent {token!r}, which is not JSON")

    def finite(token: str) -> float:
        value = float(token)
        assert math.isfinite(value), f"the server sent {token!r}, which has no finite value"
        return value

    return json.loads(text, parse_constant=refuse, parse_float=finite)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("strict-json")
    process = start_server(folder / "data", folder / "server.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def socket(server: ServerProcess) -> Iterator[ClientConnection]:
    with connect(server.url.replace("http", "ws") + "/ws", max_size=None) as client:
        strict_loads(str(client.recv(timeout=5)))  # hello
        yield client


def exchange(socket: ClientConnection, frame: str, request_id: int | None) -> dict[str, Any]:
    """Send one frame; return its reply, checking every frame received on the way (events too)."""
    socket.send(frame)
    for _ in range(20):
        message = strict_loads(str(socket.recv(timeout=5)))
        if "event" not in message:
            assert message["id"] == request_id, message
            return dict(message)
    raise AssertionError("no reply among 20 frames")


@pytest.mark.parametrize("token", NON_FINITE)
def test_time_sync_refuses_a_non_finite_t1_and_names_the_request(
    socket: ClientConnection, token: str
) -> None:
    reply = exchange(socket, f'{{"id": 41, "op": "time.sync", "t1": {token}}}', 41)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "bad_request"
    assert "finite" in reply["error"]["message"]


@pytest.mark.parametrize("token", NON_FINITE[:4])
def test_a_non_finite_number_anywhere_in_any_request_is_refused(socket: ClientConnection, token: str) -> None:
    frame = f'{{"id": 42, "op": "auth", "device_id": "x", "signature": "AAAA", "extra": [{{"a": {token}}}]}}'
    reply = exchange(socket, frame, 42)
    assert reply["error"]["code"] == "bad_request"
    assert "finite" in reply["error"]["message"]


def test_an_ordinary_time_sync_still_works(socket: ClientConnection) -> None:
    reply = exchange(socket, '{"id": 43, "op": "time.sync", "t1": 1700000000000.25}', 43)
    assert reply["ok"] is True and reply["result"]["t1"] == 1700000000000.25


def test_signed_payloads_refuse_non_finite_numbers() -> None:
    assert parse_json_object(b'{"version": 1.5e300}', what="list") == {"version": 1.5e300}
    for token in NON_FINITE:
        with pytest.raises(EncodingError, match="cannot carry"):
            parse_json_object(f'{{"version": {token}}}'.encode(), what="list")


# Frames as a client might write them: any op, fields of any JSON shape, where a number may be one that
# JSON cannot carry. Python's json.dumps writes NaN/Infinity as tokens; OVERSIZED stands for the rest.
OVERSIZED = "__oversized_number__"
numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(OVERSIZED),
)
values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(["t1", "ref", "client", "device_id", "signature", "handle", "to", "payload"])
_ids = itertools.count(1000)


def has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(has_non_finite(item) for item in value)
    return value == OVERSIZED


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    op=st.sampled_from(sorted(OPERATIONS)),
    fields=st.dictionaries(field_names, values, max_size=4),
    oversized=st.sampled_from(NON_FINITE[3:]),
)
def test_replies_are_always_strict_json(
    socket: ClientConnection, op: str, fields: dict[str, Any], oversized: str
) -> None:
    request_id = next(_ids)
    frame = json.dumps({**fields, "id": request_id, "op": op}).replace(f'"{OVERSIZED}"', oversized)
    reply = exchange(socket, frame, request_id)  # strict_loads checks every frame
    if reply["ok"] is False:
        assert reply["error"]["code"] != "internal_error", reply
    if has_non_finite(fields):
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request", (frame, reply)


def test_a_reply_the_server_cannot_write_strictly_becomes_an_internal_error(caplog) -> None:
    from lockstep.server.frames import encode

    text = encode({"id": 3, "ok": True, "result": {"t1": float("inf")}})
    assert strict_loads(text) == {
        "id": 3,
        "ok": False,
        "error": {"code": "internal_error", "message": "the server failed on this request"},
    }
    assert "non-finite" in caplog.text  # the bug is in the log
