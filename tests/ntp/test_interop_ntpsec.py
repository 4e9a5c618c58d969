"""NTPsec's ntpdig and ntplib read our server; random UDP garbage does not disturb it.

ntpdig only speaks to port 123, so our server runs in a network namespace this test creates
(loopback only), or on 127.0.0.1:123 when namespaces are unavailable and the port is free.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import ntplib
import pytest

from lockstep.ntp.aio import clock
from lockstep.ntp.aio.client import query
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from ntp.ntp_peers import lockstep_ntp, lockstep_serve, network_namespace, run_server_in_thread, start_ntpd

pytestmark = pytest.mark.interop

NTPDIG = shutil.which("ntpdig") or "/usr/bin/ntpdig"


def _port_123_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", 123))
        except OSError:
            return False
    return True


@pytest.fixture
def port_123_sandbox() -> Iterator[list[str]]:
    """A command prefix that runs programs where 127.0.0.1:123 is ours to use."""
    with network_namespace("lsntp") as sandbox:
        if sandbox is not None:
            yield sandbox
        elif _port_123_free():
            yield []
        else:
            pytest.skip("needs `ip netns` (root) or a free 127.0.0.1:123 for ntpdig")


def test_ntpdig_reads_our_server(port_123_sandbox: list[str]) -> None:
    serve = ("--host", "127.0.0.1", "--port", "123", "--local-stratum", "7")
    with lockstep_serve(*serve, prefix=tuple(port_123_sandbox)):
        result = subprocess.run(
            [*port_123_sandbox, NTPDIG, "-j", "-t", "2", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["stratum"] == 7
    assert answer["leap"] == "no-leap"
    assert abs(answer["offset"]) < 0.005


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
def test_ntplib_reads_our_server(batched: bool) -> None:
    core = NtpServer(ServerState.local(stratum=4, now=clock.now()))
    with run_server_in_thread(core, batched=batched) as server:
        for version in (3, 4):
            response = ntplib.NTPClient().request("127.0.0.1", port=server.port, version=version)
            assert response.stratum == 4
            assert response.version == version
            assert abs(response.offset) < 0.005
            assert ntplib.ref_id_to_text(response.ref_id, response.stratum) == "127.127.1.1"


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
def test_udp_garbage_is_dropped_and_counted_while_service_continues(batched: bool) -> None:
    core = NtpServer(
        ServerState.local(stratum=4, now=clock.now()),
        rate_limit=RateLimit(average_rate=1000, burst=1000),
    )
    rng = random.Random(1)
    with run_server_in_thread(core, batched=batched) as server:
        replies = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(300):
                size = rng.choice([0, 1, 47, 48, 49, 68, 200, 1000])
                sock.sendto(rng.randbytes(size), ("127.0.0.1", server.port))
            sock.settimeout(0.5)
            try:
                while True:
                    replies.append(sock.recv(4096))
            except TimeoutError:
                pass
        # Only >= 48-byte client requests are answered, always with exactly 48 bytes.
        assert all(len(reply) == 48 for reply in replies)
        assert len(replies) == core.counters.replied + core.counters.kiss_sent
        time.sleep(0.1)
        result = asyncio.run(query(f"127.0.0.1:{server.port}", timeout=3))
        assert result.info.stratum == 4
    assert sum(core.dropped.values()) > 0
    assert core.counters.received >= 301


def test_our_client_reads_ntpsec_ntpd(port_123_sandbox: list[str], tmp_path: Path) -> None:
    """NTPsec's ntpd serving in orphan mode at stratum 5; our query runs next to it.

    ntpd never gets CAP_SYS_TIME (``setpriv --bounding-set -sys_time``) and has ``disable ntp
    kernel``, so it cannot adjust the host's clock.
    """
    if not port_123_sandbox:
        pytest.skip("ntpd would bind the host's port 123: needs a network namespace")
    config = tmp_path / "ntp.conf"
    config.write_text(
        "tos orphan 5 orphanwait 0\ndisable ntp kernel\nrestrict default\nrestrict 127.0.0.1\n"
        f"logfile {tmp_path / 'ntpd.log'}\n"
    )
    ntpd = start_ntpd(port_123_sandbox, config, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        answers = []
        deadline = time.monotonic() + 20
        while len(answers) < 3 and time.monotonic() < deadline:
            completed = lockstep_ntp(
                "query", "127.0.0.1", "--json", "--timeout", "2", timeout=30, prefix=tuple(port_123_sandbox)
            )
            if completed.returncode == 0:
                answers.append(json.loads(completed.stdout))
            else:
                time.sleep(1)  # ntpd is still starting, or not yet in orphan mode
    finally:
        ntpd.terminate()
        ntpd.wait(10)
    assert len(answers) == 3, (tmp_path / "ntpd.log").read_text()
    for answer in answers:
        assert answer["stratum"] == 5
        assert answer["leap"] == "no warning"
        assert answer["version"] == 4
        assert abs(answer["offset"]) < 0.001
