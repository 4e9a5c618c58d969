"""The core stays pure: no module outside lockstep.ntp.aio imports I/O or clock modules."""

from __future__ import annotations

import ast
from pathlib import Path

import lockstep.ntp

FORBIDDEN = {"asyncio", "socket", "ssl", "time", "selectors", "subprocess", "select", "threading"}
CORE = Path(lockstep.ntp.__file__).parent


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def core_modules() -> list[Path]:
    return [p for p in CORE.rglob("*.py") if "aio" not in p.relative_to(CORE).parts]


def test_core_has_modules_to_check() -> None:
    names = {p.name for p in core_modules()}
    assert {"wire.py", "timestamps.py", "filter.py", "server.py", "client.py"} <= names


def test_core_imports_no_io_or_clock_modules() -> None:
    offenders = {
        str(path.relative_to(CORE)): sorted(imported_roots(path) & FORBIDDEN) for path in core_modules()
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import time\nfrom asyncio import sleep\n")
    assert imported_roots(sample) & FORBIDDEN == {"time", "asyncio"}
