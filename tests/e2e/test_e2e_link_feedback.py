"""What a computer waiting to be linked says while the phone decides (issue 13, point 7): the browser page
follows the scan as the terminal does, and a phone that cannot link a fifth companion tells it why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fake_camera import Phone
from lockstep.link.wording import companion_notice
from lockstep_cli import link_terminal_companion, lockstep, lockstep_ok, start_terminal_companion
from phone_linking import TIMEOUT, create_account, open_companion, scan, wait_for_context

pytestmark = pytest.mark.browser


def test_the_browser_companion_follows_the_scan_and_the_decline(
    server_process: Any, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    create_account(phone, server_process.url, "kai", "Kai")
    laptop = open_companion(computer, server_process.url)
    assert "New code in" in laptop.get_by_test_id("countdown").inner_text()
    laptop.get_by_test_id("qr").screenshot(path=str(tmp_path / "qr.png"))
    scan(phone, tmp_path / "qr.png")
    wait_for_context(phone)  # the phone shows what asks to be linked; the person reads it

    status = laptop.get_by_test_id("link-status")
    laptop.wait_for_function(
        "(text) => document.querySelector('[data-testid=\"link-status\"]').textContent === text",
        arg=companion_notice("scanned"),
        timeout=TIMEOUT,
    )
    assert laptop.get_by_test_id("qr").is_hidden()  # the code is spoken for: nobody else should scan it
    laptop.wait_for_timeout(1500)  # the countdown would have ticked by now
    assert laptop.get_by_test_id("countdown").inner_text() == ""
    assert status.inner_text() == companion_notice("scanned")

    phone.page.get_by_test_id("link-decline").click()
    phone.camera.show_blank()
    laptop.get_by_test_id("new-code").wait_for(timeout=TIMEOUT)
    assert status.inner_text() == companion_notice("declined")


def test_a_fifth_companion_hears_why_it_is_not_linked(
    server_process: Any, computer: Any, tmp_path: Path
) -> None:
    url, primary = server_process.url, tmp_path / "primary"
    lockstep_ok("primary", "init", "--server", url, "--handle", "lea", "--state", str(primary))
    for i in range(4):
        link_terminal_companion(url, primary, tmp_path / f"c{i}", tmp_path / f"c{i}.png")

    # A fifth terminal: the phone refuses, and the terminal stops waiting and says why.
    fifth = start_terminal_companion(url, tmp_path / "c5", tmp_path / "c5.png")
    refused = lockstep(
        "primary", "scan", "--image", str(tmp_path / "c5.png"), "--yes", "--state", str(primary)
    )
    assert refused.returncode != 0 and "already has 4 linked devices" in refused.stderr
    _out, err = fifth.communicate(timeout=15)
    assert fifth.returncode != 0
    assert err.strip() == f"lockstep: {companion_notice('too_many_devices')}"
    assert not (tmp_path / "c5" / "device.key").exists()

    # A fifth browser: the same words on the page, and a button for a new code.
    laptop = open_companion(computer, url)
    laptop.get_by_test_id("qr").screenshot(path=str(tmp_path / "browser.png"))
    assert (
        lockstep(
            "primary", "scan", "--image", str(tmp_path / "browser.png"), "--yes", "--state", str(primary)
        ).returncode
        != 0
    )
    laptop.get_by_test_id("new-code").wait_for(timeout=TIMEOUT)
    assert laptop.get_by_test_id("link-status").inner_text() == companion_notice("too_many_devices")
    assert laptop.get_by_test_id("qr").is_hidden()
