"""lockstep.e2e is a sans-I/O core: it imports no sockets, clocks, event loops, storage or web code."""

from __future__ import annotations

import ast
from pathlib import Path

import lockstep.e2e

FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "time",
    "sqlite3",
    "starlette",
    "uvicorn",
    "websockets",
    "random",
    "os",
    "pathlib",
    "urllib",
    "lockstep.server",
    "lockstep.client",
}


def test_e2e_core_does_no_io() -> None:
    for path in Path(lockstep.e2e.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
                assert ".".join(name.split(".")[:2]) not in FORBIDDEN, f"{path.name} imports {name}"
