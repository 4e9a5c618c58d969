"""nginx from Debian as a reverse proxy in front of a Lockstep server, on loopback, with its own config.

The proxy directives are the documented ones (docs/deploy/lockstep-proxy.conf), so the tests check what
the docs tell operators to run. nginx connects to Lockstep from ``bind_address`` (``proxy_bind``), the
address a test passes to ``--trusted-proxy``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lockstep_servers import free_port

NGINX = Path("/usr/sbin/nginx")
PROXY_SNIPPET = Path(__file__).resolve().parents[1] / "docs" / "deploy" / "lockstep-proxy.conf"


@dataclass(frozen=True)
class ReverseProxy:
    url: str
    bind_address: str
    """The address nginx connects to Lockstep from."""


def _config(folder: Path, port: int, upstream: str, bind_address: str) -> str:
    # Workers run as root only because the test does (then nginx would switch to "nobody").
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    return f"""
{user}
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_bind {bind_address};
            include {PROXY_SNIPPET};
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_in_front_of(
    upstream: str, folder: Path, bind_address: str = "127.0.0.50"
) -> Iterator[ReverseProxy]:
    """Run nginx on a free loopback port proxying to ``upstream`` (``http://127.0.0.1:PORT``)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(_config(folder, port, upstream, bind_address))
    log = folder / "error.log"
    process = subprocess.Popen(
        [str(NGINX), "-p", str(folder), "-e", str(log), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, f"nginx exited: {log.read_text() if log.exists() else ''}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline, "nginx did not start in 10 s"
            time.sleep(0.05)
        yield ReverseProxy(f"http://127.0.0.1:{port}", bind_address)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
