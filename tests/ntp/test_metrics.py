"""``lockstep ntp serve --metrics-port``: Prometheus text an operator can scrape (issue 11 item 5)."""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ntp.ntp_peers import lockstep_ntp, lockstep_serve
from nts.nts_peers import free_port, make_certificate


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, labels) -> value, from our /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def request(transmit: int, first: int = 0x23) -> bytes:
    return bytes([first]) + bytes(39) + transmit.to_bytes(8, "big")


def exchange(source: str, port: int, data: bytes, *, expect_reply: bool = True) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2 if expect_reply else 0.3)
        sock.sendto(data, ("127.0.0.1", port))
        try:
            sock.recv(1024)
        except TimeoutError:
            assert not expect_reply, f"no reply to {data[:1].hex()} from {source}"


def test_plain_ntp_counters_and_state(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port(socket.SOCK_STREAM)
    serve = ("--port", str(port), "--local-stratum", "9", "--deny", "127.0.0.66/32")
    with lockstep_serve(*serve, "--metrics-port", str(metrics_port)) as process:
        assert process.stdout is not None
        assert f"serving metrics on http://127.0.0.1:{metrics_port}/metrics" in process.stdout.readline()
        for n in range(3):
            exchange("127.0.0.1", port, request(n + 1))
        exchange("127.0.0.66", port, request(4))  # denied: kiss-o'-death DENY
        exchange("127.0.0.1", port, request(5, first=0x26), expect_reply=False)  # mode 6
        exchange("127.0.0.1", port, bytes(12), expect_reply=False)  # too short
        metrics = scrape(metrics_port)
    assert metrics["lockstep_ntp_requests_received_total", ()] == 6
    assert metrics["lockstep_ntp_requests_answered_total", ()] == 3
    assert metrics["lockstep_ntp_kisses_sent_total", (("code", "DENY"),)] == 1
    dropped = {
        labels: value
        for (name, labels), value in metrics.items()
        if name == "lockstep_ntp_requests_dropped_total"
    }
    assert sum(dropped.values()) == 2 and len(dropped) == 2
    assert metrics["lockstep_ntp_stratum", ()] == 9
    assert metrics["lockstep_ntp_offset_seconds", ()] == 0
    assert metrics["lockstep_ntp_root_distance_seconds", ()] == 0  # a local clock


def test_nts_key_exchanges_and_cookies(tmp_path: Path) -> None:
    certificate = make_certificate(tmp_path / "pki")
    ke_port, metrics_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    serve = ("--port", str(free_port()), "--local-stratum", "3", "--nts-cert", str(certificate.cert))
    serve += (
        "--nts-key",
        str(certificate.key),
        "--nts-port",
        str(ke_port),
        "--metrics-port",
        str(metrics_port),
    )
    with lockstep_serve(*serve):
        result = lockstep_ntp("query", "--nts", f"127.0.0.1:{ke_port}", "--ca", str(certificate.cert))
        assert result.returncode == 0, result.stderr
        # A plain TCP connection that is no TLS: an NTS-KE failure.
        with (
            socket.create_connection(("127.0.0.1", ke_port), timeout=5) as connection,
            contextlib.suppress(OSError),  # the server resets it
        ):
            connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
            connection.recv(100)
        metrics = scrape(metrics_port)
    assert metrics["lockstep_ntp_nts_ke_handshakes_total", ()] == 1
    failures = sum(
        value for (name, _), value in metrics.items() if name == "lockstep_ntp_nts_ke_failures_total"
    )
    assert failures == 1
    assert metrics["lockstep_ntp_nts_cookies_opened_total", ()] == 1
    assert metrics["lockstep_ntp_requests_answered_total", ()] == 1


def test_metrics_need_one_process() -> None:
    result = lockstep_ntp("serve", "--workers", "2", "--metrics-port", "9")
    assert result.returncode != 0 and "--workers 1" in result.stderr
