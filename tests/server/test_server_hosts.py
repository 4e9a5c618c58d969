"""Host allow-list: a DNS-rebinding page (``Host: evil.example``, which the attacker points at loopback)
is refused over HTTP and on /ws before any API use, while the `make run` set-up — 127.0.0.1, localhost
and the LAN HTTPS address `--lan` prints — and a configured public origin keep working."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect

from lockstep.server.hosts import HostPolicy
from lockstep_servers import ServerProcess, free_port, start_server

LAN_LISTENER = "127.0.0.3"
"""--lan-host for the test: the HTTPS listener phones would reach (loopback, so the test stays local)."""


def _unverified_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # --lan's self-signed certificate
    return context


@dataclass
class Endpoint:
    address: str
    port: int
    tls: bool = False

    def connection(self) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection(self.address, self.port, timeout=5, context=_unverified_tls())
        return http.client.HTTPConnection(self.address, self.port, timeout=5)

    def get(self, path: str, host: str, method: str = "GET") -> tuple[int, bytes]:
        connection = self.connection()
        try:
            connection.request(method, path, body=b"x" if method == "POST" else None, headers={"Host": host})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def handshake(self, host: str | None, origin: str | None = None) -> int:
        """The status of a raw WebSocket upgrade to /ws with exactly these Host and Origin headers."""
        lines = ["GET /ws HTTP/1.1"]
        lines += [f"Host: {host}"] if host is not None else []
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"]
        lines += [f"Sec-WebSocket-Key: {base64.b64encode(secrets.token_bytes(16)).decode()}"]
        lines += [f"Origin: {origin}"] if origin is not None else []
        raw = socket.create_connection((self.address, self.port), timeout=5)
        stream = _unverified_tls().wrap_socket(raw) if self.tls else raw
        with stream:
            stream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status_line = stream.recv(4096).split(b"\r\n", 1)[0]
        return int(status_line.split()[1])


@dataclass
class LanServer:
    """`lockstep serve --lan` as `make run` starts it (the LAN listener on loopback for the test)."""

    process: ServerProcess
    local: Endpoint
    lan: Endpoint
    origin: str
    """The origin QR codes name: the phone address --lan prints."""


@pytest.fixture(scope="module")
def lan_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanServer]:
    folder = tmp_path_factory.mktemp("hosts-lan")
    lan_port = free_port()
    options = ("--lan", "--lan-host", LAN_LISTENER, "--lan-port", str(lan_port))
    process = start_server(folder / "data", folder / "server.log", *options)
    try:
        local = Endpoint("127.0.0.1", int(urlsplit(process.url).port or 0))
        status, body = local.get("/api/info", f"127.0.0.1:{local.port}")
        assert status == 200, body
        yield LanServer(
            process, local, Endpoint(LAN_LISTENER, lan_port, tls=True), json.loads(body)["origin"]
        )
    finally:
        process.stop()


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A server behind a proxy for https://chat.example, also reached as http://box.lan:8000."""
    folder = tmp_path_factory.mktemp("hosts-proxied")
    options = ("--public-origin", "https://chat.example", "--allowed-origin", "http://box.lan:8000")
    process = start_server(folder / "data", folder / "server.log", *options)
    try:
        yield Endpoint("127.0.0.1", int(urlsplit(process.url).port or 0))
    finally:
        process.stop()


def assert_refused(status: int, body: bytes) -> None:
    assert status == 421, (status, body[:200])
    assert json.loads(body)["error"]["code"] == "unknown_host"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/app"),
        ("GET", "/api/info"),
        ("GET", "/healthz"),
        ("GET", "/media/" + "A" * 43),
        ("POST", "/media"),
        ("GET", "/manifest.webmanifest"),
    ],
)
def test_http_for_a_rebound_name_is_refused(lan_server: LanServer, method: str, path: str) -> None:
    local = lan_server.local
    assert_refused(*local.get(path, f"evil.example:{local.port}", method))


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "localhost.evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "127.0.0.9:{port}",  # an address, but not the one this connection arrived on
        "[::1]:{port}",
        "user@127.0.0.1:{port}",
        "",
    ],
)
def test_http_for_names_and_addresses_not_served_is_refused(lan_server: LanServer, host: str) -> None:
    local = lan_server.local
    assert_refused(*local.get("/api/info", host.format(port=local.port)))


def test_the_lan_listener_refuses_a_rebound_name_too(lan_server: LanServer) -> None:
    lan = lan_server.lan
    assert_refused(*lan.get("/app", f"evil.example:{lan.port}"))
    assert lan.handshake(f"evil.example:{lan.port}", f"https://evil.example:{lan.port}") == 403


def test_a_dns_rebinding_page_cannot_open_the_websocket(lan_server: LanServer) -> None:
    local = lan_server.local
    rebound = f"evil.example:{local.port}"
    assert local.handshake(rebound, f"http://{rebound}") == 403  # same-origin as far as the browser knows
    assert local.handshake(rebound) == 403  # no Origin, but not our name either


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://127.0.0.1:1",  # another local web app's page
        "https://127.0.0.1:{port}",  # the scheme this listener does not serve
        "null",  # sandboxed frame, file:
        "http://127.0.0.1:{port}/path",
    ],
)
def test_other_pages_cannot_open_the_websocket(lan_server: LanServer, origin: str) -> None:
    local = lan_server.local
    assert local.handshake(f"127.0.0.1:{local.port}", origin.format(port=local.port)) == 403


def test_make_run_set_up_still_works(lan_server: LanServer) -> None:
    local, lan = lan_server.local, lan_server.lan
    for host in (f"127.0.0.1:{local.port}", f"localhost:{local.port}"):
        assert local.get("/", host)[0] == 200
        assert local.handshake(host, f"http://{host}") == 101
    assert local.handshake(f"127.0.0.1:{local.port}") == 101  # a terminal client: no Origin
    phone_host = urlsplit(lan_server.origin).netloc  # the address --lan prints for the phone
    for host in (f"{LAN_LISTENER}:{lan.port}", phone_host):
        assert lan.get("/app", host)[0] == 200
        assert lan.handshake(host, f"https://{host}") == 101
    uri = f"ws://127.0.0.1:{local.port}/ws"
    with connect(uri, origin=f"http://127.0.0.1:{local.port}") as sock:  # type: ignore[arg-type]
        assert json.loads(sock.recv(timeout=5))["event"] == "hello"


def test_a_configured_public_origin_and_allowed_origin_are_served(proxied_server: Endpoint) -> None:
    assert proxied_server.get("/app", "chat.example")[0] == 200
    assert proxied_server.get("/app", "box.lan:8000")[0] == 200
    assert proxied_server.handshake("chat.example", "https://chat.example") == 101  # TLS ends at the proxy
    assert proxied_server.handshake("box.lan:8000", "http://box.lan:8000") == 101
    assert proxied_server.handshake("chat.example", "https://evil.example") == 403
    assert proxied_server.handshake("evil.example", "https://chat.example") == 403
    assert_refused(*proxied_server.get("/app", "evil.example"))


@pytest.mark.parametrize(
    ("host", "local", "allowed"),
    [
        ("127.0.0.1:8000", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("LOCALHOST:8000", "127.0.0.1", True),
        ("localhost:8000", "192.168.1.5", False),  # "localhost" only on a loopback connection
        ("192.168.1.5:8443", "192.168.1.5", True),
        ("192.168.1.5:8443", "::ffff:192.168.1.5", True),  # dual-stack listener
        ("[::1]:8000", "::1", True),
        ("[::1]:8000", "127.0.0.1", False),
        ("chat.example", "127.0.0.1", True),
        ("chat.example:8443", "10.0.0.2", True),
        ("evil.example:8000", "127.0.0.1", False),
        ("evil.example:notaport", "127.0.0.1", False),
        (None, "127.0.0.1", False),
    ],
)
def test_host_policy(host: str | None, local: str, allowed: bool) -> None:
    policy = HostPolicy.of(["https://chat.example"])
    assert policy.host_allowed(host, local) is allowed


def test_bad_allowed_origins_fail_fast() -> None:
    from lockstep.server.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="LOCKSTEP_ALLOWED_ORIGINS"):
        Settings.from_env({"LOCKSTEP_ALLOWED_ORIGINS": "chat.example"})
    allowed = Settings.from_env(
        {"LOCKSTEP_ALLOWED_ORIGINS": "HTTPS://Chat.Example:443/, http://box.lan:8000"}
    )
    assert allowed.allowed_origins == ("http://box.lan:8000", "https://chat.example")
