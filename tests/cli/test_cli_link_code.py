"""Link with a typed code (linking.md §10) between two terminals: `lockstep companion link --code` and
`lockstep primary link-code CODE`, real processes against a real server process."""

from __future__ import annotations

from pathlib import Path

from lockstep.link.wording import companion_notice, link_code_text
from lockstep_cli import lockstep, lockstep_ok, start_code_companion


def test_a_terminal_links_another_by_typed_code(server_process, tmp_path: Path) -> None:
    url, primary, laptop = server_process.url, tmp_path / "p", tmp_path / "c"
    lockstep_ok("primary", "init", "--server", url, "--handle", "dana", "--state", str(primary))
    companion, code, printed = start_code_companion(url, laptop)
    assert link_code_text("companion_instructions") in printed
    typed = lockstep("primary", "link-code", code.lower().replace("-", " "), "--yes", "--state", str(primary))
    assert typed.returncode == 0, typed.stderr
    assert link_code_text("warning") in typed.stdout
    assert "Lockstep terminal" in typed.stdout and "(as the server saw it)" in typed.stdout
    assert "Linked " in typed.stdout
    out, err = companion.communicate(timeout=20)
    assert companion.returncode == 0, err
    assert "Linked to @dana" in out
    assert lockstep("companion", "status", "--state", str(laptop)).returncode == 0


def test_a_mistyped_code_links_nothing_and_cannot_be_tried_again(server_process, tmp_path: Path) -> None:
    url, primary, laptop = server_process.url, tmp_path / "p", tmp_path / "c"
    lockstep_ok("primary", "init", "--server", url, "--handle", "erin", "--state", str(primary))
    companion, code, _printed = start_code_companion(url, laptop)
    wrong = code[:-1] + ("0" if code[-1] != "0" else "1")
    typed = lockstep("primary", "link-code", wrong, "--yes", "--state", str(primary))
    assert typed.returncode != 0
    assert "does not match the one on the computer" in typed.stderr
    _out, err = companion.communicate(timeout=20)
    assert companion.returncode != 0
    assert companion_notice("wrong_code") in err
    again = lockstep("primary", "link-code", code, "--yes", "--state", str(primary))
    assert again.returncode != 0 and "already used" in again.stderr
    assert not (laptop / "device.key").exists()


def test_text_that_cannot_be_a_code_is_refused_before_anything_is_sent(
    server_process, tmp_path: Path
) -> None:
    url, primary = server_process.url, tmp_path / "p"
    lockstep_ok("primary", "init", "--server", url, "--handle", "finn", "--state", str(primary))
    typed = lockstep("primary", "link-code", "K7PM-2QXU", "--yes", "--state", str(primary))
    assert typed.returncode != 0 and "'U'" in typed.stderr and typed.stderr.count("\n") == 1
    short = lockstep("primary", "link-code", "K7PM2QX", "--yes", "--state", str(primary))
    assert short.returncode != 0 and "7 characters" in short.stderr
