"""The passphrase as a person types it: `lockstep` on a real pseudo-terminal (its controlling terminal,
as in a shell), asked without echo — twice when the sealed folder is made, once afterwards."""

from __future__ import annotations

import os
import pty
import select
import time
from pathlib import Path

from lockstep_cli import LOCKSTEP

PASSPHRASE = "a long walk by the river"


class Terminal:
    """`lockstep ARGS` with a pseudo-terminal for its standard streams and controlling terminal."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "LOCKSTEP_PASSPHRASE"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes lockstep
            os.execve(LOCKSTEP, [LOCKSTEP, *args], env)
        self.seen = ""

    def _read(self, timeout: float) -> bool:
        """Add to ``seen`` what the terminal shows within ``timeout`` s; False once the child closed it."""
        if select.select([self.fd], [], [], max(0.0, timeout))[0]:
            try:
                self.seen += os.read(self.fd, 4096).decode(errors="replace")
            except OSError:
                return False
        return True

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        open_ = True
        while text not in self.seen and open_ and time.monotonic() < deadline:
            open_ = self._read(deadline - time.monotonic())
        assert text in self.seen, f"{text!r} not shown; the terminal shows {self.seen!r}"

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def answer(self, prompt: str, line: str) -> None:
        """Once the terminal shows ``prompt``, type ``line``."""
        self.expect(prompt)
        self.type(line)

    def exit_status(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self._read(0.1)
        raise AssertionError(f"lockstep did not end; the terminal shows {self.seen!r}")


def sealed_init(url: str, handle: str, folder: Path, passphrase: str, again: str) -> Terminal:
    """`lockstep primary init --passphrase`, typing ``passphrase`` and then ``again`` when asked twice."""
    made = ("primary", "init", "--server", url, "--handle", handle, "--passphrase")
    init = Terminal(*made, "--state", str(folder))
    init.answer("Passphrase for this device's keys: ", passphrase)
    init.answer("The same passphrase again: ", again)
    return init


def devices(folder: Path, passphrase: str) -> Terminal:
    """`lockstep primary devices` on the sealed ``folder``, typing ``passphrase`` when asked."""
    listing = Terminal("primary", "devices", "--state", str(folder))
    listing.answer(f"Passphrase for {folder}: ", passphrase)
    return listing


def test_the_passphrase_is_asked_twice_when_made_once_after_and_never_echoed(
    server_process, tmp_path: Path
) -> None:
    folder = tmp_path / "alice"
    init = sealed_init(server_process.url, "alice", folder, PASSPHRASE, PASSPHRASE)
    assert init.exit_status() == 0, init.seen
    assert "sealed" in init.seen and PASSPHRASE not in init.seen

    listing = devices(folder, PASSPHRASE)
    assert listing.exit_status() == 0, listing.seen
    assert "Terminal primary" in listing.seen and PASSPHRASE not in listing.seen

    wrong = devices(folder, "not the passphrase")
    assert wrong.exit_status() != 0
    assert "wrong passphrase" in wrong.seen and "not the passphrase" not in wrong.seen


def test_two_different_passphrases_make_nothing(server_process, tmp_path: Path) -> None:
    folder = tmp_path / "bob"
    init = sealed_init(server_process.url, "bob", folder, PASSPHRASE, PASSPHRASE + " and back")
    assert init.exit_status() != 0
    assert "the two passphrases differ; nothing was made" in init.seen
    assert not folder.exists()
