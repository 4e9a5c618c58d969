"""A `lockstep companion link` process as a person starts it: it saves its QR code for the phone to scan."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

LOCKSTEP = str(Path(sys.executable).parent / "lockstep")


def start_terminal_companion(url: str, state: Path, qr: Path) -> subprocess.Popen[str]:
    """Start linking a terminal companion into ``state``; returns once its first code is in ``qr``."""
    process = subprocess.Popen(
        [
            LOCKSTEP,
            "companion",
            "link",
            "--server",
            url,
            "--qr-out",
            str(qr),
            "--quiet-qr",
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 15
    while not qr.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            _out, err = process.communicate()
            raise AssertionError(f"no QR code from the terminal companion: {err}")
        time.sleep(0.05)
    return process
