"""Friction when the networks differ (linking.md §6.5), as people meet it in real Chromium: the computer's
page reaches the server from 127.0.0.2, which the server is told is a network of its own. The phone shows
a full-screen warning naming that address and asks for the number the computer shows after the scan;
a wrong number declines. (Same-network links keep the one tap: tests/e2e/test_e2e_linking.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fake_camera import Phone
from lockstep.link.wording import code_refusal, companion_notice
from lockstep_servers import ServerProcess
from other_network import OTHER_ADDRESS, from_other_network
from phone_linking import (
    TIMEOUT,
    approve,
    create_account,
    link_from_elsewhere,
    open_companion,
    scanned_from_elsewhere,
)

pytestmark = pytest.mark.browser


def test_the_right_number_leads_to_the_context_and_links(
    two_network_server: ServerProcess, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    create_account(phone, two_network_server.url)
    with from_other_network(two_network_server.url) as relay:
        laptop = open_companion(computer, relay)
        context = link_from_elsewhere(phone, laptop, tmp_path / "qr.png")
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
