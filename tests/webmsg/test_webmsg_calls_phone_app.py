"""The phone app (``/app``, a primary made in the browser) as a calling device, in a phone-sized Chromium
with real media (docs/protocol/messaging.md §14): it calls a linked computer of another account and is
called by one; RTP flows both ways (getStats, audio level), and every device keeps the call in its chat.
Its narrow chat header keeps the title readable beside the call buttons (icons with names)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from call_pages import (
    LOOPBACK,
    assert_audio_both_ways,
    call_status,
    dismiss_call_screen,
    linked_browser,
    new_page,
    record_states,
    when,
)
from webmsg_helpers import TIMEOUT, CliAccount, cli_primary, open_chat, start_chat

from chromium import PHONE
from fake_camera import FakeCamera, Phone
from lockstep_cli import lockstep_ok
from lockstep_servers import ServerProcess
from phone_linking import app_url, create_account

pytestmark = pytest.mark.browser
SMALL_PHONE = {**PHONE, "viewport": {"width": 390, "height": 844}}


@dataclass(frozen=True)
class Devices:
    phone: Any
    """Alice's phone app (her primary), 390 px wide."""
    laptop: Any
    """Bob's laptop, linked to his terminal primary."""
    bob: CliAccount


@pytest.fixture(scope="module")
def devices(
    module_server: ServerProcess,
    calling_browser: Any,
    module_page_errors: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Devices:
    folder = tmp_path_factory.mktemp("devices")
    url = module_server.url
    phone = new_page(calling_browser, module_page_errors, **SMALL_PHONE)
    # Calls only: the app lock (asked before linking) is left off, as the offer's "Not now" leaves it.
    create_account(Phone(phone, FakeCamera(folder / "camera.y4m")), url, "alice", "Alice", lock="off")
    phone.goto(f"{app_url(url)}{LOOPBACK}")  # the same app, offering only loopback ICE candidates
    bob = cli_primary(url, folder / "bob", "bob", "Bob Bartholomew-Featherstonehaugh")
    laptop = linked_browser(calling_browser, module_page_errors, url, bob.primary, folder / "qr.png")
    start_chat(phone, "bob")
    return Devices(phone, laptop, bob)


@pytest.fixture(autouse=True)
def idle(devices: Devices) -> Iterator[Devices]:
    record_states(devices.phone, devices.laptop)
    yield devices
    dismiss_call_screen(devices.phone, devices.laptop)


def test_the_phones_chat_header_keeps_its_title_beside_the_call_buttons(
    devices: Devices, tmp_path: Path
) -> None:
    phone = devices.phone
    open_chat(phone, "Bob")
    phone.screenshot(path=str(tmp_path / "phone-chat.png"))
    title = phone.get_by_test_id("conversation-title")
    width = title.evaluate("(e) => e.getBoundingClientRect().width")
    assert width > 150, width  # room for a name, and for the subtitle line under it
    named = {"call-voice": "Voice call", "call-video": "Video call", "chat-menu": "Chat options"}
    for testid, name in named.items():
        button = phone.get_by_test_id(testid)
        assert button.get_attribute("aria-label") == name
        box = button.bounding_box()
        assert box is not None and box["width"] >= 40 and box["height"] >= 40, (testid, box)
    header = phone.locator(".conv-head").bounding_box()
    assert header is not None and header["height"] < 80, header  # one row: nothing wrapped
    # The ⋮ menu opens, and Esc closes it first; only the next Esc closes the chat.
    phone.get_by_test_id("chat-menu").click()
    assert phone.get_by_test_id("chat-menu").get_attribute("aria-expanded") == "true"
    phone.get_by_test_id("mute").wait_for(state="visible")
    phone.keyboard.press("Escape")
    phone.get_by_test_id("mute").wait_for(state="hidden")
    assert phone.get_by_test_id("conversation").is_visible()
    phone.keyboard.press("Escape")
    phone.get_by_test_id("conversation").wait_for(state="hidden")


def test_the_phone_app_calls_a_linked_computer_and_media_flows_both_ways(devices: Devices) -> None:
    phone, laptop = devices.phone, devices.laptop
    open_chat(phone, "Bob")
    phone.get_by_test_id("call-voice").click()
    when(laptop, "ringing-in")
    assert laptop.get_by_test_id("call-peer").inner_text() == "Alice"
    laptop.get_by_test_id("call-answer").click()
    for page in (phone, laptop):
        when(page, "connected")
    phone.wait_for_timeout(2500)
    for page in (phone, laptop):
        assert_audio_both_ways(page)
    assert phone.get_by_test_id("call-hangup").is_visible()  # the call screen fits the phone
    phone.get_by_test_id("call-hangup").click()
    for page in (phone, laptop):
        when(page, "ended")
    open_chat(laptop, "Alice")
    for page in (phone, laptop):
        page.get_by_test_id("message").filter(has_text="voice call, ").first.wait_for(timeout=TIMEOUT)
    assert "voice call, " in lockstep_ok("receive", "--state", str(devices.bob.primary), "--wait", "3")


def test_a_linked_computer_calls_the_phone_app_which_rings_and_answers(devices: Devices) -> None:
    phone, laptop = devices.phone, devices.laptop
    open_chat(laptop, "Alice")
    laptop.get_by_test_id("call-video").click()
    when(phone, "ringing-in")
    assert phone.get_by_test_id("call-peer").inner_text() == "Bob Bartholomew-Featherstonehaugh"
    assert call_status(phone) == "Incoming video call"
    phone.get_by_test_id("call-answer").click()
    for page in (phone, laptop):
        when(page, "connected")
    phone.wait_for_timeout(2500)
    for page in (phone, laptop):
        measured = assert_audio_both_ways(page)
        assert (measured["inbound"]["video"]["frames"] or 0) > 10, measured
    laptop.get_by_test_id("call-hangup").click()
    for page in (phone, laptop):
        when(page, "ended")
        page.get_by_test_id("message").filter(has_text="video call, ").first.wait_for(timeout=TIMEOUT)
