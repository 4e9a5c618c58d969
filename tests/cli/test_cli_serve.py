"""`lockstep serve` over HTTPS: a given certificate, and --lan's generated one with its fingerprint."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lockstep.server.tls import ensure_certificate, fingerprint
from lockstep_servers import free_port

LOCKSTEP = str(Path(sys.executable).parent / "lockstep")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `lockstep serve --data <tmp> ARGS...`; every server started is stopped at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        command = [LOCKSTEP, "serve", "--data", str(tmp_path / "d"), *args]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        process.communicate(timeout=10)


def get_json(url: str, cafile: Path) -> dict[str, str]:
    context = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:
                value: dict[str, str] = json.loads(response.read())
                return value
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_https_with_a_given_certificate(tmp_path: Path, serve) -> None:
    cert, key = ensure_certificate(tmp_path / "tls", ["127.0.0.1"])
    port = free_port()
    serve("--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key))
    info = get_json(f"https://127.0.0.1:{port}/api/info", cert)
    assert info["origin"] == f"https://127.0.0.1:{port}"


def test_serve_lan_prints_how_to_reach_it_from_a_phone(tmp_path: Path, serve) -> None:
    port, lan_port = free_port(), free_port()
    process = serve("--port", str(port), "--lan", "--lan-host", "127.0.0.1", "--lan-port", str(lan_port))
    assert process.stdout is not None
    banner = "".join(process.stdout.readline() for _ in range(5))
    cert = tmp_path / "d" / "tls" / "cert.pem"
    assert fingerprint(cert) in banner
    assert re.search(rf"https://[\d.]+:{lan_port}/app", banner)
    info = get_json(f"https://127.0.0.1:{lan_port}/api/info", cert)
    assert info["origin"].startswith("https://") and info["origin"].endswith(f":{lan_port}")


def test_serve_refuses_half_a_tls_configuration(tmp_path: Path) -> None:
    cert, _ = ensure_certificate(tmp_path / "tls", ["127.0.0.1"])
    result = subprocess.run(
        [LOCKSTEP, "serve", "--tls-cert", str(cert), "--data", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode != 0 and "go together" in result.stderr
