"""Friction when the networks differ (linking.md §6.5), as people meet it in real Chromium: the computer's
page reaches the server from 127.0.0.2, which the server is told is a network of its own. The phone shows
a full-screen warning naming that address and asks for the number the computer shows after the scan;
a wrong number declines. (Same-network links keep the one tap: tests/e2e/test_e2e_linking.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fake_camera import Phone
from lockstep.link.wording import code_refusal, companion_notice, relay_text
from lockstep_servers import ServerProcess
from other_network import OTHER_ADDRESS, from_other_network
from phone_linking import TIMEOUT, approve, create_account, open_companion, scan, wait_for_context

pytestmark = pytest.mark.browser


def scanned_from_elsewhere(phone: Phone, laptop: Any, picture: Path) -> str:
    """Scan the page's code; the phone covers the screen with the warning; the page shows its number."""
    laptop.get_by_test_id("qr").screenshot(path=str(picture))
    scan(phone, picture)
    warning = phone.page.get_by_test_id("relay-warning")
    warning.wait_for(timeout=TIMEOUT)
    assert phone.page.get_by_test_id("relay-text").inner_text() == relay_text(
        "warning", address=OTHER_ADDRESS
    )
    box, viewport = warning.bounding_box(), phone.page.viewport_size
    assert box and viewport and box["width"] >= viewport["width"] and box["height"] >= viewport["height"]
    assert phone.page.get_by_test_id("link-approve").is_hidden()  # no one-tap Link here
    digits = laptop.get_by_test_id("match-number-digits")
    digits.wait_for(timeout=TIMEOUT)
    return digits.inner_text()


def test_the_right_number_leads_to_the_context_and_links(
    two_network_server: ServerProcess, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    create_account(phone, two_network_server.url)
    with from_other_network(two_network_server.url) as relay:
        laptop = open_companion(computer, relay)
        number = scanned_from_elsewhere(phone, laptop, tmp_path / "qr.png")
        phone.page.get_by_test_id("relay-number").fill(number)
        phone.page.get_by_test_id("relay-continue").click()
        context = wait_for_context(phone)
        assert context["address"].startswith(OTHER_ADDRESS)
        assert "different network" in context["network"].lower()
        approve(phone)
        laptop.get_by_test_id("linked-account").wait_for(timeout=TIMEOUT)


def test_a_wrong_number_declines(
    two_network_server: ServerProcess, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    create_account(phone, two_network_server.url)
    with from_other_network(two_network_server.url) as relay:
        laptop = open_companion(computer, relay)
        number = scanned_from_elsewhere(phone, laptop, tmp_path / "qr.png")
        phone.page.get_by_test_id("relay-number").fill(f"{(int(number) + 1) % 100:02d}")
        phone.page.get_by_test_id("relay-continue").click()
        error = phone.page.get_by_test_id("link-error")
        error.wait_for(timeout=TIMEOUT)
        assert error.inner_text() == code_refusal("wrong_number")
        laptop.get_by_test_id("link-status").filter(has_text=companion_notice("wrong_number")).wait_for(
            timeout=TIMEOUT
        )
    assert phone.page.get_by_test_id("device-row").count() == 1
