"""Probation (linking.md §4.6) as people meet it in real Chromium: a computer linked from 127.0.0.2 (a
network of its own for this server) gets no history, while one linked on the phone's network gets it at
once; the phone app and the other computer show the banner naming the address; "Send history now" on the
phone (behind the app lock) ends probation with a new signed list, and the history follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fake_camera import Phone
from lockstep.link.wording import probation_text
from lockstep_servers import ServerProcess
from other_network import OTHER_ADDRESS, from_other_network
from phone_linking import (
    TIMEOUT,
    approve,
    create_account,
    link_companion,
    link_from_elsewhere,
    open_companion,
)

pytestmark = pytest.mark.browser
BANNER = f"New device linked less than an hour ago from {OTHER_ADDRESS} — not you?"


def test_a_computer_from_another_network_waits_for_its_history(
    two_network_server: ServerProcess, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    create_account(phone, two_network_server.url)
    with from_other_network(two_network_server.url) as relay:
        laptop = open_companion(computer, relay)
        link_from_elsewhere(phone, laptop, tmp_path / "laptop.png")
        approve(phone)
        laptop.get_by_test_id("linked-account").wait_for(timeout=TIMEOUT)
        phone.page.get_by_test_id("link-done").click()
        desk = open_companion(computer.browser.new_context(), two_network_server.url)
        link_companion(phone, desk, tmp_path / "desk.png", name="Desk")
        phone.page.get_by_test_id("link-done").click()

        # The desk (the phone's network) gets history at once; the laptop is told it waits for it.
        desk.get_by_test_id("history-note").wait_for(timeout=TIMEOUT)
        assert "until" in laptop.get_by_test_id("on-probation").inner_text()
        assert laptop.get_by_test_id("history-note").is_hidden()
        assert laptop.get_by_test_id("probation-banner").count() == 0  # no banner about itself

        # Every other device shows the banner: the phone with Unlink, the desk pointing to the phone.
        on_desk = desk.get_by_test_id("probation-banner")
        on_desk.wait_for(timeout=TIMEOUT)
        assert on_desk.inner_text() == f"{BANNER} {probation_text('unlink_on_phone')}"
        on_phone = phone.page.get_by_test_id("probation-banner")
        on_phone.wait_for(timeout=TIMEOUT)
        assert on_phone.inner_text().startswith(BANNER)
        assert on_phone.get_by_test_id("probation-unlink").is_visible()

        # "Send history now" asks for the app lock first: not recognised, nothing changes.
        assert phone.authenticator is not None
        phone.authenticator.set_user_verified(False)
        on_phone.get_by_test_id("send-history-now").click()
        phone.page.get_by_test_id("notice").filter(has_text="did not send history now").wait_for(
            timeout=TIMEOUT
        )
        assert on_phone.is_visible() and laptop.get_by_test_id("history-note").is_hidden()
        # Recognised: probation ends for everyone, and the laptop gets its history.
        phone.authenticator.set_user_verified(True)
        on_phone.get_by_test_id("send-history-now").click()
        laptop.get_by_test_id("history-note").wait_for(timeout=TIMEOUT)
        on_phone.wait_for(state="detached", timeout=TIMEOUT)
        on_desk.wait_for(state="detached", timeout=TIMEOUT)
        laptop.get_by_test_id("on-probation").wait_for(state="detached", timeout=TIMEOUT)
