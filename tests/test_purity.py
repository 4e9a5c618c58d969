"""The sans-I/O cores stay pure: each package imports nothing on its forbidden list, and the NTP
(NTS included, its asyncio adapters in ``ntp/aio`` excluded), calls and link cores read no clock
either: time and randomness are parameters (docs/ARCHITECTURE.md, "Invariants")."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import lockstep

SOURCE = Path(lockstep.__file__).parent

IO = {"asyncio", "socket", "ssl", "select", "selectors", "subprocess", "threading", "multiprocessing"}
CLOCKS = {"time", "datetime"}
STORAGE_AND_WEB = {
    "sqlite3",
    "starlette",
    "uvicorn",
    "websockets",
    "lockstep.server",
    "lockstep.client",
}
#: Calls that read a clock, whatever module they come from.
CLOCK_READS = {
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
    "process_time",
    "clock_gettime",
    "clock_gettime_ns",
    "now",
    "utcnow",
    "today",
}


@dataclass(frozen=True)
class Core:
    package: str
    forbidden: frozenset[str]
    expected: frozenset[str]  # modules that must be found (so the check cannot pass on nothing)
    forbid_clock_reads: bool = False

    def modules(self) -> list[Path]:
        root = SOURCE / self.package
        return sorted(p for p in root.rglob("*.py") if "aio" not in p.relative_to(root).parts)


CORES = [
    Core(
        "link",
        # datetime only to word a given instant (probation's end, in UTC): reading the clock with it
        # (now(), today()) is still caught by forbid_clock_reads.
        frozenset(IO | {"time"} | STORAGE_AND_WEB | {"random"}),
        frozenset({"qr.py", "hpke.py", "grant.py", "devices.py", "envelope.py", "cpace.py"}),
        forbid_clock_reads=True,
    ),
    Core(
        "e2e",
        frozenset(IO | CLOCKS | STORAGE_AND_WEB | {"random", "os", "pathlib", "urllib"}),
        frozenset(
            {
                "olm.py",
                "megolm.py",
                "media.py",
                "envelope.py",
                "keys.py",
                "actions.py",
                "timeline.py",
                "voice.py",
            }
        ),
    ),
    Core(
        "ntp",
        frozenset(IO | CLOCKS | STORAGE_AND_WEB | {"random"}),
        frozenset(
            {"wire.py", "association.py", "client.py", "server.py", "ke.py", "fields.py", "cookies.py"}
        ),
        forbid_clock_reads=True,
    ),
    Core(
        "calls",
        frozenset(IO | CLOCKS | STORAGE_AND_WEB | {"random", "os", "pathlib"}),
        frozenset({"signals.py", "machine.py"}),
        forbid_clock_reads=True,
    ),
]


def violations(path: Path, core: Core) -> list[str]:
    """What in ``path`` breaks ``core``'s rules: forbidden imports (by their first one or two
    dotted parts) and, where asked, calls that read a clock."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] in core.forbidden or ".".join(parts[:2]) in core.forbidden:
                found.append(f"imports {name}")
        if core.forbid_clock_reads and isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in CLOCK_READS:
                found.append(f"calls {called}() on line {node.lineno}")
    return found


@pytest.mark.parametrize("core", CORES, ids=lambda core: core.package)
def test_core_does_no_io(core: Core) -> None:
    modules = core.modules()
    assert core.expected <= {path.name for path in modules}, "the check must see the core's modules"
    offenders = {str(path.relative_to(SOURCE)): violations(path, core) for path in modules}
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import time\n", ["imports time"]),
        ("from asyncio import sleep\n", ["imports asyncio"]),
        ("import random\n", ["imports random"]),
        ("from lockstep.server.app import create_app\n", ["imports lockstep.server.app"]),
        ("x = clock.now()\n", ["calls now() on line 1"]),
        ("from os import times\nx = monotonic()\n", ["calls monotonic() on line 2"]),
        ("from lockstep.ntp import wire\nx = wire.HEADER_LENGTH\n", []),
    ],
)
def test_the_checker_sees_what_it_must(tmp_path: Path, source: str, found: list[str]) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(source)
    assert violations(sample, CORES[2]) == found
