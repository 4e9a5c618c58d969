"""The `lockstep` command as the tests run it, the way a person would:

- ``lockstep(*args)`` runs it to its end (a refusal is a result), ``lockstep_ok(*args)`` must succeed
  and returns what it printed, ``receive_json(state)`` is `receive --json` parsed;
- ``start_terminal_companion(url, state, qr)`` starts `companion link` and returns once its code is
  saved as a picture (``start_code_companion(url, state)``: `companion link --code`, once its typed
  code is printed), ``link_terminal_companion(url, primary, state, qr)`` also has a terminal primary
  approve it; ``number_shown(process)`` reads the number a companion shows a primary on another network;
- ``with running(*args, env=IN_A_CALL) as process:`` runs it in the background for a block (a terminal
  calling or answering), and kills and reaps it if it outlives the block.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCKSTEP = str(Path(sys.executable).parent / "lockstep")
CODE_LINE = re.compile(r"Code: ([0-9A-Z]{4}-[0-9A-Z]{4})")
STARTUP_S = 60
"""How long a terminal companion may take to show its first code: about a second, far more when every
core is busy (a deadline for a stuck process, not a measure)."""


def lockstep(
    *args: str, timeout: float = 60, passphrase: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``lockstep ARGS`` to its end; a refusal (non-zero exit) is a result, not an error. A
    ``passphrase`` is given as a script gives it, in $LOCKSTEP_PASSPHRASE (never otherwise set here)."""
    env = {k: v for k, v in os.environ.items() if k != "LOCKSTEP_PASSPHRASE"}
    if passphrase is not None:
        env["LOCKSTEP_PASSPHRASE"] = passphrase
    return subprocess.run(
        [LOCKSTEP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,  # never a terminal to ask in: a test that forgets the passphrase fails
    )


def lockstep_ok(*args: str, timeout: float = 60, passphrase: str | None = None) -> str:
    """Run ``lockstep ARGS``, which must succeed; returns what it printed."""
    result = lockstep(*args, timeout=timeout, passphrase=passphrase)
    assert result.returncode == 0, (args[:2], result.stdout, result.stderr)
    return result.stdout


def receive_json(state: Path | None, wait: float = 0.0) -> list[dict[str, Any]]:
    """`lockstep receive --json` for the device in ``state``, waiting up to ``wait`` s for a first
    message: the messages it printed (and acknowledged), parsed."""
    assert state is not None
    out = lockstep_ok("receive", "--json", "--wait", str(wait), "--state", str(state))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


IN_A_CALL = {**os.environ, "LOCKSTEP_ICE_HOSTS": "127.0.0.1"}
"""The environment of a terminal in a call: its ICE offers only 127.0.0.1, so media keeps to loopback."""


@contextlib.contextmanager
def running(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """``lockstep ARGS`` in the background for the length of the block (its output piped, as text); if it
    is still running when the block ends, however it ends, it is killed, and it is always reaped."""
    process = subprocess.Popen(
        [LOCKSTEP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaped and its pipes closed, or its Popen warns into a later test


def start_terminal_companion(
    url: str, state: Path, qr: Path, *, quiet_qr: bool = True
) -> subprocess.Popen[str]:
    """Start linking a terminal companion into ``state``; returns once its first code is in ``qr``
    (with ``quiet_qr=False`` it also draws the code in its output, as a person sees it)."""
    command = [LOCKSTEP, "companion", "link", "--server", url, "--qr-out", str(qr), "--state", str(state)]
    if quiet_qr:
        command.append("--quiet-qr")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + STARTUP_S
    while not qr.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            _out, err = process.communicate()
            raise AssertionError(f"no QR code from the terminal companion: {err}")
        time.sleep(0.05)
    return process


NUMBER = re.compile(r"type (\d\d)\.")


def number_shown(companion: subprocess.Popen[str]) -> str:
    """The number the terminal companion prints once the primary inspected its code (linking.md §6.5)."""
    assert companion.stdout is not None
    for _ in range(200):
        line = companion.stdout.readline()
        if match := NUMBER.search(line):
            return match.group(1)
        assert line, "the companion ended without showing a number"
    raise AssertionError("no number")


def start_scan(qr: Path, primary: Path) -> subprocess.Popen[str]:
    """`primary scan --yes` of the code in ``qr``, its standard input a pipe (for the number it asks
    when the companion is on another network, linking.md §6.5)."""
    return subprocess.Popen(
        [LOCKSTEP, "primary", "scan", "--image", str(qr), "--yes", "--state", str(primary)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_code_companion(url: str, state: Path) -> tuple[subprocess.Popen[str], str, str]:
    """`companion link --code` running, the code it printed and all it printed until then."""
    process = subprocess.Popen(
        [LOCKSTEP, "companion", "link", "--code", "--server", url, "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline, printed = time.monotonic() + STARTUP_S, ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        printed += line
        if match := CODE_LINE.search(line):
            return process, match.group(1), printed
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no code from the terminal companion: {process.communicate()[1]}")


def link_terminal_companion(
    url: str, primary: Path, state: Path, qr: Path, *, passphrase: str | None = None
) -> str:
    """Link a terminal companion in ``state`` to the terminal primary in ``primary``, which reads its
    code from the picture ``qr`` and approves (``--yes``); returns what `primary scan` printed."""
    process = start_terminal_companion(url, state, qr)
    try:
        scanned = lockstep_ok(
            "primary", "scan", "--image", str(qr), "--yes", "--state", str(primary), passphrase=passphrase
        )
    except BaseException:
        process.kill()
        process.communicate()  # reaped and its pipes closed, or its Popen warns into a later test
        raise
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return scanned


def link_terminal_companion_from_elsewhere(relay: str, primary: Path, state: Path, qr: Path) -> None:
    """Link a terminal companion that reaches the server through ``relay`` (another network, linking.md
    §6.5) to the terminal primary in ``primary``, which types the number the companion shows."""
    companion = start_terminal_companion(relay, state, qr)
    scan = start_scan(qr, primary)
    out, err = scan.communicate(number_shown(companion) + "\n", timeout=30)
    assert scan.returncode == 0, (out, err)
    _, companion_err = companion.communicate(timeout=30)
    assert companion.returncode == 0, companion_err
