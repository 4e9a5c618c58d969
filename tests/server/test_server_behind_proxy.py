"""`lockstep serve --trusted-proxy` behind a real nginx: per-address limits and the address a primary is
shown follow the real client, and forwarding headers from anyone but the trusted proxy are ignored.

Clients connect from several loopback addresses (127.0.0.2, 127.0.0.3, ...); nginx connects to Lockstep
from 127.0.0.50, the only proxy the server trusts besides 127.0.0.60 (an "outer" proxy for the two-hop
case).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from lockstep.client.primary import PrimarySession, create_account
from lockstep.client.state import DeviceState
from lockstep_servers import ServerProcess, start_server
from reverse_proxy import ReverseProxy, nginx_in_front_of

OUTER_PROXY = "127.0.0.60"
ATTEMPTS = 25
"""link.start is limited to 20 a minute per address, refilled one every 3 s: 25 attempts within 15 s
must meet a refusal however slow the machine is."""


def assert_limited(replies: list[dict[str, Any]]) -> None:
    assert all(reply["ok"] for reply in replies[:20]), replies
    assert any(not reply["ok"] and reply["error"]["code"] == "rate_limited" for reply in replies[20:])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("behind-proxy")
    process = start_server(
        folder / "data",
        folder / "server.log",
        "--trusted-proxy",
        "127.0.0.50",
        "--trusted-proxy",
        OUTER_PROXY,
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def proxy(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReverseProxy]:
    with nginx_in_front_of(server.url, tmp_path_factory.mktemp("nginx")) as running:
        yield running


@pytest.fixture(scope="module")
def phone(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> DeviceState:
    """A primary, connecting straight to the server from 127.0.0.1."""
    folder = tmp_path_factory.mktemp("phone")
    return asyncio.run(create_account(server.url, "alice", "Alice", "Phone", folder))


@contextlib.contextmanager
def open_socket(url: str, source: str, headers: dict[str, str] | None = None) -> Iterator[ClientConnection]:
    """A raw /ws connection from ``source`` (a loopback address), past its hello."""
    uri = url.replace("http", "ws", 1) + "/ws"
    with connect(uri, source_address=(source, 0), additional_headers=headers) as socket:
        assert json.loads(socket.recv(timeout=5))["event"] == "hello"
        yield socket


def request(socket: ClientConnection, request_id: int, op: str, **fields: Any) -> dict[str, Any]:
    socket.send(json.dumps({"id": request_id, "op": op, **fields}))
    for _ in range(50):
        message = json.loads(socket.recv(timeout=5))
        if message.get("id") == request_id:
            return dict(message)
    raise AssertionError(f"no reply to {op}")


def next_ref(socket: ClientConnection) -> str:
    for _ in range(20):
        message = json.loads(socket.recv(timeout=5))
        if message.get("event") == "link.ref":
            return str(message["ref"])
    raise AssertionError("no link.ref")


def context_seen_by_primary(
    phone: DeviceState, url: str, source: str, headers: dict[str, str]
) -> dict[str, Any]:
    """A companion at ``source`` starts linking (through ``url``); what the primary's link.inspect says."""
    with open_socket(url, source, headers) as companion:
        assert request(companion, 1, "link.start", client="terminal")["ok"]
        ref = next_ref(companion)

        async def inspect() -> dict[str, Any]:
            session = await PrimarySession.open(phone)
            try:
                return await session.connection.request("link.inspect", ref=ref)
            finally:
                await session.close()

        return asyncio.run(inspect())


def test_link_start_limits_count_each_real_client_behind_the_proxy(proxy: ReverseProxy) -> None:
    with open_socket(proxy.url, "127.0.0.2") as first:
        replies = [request(first, n, "link.start", client="terminal") for n in range(ATTEMPTS)]
    assert_limited(replies)
    with open_socket(proxy.url, "127.0.0.3") as second:  # another client behind the same proxy
        assert request(second, 1, "link.start", client="terminal")["ok"]


def test_the_primary_sees_the_client_address_not_the_proxys(
    server: ServerProcess, proxy: ReverseProxy, phone: DeviceState
) -> None:
    context = context_seen_by_primary(phone, proxy.url, "127.0.0.4", {})
    assert context["companion"]["address"] == "127.0.0.4"
    assert context["companion"]["network"] == {"kind": "loopback", "prefix": "127.0.0.0/8"}
    assert context["network"]["primary_address"] == "127.0.0.1"


def test_a_forwarding_header_a_client_sends_through_the_proxy_is_not_believed(
    proxy: ReverseProxy, phone: DeviceState
) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.7", "Forwarded": "for=203.0.113.7"}
    context = context_seen_by_primary(phone, proxy.url, "127.0.0.5", spoofed)
    assert context["companion"]["address"] == "127.0.0.5"  # nginx appended the real peer; it is right-most


@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.6"])
def test_forwarding_headers_from_an_untrusted_peer_are_ignored(
    server: ServerProcess, phone: DeviceState, source: str
) -> None:
    # 127.0.0.1 is what uvicorn would trust by default (FORWARDED_ALLOW_IPS); Lockstep trusts only
    # --trusted-proxy.
    spoofed = {"X-Forwarded-For": "203.0.113.7", "Forwarded": "for=203.0.113.7"}
    context = context_seen_by_primary(phone, server.url, source, spoofed)
    assert context["companion"]["address"] == source


def test_rotating_a_spoofed_header_gives_no_fresh_budget(server: ServerProcess) -> None:
    replies = []
    for n in range(ATTEMPTS):  # a new connection each time, each claiming another address
        headers = {"X-Forwarded-For": f"127.0.1.{n}", "Forwarded": f"for=127.0.1.{n}"}
        with open_socket(server.url, "127.0.0.7", headers) as sock:
            replies.append(request(sock, 1, "link.start", client="terminal"))
    assert_limited(replies)


def test_two_trusted_proxies_give_the_client_before_the_outer_one(
    proxy: ReverseProxy, phone: DeviceState
) -> None:
    # An outer proxy (a CDN, say) at OUTER_PROXY forwards a client at 203.0.113.9 to nginx.
    context = context_seen_by_primary(phone, proxy.url, OUTER_PROXY, {"X-Forwarded-For": "203.0.113.9"})
    assert context["companion"]["address"] == "203.0.113.9"
    assert context["companion"]["network"] == {"kind": "public", "prefix": "203.0.113.0/24"}
    assert context["network"]["same_network"] is False  # the hint compares real addresses


def test_an_ipv6_client_cannot_make_itself_new_within_its_64(proxy: ReverseProxy) -> None:
    # The outer proxy vouches for a different address every time, all in one /64: one client.
    replies = []
    for n in range(ATTEMPTS):
        with open_socket(proxy.url, OUTER_PROXY, {"X-Forwarded-For": f"2001:db8:7:7::{n + 1:x}"}) as sock:
            replies.append(request(sock, 1, "link.start", client="terminal"))
    assert_limited(replies)
    with open_socket(proxy.url, OUTER_PROXY, {"X-Forwarded-For": "2001:db8:7:8::1"}) as sock:  # next /64
        assert request(sock, 1, "link.start", client="terminal")["ok"]
