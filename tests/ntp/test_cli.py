"""`lockstep ntp query|monitor|serve` as an operator runs them."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time

import pytest

from lockstep.ntp.aio import clock
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import from_seconds
from ntp.ntp_peers import (
    child_pids,
    free_udp_port,
    is_running,
    lockstep_ntp,
    lockstep_serve,
    run_server_in_thread,
)


def local_core(stratum: int = 3) -> NtpServer:
    return NtpServer(ServerState.local(stratum=stratum, now=clock.now()))


def test_query_prints_the_fields_an_operator_expects() -> None:
    with run_server_in_thread(local_core()) as server:
        completed = lockstep_ntp("query", f"127.0.0.1:{server.port}")
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    for label in (
        "offset",
        "delay",
        "stratum",
        "reference id",
        "leap indicator",
        "precision",
        "root delay",
        "root dispersion",
    ):
        assert label in out
    assert "stratum         3" in out
    assert "127.127.1.1" in out


def test_query_json() -> None:
    with run_server_in_thread(local_core(stratum=6)) as server:
        completed = lockstep_ntp("query", f"127.0.0.1:{server.port}", "--json")
    answer = json.loads(completed.stdout)
    assert answer["stratum"] == 6
    assert abs(answer["offset"]) < 0.005
    assert answer["leap_indicator"] == 0


def test_query_to_a_closed_port_fails_fast_with_the_reason() -> None:
    port = free_udp_port()  # nobody listens there: the kernel answers ICMP port unreachable
    completed = lockstep_ntp("query", f"127.0.0.1:{port}", "--timeout", "20")
    assert completed.returncode == 1
    assert "Connection refused" in completed.stderr


def test_query_timeout_is_a_clear_failure() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # receives, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        completed = lockstep_ntp("query", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert completed.returncode == 1
    assert completed.stderr.strip() == f"lockstep: no reply from 127.0.0.1:{port} within 0.5 s"


def test_query_kiss_of_death_is_a_clear_failure() -> None:
    core = NtpServer(
        ServerState.local(stratum=3, now=clock.now()),
        deny=[ipaddress.ip_network("127.0.0.0/8")],
    )
    with run_server_in_thread(core) as server:
        completed = lockstep_ntp("query", f"127.0.0.1:{server.port}", "--timeout", "2")
    assert completed.returncode != 0
    assert "kiss-o'-death DENY" in completed.stderr


def test_query_unsynchronised_server_is_a_clear_failure() -> None:
    with run_server_in_thread(NtpServer(ServerState.unsynchronized())) as server:
        completed = lockstep_ntp("query", f"127.0.0.1:{server.port}", "--timeout", "2")
    assert completed.returncode != 0
    assert "unsynchronised" in completed.stderr


def test_monitor_shows_sources_and_a_combined_offset() -> None:
    with (
        run_server_in_thread(local_core(stratum=2)) as a,
        run_server_in_thread(local_core(stratum=2)) as b,
        run_server_in_thread(local_core(stratum=2)) as c,
    ):
        completed = lockstep_ntp(
            "monitor",
            *(f"127.0.0.1:{s.port}" for s in (a, b, c)),
            "--duration",
            "7",
            "--json",
        )
    assert completed.returncode == 0, completed.stderr
    updates = [json.loads(line) for line in completed.stdout.splitlines()]
    last = updates[-1]
    assert abs(last["offset"]) < 0.002
    assert last["stratum"] == 3
    states = sorted(source["state"] for source in last["sources"])
    assert states[-1] == "*" or "*" in states
    assert all(source["reach"] > 0 for source in last["sources"])


def test_monitor_table_output() -> None:
    with run_server_in_thread(local_core()) as server:
        completed = lockstep_ntp("monitor", f"127.0.0.1:{server.port}", "--duration", "8")
    assert completed.returncode == 0, completed.stderr
    assert "MS Name/IP address" in completed.stdout
    assert f"*  127.0.0.1:{server.port}" in completed.stdout
    assert "system offset" in completed.stdout


def test_serve_follows_its_upstream_source_and_announces_stratum_plus_one() -> None:
    port = free_udp_port()
    with (
        run_server_in_thread(local_core(stratum=2)) as upstream,
        lockstep_serve("--port", str(port), "--server", f"127.0.0.1:{upstream.port}"),
    ):
        first = json.loads(lockstep_ntp("query", f"127.0.0.1:{port}", "--json").stdout or "{}")
        deadline = time.monotonic() + 15
        answer: dict[str, object] = {}
        while time.monotonic() < deadline:
            completed = lockstep_ntp("query", f"127.0.0.1:{port}", "--json")
            if completed.returncode == 0:
                answer = json.loads(completed.stdout)
                break
            time.sleep(1)
    assert first == {}  # unsynchronised (no --local-stratum) until its source is selected
    assert answer.get("stratum") == 3
    assert answer.get("reference_id") == "127.0.0.1"
    # The upstream announces root dispersion 0; each hop adds at least MINDISP (RFC 5905
    # §11.2.3), less the 16.16 format's rounding.
    assert float(answer.get("root_dispersion", 0)) >= 0.01 - 2**-16  # type: ignore[arg-type]


def test_serve_with_reuseport_workers_answers() -> None:
    port = free_udp_port()
    with lockstep_serve("--port", str(port), "--local-stratum", "9", "--workers", "2"):
        answers = []
        deadline = time.monotonic() + 15
        while len(answers) < 4 and time.monotonic() < deadline:
            completed = lockstep_ntp("query", f"127.0.0.1:{port}", "--json", "--timeout", "1")
            if completed.returncode == 0:
                answers.append(json.loads(completed.stdout))
            else:
                time.sleep(0.3)
    assert len(answers) == 4
    assert {answer["stratum"] for answer in answers} == {9}


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_serve_workers_end_with_their_parent(how: signal.Signals) -> None:
    # However the parent ends (SIGKILL gives it no chance to clean up), no worker outlives it.
    port = free_udp_port()
    with lockstep_serve("--port", str(port), "--local-stratum", "9", "--workers", "2") as serving:
        workers: list[int] = []
        try:
            workers = child_pids(serving.pid)
            assert len(workers) == 2
            completed = lockstep_ntp("query", f"127.0.0.1:{port}", "--json", "--timeout", "2")
            assert completed.returncode == 0, completed.stderr
            os.kill(serving.pid, how)
            serving.wait(10)
            deadline = time.monotonic() + 10
            while any(is_running(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [pid for pid in workers if is_running(pid)] == []
            if how != signal.SIGKILL:
                assert serving.returncode == 0
            # And the port is free again: nothing is left serving it.
            assert lockstep_ntp("query", f"127.0.0.1:{port}", "--timeout", "1").returncode != 0
        finally:
            for pid in workers:  # survivors first: they would hold the parent's pipes open
                with contextlib.suppress(ProcessLookupError):
                    if is_running(pid):
                        os.kill(pid, signal.SIGKILL)


def test_serve_refuses_a_busy_port() -> None:
    with run_server_in_thread(local_core()) as server:
        completed = lockstep_ntp("serve", "--port", str(server.port), timeout=20)
    assert completed.returncode != 0
    assert "cannot serve" in completed.stderr


def test_monitor_marks_a_real_falseticker_and_ignores_it() -> None:
    # 3 s off: once four samples shrink every root distance under MAXDIST (1.5 s), the liar's
    # correctness interval no longer meets the others' and it is marked a falseticker. (Smaller
    # lies need fuller filters, which the simulator's long runs cover.)
    liar = NtpServer(ServerState.local(stratum=2, now=clock.now()), clock_offset=from_seconds(3.0))
    with (
        run_server_in_thread(local_core(stratum=2)) as a,
        run_server_in_thread(local_core(stratum=2)) as b,
        run_server_in_thread(local_core(stratum=2)) as c,
        run_server_in_thread(liar) as lying,
    ):
        completed = lockstep_ntp(
            "monitor",
            *(f"127.0.0.1:{s.port}" for s in (a, b, c, lying)),
            "--duration",
            "13",
            "--json",
        )
    assert completed.returncode == 0, completed.stderr
    updates = [json.loads(line) for line in completed.stdout.splitlines()]
    liar_name = f"127.0.0.1:{lying.port}"
    assert all(update["system_peer"] != liar_name for update in updates)
    assert all(abs(update["offset"]) < 0.01 for update in updates)
    last = {source["name"]: source["state"] for source in updates[-1]["sources"]}
    assert last[liar_name] == "x"


def test_monitor_on_a_terminal_redraws_the_table_every_second() -> None:
    with run_server_in_thread(local_core()) as server:
        controller, terminal = pty.openpty()
        monitor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lockstep.cli.ntp",
                "ntp",
                "monitor",
                f"127.0.0.1:{server.port}",
                "--duration",
                "3.5",
            ],
            stdout=terminal,
            stderr=subprocess.PIPE,
        )
        os.close(terminal)
        output = b""
        with contextlib.suppress(OSError):  # EIO once the monitor exits and the pty closes
            while chunk := os.read(controller, 65536):
                output += chunk
        os.close(controller)
        monitor.communicate(timeout=10)
    screens = output.decode().split("\x1b[H\x1b[2J")[1:]  # cursor home + clear screen
    assert len(screens) >= 3
    assert "MS Name/IP address" in screens[-1]
    assert f"127.0.0.1:{server.port}" in screens[-1]


def test_monitor_that_never_synchronises_says_why() -> None:
    port = free_udp_port()  # nobody answers there
    completed = lockstep_ntp("monitor", f"127.0.0.1:{port}", "--duration", "2")
    assert completed.returncode == 1
    assert completed.stderr.strip() == (
        f"lockstep: not synchronised: no source was selected; unreachable: 127.0.0.1:{port}"
    )
