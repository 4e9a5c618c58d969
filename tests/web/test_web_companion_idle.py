"""Idle logout on the companion page (linking.md §4.5), in real Chromium on Playwright's clock: the page
checks its signed list's age on start, on each list update and on its minute timer. Below 3 days left it
counts down; 14 days after the phone's last signed list it logs out and wipes, as an unlink does, even
before the server gets a word in; a list the phone re-signed meanwhile keeps it linked."""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.link.idle import DAY_MS
from lockstep.link.wording import idle_text

from .fake_linking import link_page
from .fake_lockstep import FakeServer, now_ms

pytestmark = pytest.mark.browser
HOUR_MS = 3_600_000
DATABASES = "indexedDB.databases().then((dbs) => dbs.map((d) => d.name))"


def linked_on_the_clock(page: Any, fake_server: FakeServer, static_origin: str) -> Any:
    page.clock.install(time=now_ms() / 1000)  # runs at real speed until the test moves it
    primary, _code = link_page(page, fake_server, static_origin)
    page.get_by_test_id("linked-account").wait_for(state="visible")
    return primary


def test_the_page_counts_down_then_logs_out_after_14_days(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    primary = linked_on_the_clock(page, fake_server, static_origin)
    countdown = page.get_by_test_id("idle-countdown")
    page.clock.fast_forward(10 * DAY_MS)
    page.wait_for_timeout(200)
    assert countdown.is_hidden()  # 4 days left: nothing to say yet
    page.clock.fast_forward(DAY_MS + HOUR_MS)  # the minute timer fires: 2 days 23 hours left
    countdown.wait_for(state="visible")
    expected = "Your phone has been offline for 11 days; this computer will be logged out in 3 days."
    assert countdown.inner_text().startswith(expected)

    # The phone comes back and re-signs its list: the countdown goes (a list update is checked at once).
    refreshed = primary.devices.successor(primary.devices.devices, page.evaluate("Date.now()"))
    fake_server.last.send(
        {
            "event": "devices.changed",
            "device_list": primary.publish(refreshed),
            "change": {"kind": "refreshed", "device_id": primary.devices.primary.device_id, "name": "Phone"},
        }
    )
    countdown.wait_for(state="hidden")

    page.clock.fast_forward(13 * DAY_MS)  # the phone stays away again: 1 day left
    countdown.wait_for(state="visible")
    assert "logged out in 1 day." in countdown.inner_text()
    page.clock.fast_forward(DAY_MS)  # 14 days after the phone's last signed list
    page.get_by_test_id("logged-out").wait_for(state="visible")
    assert page.get_by_test_id("logged-out-reason").inner_text().startswith(idle_text("logged_out"))
    assert page.evaluate(DATABASES) == []  # the same wipe as an unlink


def test_a_page_opened_after_14_days_wipes_before_the_server_speaks(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    linked_on_the_clock(page, fake_server, static_origin)
    connections = len(fake_server.connections)
    page.clock.set_fixed_time(page.evaluate("Date.now()") + 14 * DAY_MS + HOUR_MS)
    page.reload()
    page.get_by_test_id("logged-out").wait_for(state="visible")
    assert page.evaluate(DATABASES) == []
    page.wait_for_timeout(500)
    assert len(fake_server.connections) == connections  # it never asked the server
