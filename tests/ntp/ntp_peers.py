"""Helpers for the NTP tests: real chronyd and NTPsec instances on loopback (NTPsec's ntpd in a
network namespace of its own), our server in a thread or as `lockstep ntp serve`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lockstep.ntp.aio.client import Monitor
from lockstep.ntp.aio.server import UdpServer, open_udp_socket
from lockstep.ntp.client import NtpClient, SystemEvent
from lockstep.ntp.server import NtpServer

CHRONYD = shutil.which("chronyd") or "/usr/sbin/chronyd"
CHRONYC = shutil.which("chronyc") or "/usr/bin/chronyc"
# NTPsec is unpacked, not installed (Debian will not install it next to chrony): see
# scripts/ensure-debian-packages.sh.
NTPSEC = Path("/opt/lockstep-peers/ntpsec/usr")
NTPD = NTPSEC / "sbin" / "ntpd"
NTPQ = NTPSEC / "bin" / "ntpq"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Chronyd:
    """A chronyd started with -x (never touches the system clock) on loopback ports."""

    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    log_file: IO[bytes]

    def chronyc(self, *args: str) -> str:
        socket_path = str(self.directory / "chronyd.sock")
        result = subprocess.run(
            [CHRONYC, "-n", "-h", socket_path, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout

    def log(self) -> str:
        path = self.directory / "chronyd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_chronyd(directory: Path, lines: list[str], port: int = 0, *, cpu: int | None = None) -> Chronyd:
    """chronyd -x on loopback with ``lines`` of extra configuration, NTP on ``port`` (0: none),
    pinned to ``cpu`` when given (the benchmarks); returns once its command socket is up."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    config = directory / "chrony.conf"
    config.write_text(
        "\n".join(
            [
                f"port {port}",
                "bindaddress 127.0.0.1",
                "cmdport 0",
                f"bindcmdaddress {directory / 'chronyd.sock'}",
                f"pidfile {directory / 'chronyd.pid'}",
                f"driftfile {directory / 'drift'}",
                f"ntsdumpdir {directory}",  # NTS keys and cookies stay in the test's folder
                *lines,
                "",
            ]
        )
    )
    if not os.access(CHRONYD, os.X_OK):
        raise RuntimeError(f"{CHRONYD} is missing: run scripts/ensure-debian-packages.sh")
    log = (directory / "chronyd.log").open("wb")
    command = [CHRONYD, "-x", "-d", "-u", "root", "-f", str(config)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    chronyd = Chronyd(process, directory, port, log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            raise RuntimeError(f"chronyd exited: {chronyd.log()}")
        if (directory / "chronyd.sock").exists():
            return chronyd
        time.sleep(0.05)
    process.kill()
    process.wait()
    log.close()
    raise RuntimeError(f"chronyd did not start: {chronyd.log()}")


def stop_chronyd(chronyd: Chronyd) -> None:
    chronyd.process.terminate()
    try:
        chronyd.process.wait(5)
    except subprocess.TimeoutExpired:
        chronyd.process.kill()
        chronyd.process.wait()
    chronyd.log_file.close()


@contextlib.contextmanager
def running_chronyd(
    directory: Path, lines: list[str], port: int = 0, *, cpu: int | None = None
) -> Iterator[Chronyd]:
    """:func:`start_chronyd`, stopped on leaving: the one chronyd launcher of the tests and
    benchmarks."""
    chronyd = start_chronyd(directory, lines, port, cpu=cpu)
    try:
        yield chronyd
    finally:
        stop_chronyd(chronyd)


@dataclass
class ThreadedServer:
    core: NtpServer
    host: str
    port: int


@contextlib.contextmanager
def run_server_in_thread(
    core: NtpServer, host: str = "127.0.0.1", *, batched: bool | None = None
) -> Iterator[ThreadedServer]:
    """Our UDP server on a free loopback port, in its own event loop thread."""
    ready = threading.Event()
    holder: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = UdpServer(core, open_udp_socket(host, 0), batched=batched)

        async def start() -> None:
            server.start()

        loop.run_until_complete(start())
        holder["server"] = server
        ready.set()
        loop.run_forever()
        server.close()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    server = holder["server"]
    assert isinstance(server, UdpServer)
    try:
        yield ThreadedServer(core, host, server.address[1])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def lockstep_ntp(
    *args: str, timeout: float = 60, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``lockstep ntp ARGS`` (through the ntp verb module only, under ``prefix``) and capture its
    output."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "lockstep.cli.ntp", "ntp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@contextlib.contextmanager
def lockstep_serve(*args: str, prefix: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[str]]:
    """``lockstep ntp serve ARGS`` as a process (run under ``prefix``, e.g. ``ip netns exec``),
    once it says it is serving; stopped afterwards."""
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "lockstep.cli.ntp", "ntp", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        assert "serving NTP" in process.stdout.readline()
        yield process
    finally:
        stop_process(process)


@contextlib.contextmanager
def network_namespace(name_prefix: str) -> Iterator[list[str] | None]:
    """A new network namespace with its loopback up, as the command prefix that runs a program in it
    (where 127.0.0.1:123 is free and ntpd binds only there); None where it cannot be made (not root)."""
    name = f"{name_prefix}{os.urandom(4).hex()}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        yield None
        return
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def start_ntpd(sandbox: list[str], config: Path, **popen: Any) -> subprocess.Popen[str]:
    """NTPsec's ntpd in the foreground under ``sandbox`` with ``config``. It never holds CAP_SYS_TIME
    (``setpriv --bounding-set -sys_time``), so whatever its config says it cannot set the host's clock."""
    if not NTPD.exists():
        raise AssertionError(f"{NTPD} is missing: run scripts/ensure-debian-packages.sh as root")
    command = [*sandbox, "setpriv", "--bounding-set", "-sys_time", str(NTPD), "-n", "-c", str(config)]
    return subprocess.Popen(command, text=True, **popen)


def run_monitor(
    client: NtpClient, source: str, seconds: float, *, minpoll: int, maxpoll: int
) -> list[SystemEvent]:
    """Poll ``source`` with our :class:`Monitor` for ``seconds``; return every event it saw."""
    events: list[SystemEvent] = []

    async def run() -> None:
        stop = asyncio.Event()
        monitor = Monitor(client, on_event=events.append)
        await monitor.add_source(source, minpoll=minpoll, maxpoll=maxpoll)
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await monitor.run(stop)

    asyncio.run(run())
    return events


# A line of chronyd's measurements.log: date, time, address, leap, stratum, tests 1-3, 5-7 and
# A-D (1: passed), local and remote poll, score, offset, peer delay, peer dispersion, root delay,
# root dispersion, reference id, mode (4I: server, interleaved; 4B: basic), timestamp sources.
_MEASUREMENT = re.compile(
    r"^\S+ \S+ (?P<address>\S+)\s+\S\s+\d+ (?P<t123>[01]{3}) (?P<t567>[01]{3}) (?P<tabcd>[01]{4})"
    r"\s+-?\d+\s+-?\d+\s+\S+\s+(?P<offset>\S+)\s+(?P<delay>\S+)\s+.* (?P<mode>\d[IB]) \S \S$"
)


@dataclass(frozen=True)
class Measurement:
    """One sample of a chronyd client, from its measurements log."""

    tests: str  # "123 567 ABCD" as 1 (passed) / 0
    offset: float
    delay: float
    interleaved: bool

    @property
    def delay_test_passed(self) -> bool:
        """chronyd's test C (the delay compared with the offsets' spread)."""
        return self.tests[-2] == "1"


def chronyd_measurements(log: Path) -> dict[str, list[Measurement]]:
    """Samples by source address from a chronyd ``log measurements`` file."""
    found: dict[str, list[Measurement]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        match = _MEASUREMENT.match(line)
        if match:
            tests = f"{match['t123']} {match['t567']} {match['tabcd']}"
            sample = Measurement(tests, float(match["offset"]), float(match["delay"]), match["mode"] == "4I")
            found.setdefault(match["address"], []).append(sample)
    return found


def interleaved_sources(ntpdata: str) -> dict[str, str]:
    """Remote address -> the "Interleaved" line of ``chronyc ntpdata``."""
    found = {}
    for block in ntpdata.split("\n\n"):
        address = re.search(r"Remote address\s*:\s*(\S+)", block)
        interleaved = re.search(r"Interleaved\s*:\s*(\S+)", block)
        if address and interleaved:
            found[address[1]] = interleaved[1]
    return found


OURS, THEIRS = "127.0.0.2", "127.0.0.1"  # the two servers chronyd polls in side_by_side()


def side_by_side(
    directory: Path, samples: int, *, xleave: bool = True, serve: tuple[str, ...] = ()
) -> tuple[dict[str, list[Measurement]], str]:
    """A chronyd client (``-x``) polling every second both ``lockstep ntp serve --local-stratum
    10`` on OURS and a chronyd server (``local stratum 10``) on THEIRS, in interleaved mode
    (``xleave``) or basic, until it logged ``samples`` samples of each (at most 2 s per sample
    and 30 s more). Returns its measurements by address and its ``chronyc ntpdata``."""
    ours, theirs = free_udp_port(), free_udp_port()
    logs = directory / "log"
    logs.mkdir(parents=True, exist_ok=True)
    mode = " xleave" if xleave else ""
    client_lines = [
        f"server {OURS} port {ours} minpoll 0 maxpoll 0{mode}",
        f"server {THEIRS} port {theirs} minpoll 0 maxpoll 0{mode}",
        f"logdir {logs}",
        "log measurements",
    ]
    with (
        lockstep_serve("--host", OURS, "--port", str(ours), "--local-stratum", "10", *serve),
        running_chronyd(directory / "server", ["local stratum 10", "allow 127.0.0.0/8"], theirs),
        running_chronyd(directory / "client", client_lines) as client,
    ):
        deadline = time.monotonic() + 2 * samples + 30
        found = chronyd_measurements(logs / "measurements.log")
        while time.monotonic() < deadline and min(len(found.get(a, [])) for a in (OURS, THEIRS)) < samples:
            time.sleep(1)
            found = chronyd_measurements(logs / "measurements.log")
        return found, client.chronyc("ntpdata")


def parse_sources(text: str) -> dict[str, str]:
    """Map address -> two-character mode/state column of ``chronyc -n sources``."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^([\^=#][*+\-?x~ ])\s+(\S+)", line)
        if match:
            rows[match.group(2)] = match.group(1)
    return rows


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Terminate a process a test started and wait for it; SIGKILL it if it does not go."""
    if process.poll() is None:
        process.terminate()
    try:
        process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        # Its output pipes may be held open by a child that outlived it: do not wait for EOF.
        process.wait(timeout)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def is_running(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
