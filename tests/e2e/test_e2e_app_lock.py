"""The phone app's lock before linking (issue 12 item 3, linking.md §11), in Chromium against a real server.

The phone's fingerprint reader is Chromium's virtual authenticator (chromium.add_platform_authenticator):
the account's passkey is registered on it when the account is made, and whether the person's finger is
recognised is the test's to say. Without an authenticator the app asks for a PIN instead. What the
phone sends on its socket is recorded: a refused lock must leave no ``link.approve`` and no
``devices.update`` behind, whatever the page shows.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from chromium import PHONE
from fake_camera import Phone
from phone_linking import (
    PIN,
    TIMEOUT,
    approve,
    create_account,
    link_companion,
    open_companion,
    open_settings,
    scan,
    wait_for_context,
)

pytestmark = pytest.mark.browser


class SentOps:
    """The ``op`` of every request the page sends on its WebSockets, in order."""

    def __init__(self, page: Any) -> None:
        self.ops: list[str] = []
        page.on("websocket", lambda socket: socket.on("framesent", self._sent))

    def _sent(self, payload: str | bytes) -> None:
        with contextlib.suppress(ValueError, AttributeError):  # not JSON, or not a request
            self.ops.append(json.loads(payload).get("op", ""))


def notice(page: Any, text: str) -> str:
    """Wait for the app's notice to say ``text``; all it says."""
    shown = page.get_by_test_id("notice").filter(has_text=text)
    shown.wait_for(timeout=TIMEOUT)
    return str(shown.inner_text())


def test_a_passkey_made_with_the_account_is_asked_before_every_step_of_a_link(
    server_process: Any, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url, page, finger = server_process.url, phone.page, phone.authenticator
    assert finger is not None
    sent = SentOps(page)
    create_account(phone, url, "lena", "Lena")
    assert finger.credential_count() == 1  # registered on this phone's authenticator, nowhere else
    open_settings(page)
    assert "screen lock" in page.get_by_test_id("app-lock-state").inner_text()

    laptop = open_companion(computer, url)
    laptop.get_by_test_id("qr").screenshot(path=str(tmp_path / "qr.png"))

    # Not recognised: neither the scanner nor code entry opens, and nothing reaches the server.
    finger.set_user_verified(False)
    scan(phone, tmp_path / "qr.png")
    said = notice(page, "did not open the scanner")
    assert "screen lock was cancelled or did not recognise you" in said
    assert page.get_by_test_id("scanner-view").is_hidden()
    page.get_by_test_id("link-with-code").click()
    notice(page, "did not open code entry")
    assert page.get_by_test_id("code-view").is_hidden()
    assert "link.inspect" not in sent.ops

    # Recognised for the scan; not for the Link button: nothing is linked, the computer gets no grant.
    finger.set_user_verified(True)
    scan(phone, tmp_path / "qr.png")
    wait_for_context(phone)
    finger.set_user_verified(False)
    page.get_by_test_id("link-approve").click()
    notice(page, "Lockstep did not link this device")
    assert page.get_by_test_id("link-context").is_visible()  # still asking: the person may try again
    assert "link.approve" not in sent.ops
    assert laptop.get_by_test_id("linked-account").is_hidden()
    assert "0 of at most" in page.get_by_test_id("device-count").inner_text()

    # Recognised: the same offer links.
    finger.set_user_verified(True)
    approve(phone)
    laptop.get_by_test_id("linked-account").wait_for(timeout=TIMEOUT)
    assert sent.ops.count("link.approve") == 1


def test_unlink_log_out_all_and_turning_the_lock_off_ask_for_it_too(
    server_process: Any, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url, page, finger = server_process.url, phone.page, phone.authenticator
    assert finger is not None
    create_account(phone, url, "mira", "Mira")
    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "qr.png", "Mira's laptop")
    page.get_by_test_id("link-done").click()
    sent = SentOps(page)
    page.reload()  # the lock is kept in the sealed store: it survives a restart of the app
    open_settings(page)

    finger.set_user_verified(False)
    page.get_by_test_id("unlink").click()
    page.get_by_test_id("unlink-confirm").click()
    notice(page, "Lockstep did not unlink Mira's laptop")
    page.get_by_test_id("unlink-all").click()
    page.get_by_test_id("unlink-all-confirm").click()
    notice(page, "Lockstep did not log out of all computers")
    page.get_by_test_id("app-lock-off").click()
    notice(page, "Lockstep did not turn the app lock off")
    assert "devices.update" not in sent.ops
    assert page.get_by_test_id("device-row").count() == 2
    assert laptop.get_by_test_id("linked-account").is_visible()
    assert "screen lock" in page.get_by_test_id("app-lock-state").inner_text()

    finger.set_user_verified(True)
    page.get_by_test_id("unlink-all").click()
    page.get_by_test_id("unlink-all-confirm").click()
    laptop.get_by_test_id("logged-out").wait_for(timeout=TIMEOUT)

    # Off (behind the lock), it asks no more; on again, a new passkey is registered.
    page.get_by_test_id("app-lock-off").click()
    page.get_by_test_id("app-lock-state").filter(has_text="Off").wait_for(timeout=TIMEOUT)
    finger.set_user_verified(False)
    page.get_by_test_id("link-with-code").click()
    page.get_by_test_id("code-view").wait_for(timeout=TIMEOUT)
    page.get_by_test_id("code-cancel").click()
    finger.set_user_verified(True)
    page.get_by_test_id("app-lock-on").click()
    page.get_by_test_id("app-lock-state").filter(has_text="On").wait_for(timeout=TIMEOUT)
    assert finger.credential_count() == 2


def test_without_a_platform_authenticator_a_pin_with_a_back_off(
    server_process: Any, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    """A phone with no fingerprint reader or screen lock WebAuthn can use: the app offers a PIN. Five
    wrong PINs earn a 30-second wait, during which even the right one is refused; the page's clock is
    Playwright's, moved forward instead of waited for."""
    url = server_process.url
    context = phone.page.context.browser.new_context(**PHONE)  # same camera, no authenticator
    context.clock.install()
    page = context.new_page()
    no_reader = Phone(page, phone.camera)
    sent = SentOps(page)
    create_account(no_reader, url, "nico", "Nico", lock="pin")
    laptop = open_companion(computer, url)
    laptop.get_by_test_id("qr").screenshot(path=str(tmp_path / "qr.png"))

    scan(no_reader, tmp_path / "qr.png")
    dialog, error = page.get_by_test_id("app-lock-dialog"), page.get_by_test_id("app-lock-error")
    assert "to open the scanner" in dialog.inner_text()

    def enter(pin: str, expect: str) -> None:
        page.get_by_test_id("app-lock-pin").fill(pin)
        page.get_by_test_id("app-lock-submit").click()
        error.filter(has_text=expect).wait_for(timeout=TIMEOUT)

    for left in (4, 3, 2, 1):
        enter("135790", f"Wrong PIN. {left} more")
    enter("135790", "Wrong PIN. Try again in 30 s.")
    enter(PIN, "Too many wrong PINs. Try again in")  # the right PIN, but not now
    page.reload()  # the wait is kept with the PIN: a restart does not end it
    page.get_by_test_id("account").wait_for(timeout=TIMEOUT)
    scan(no_reader, tmp_path / "qr.png")
    enter(PIN, "Too many wrong PINs. Try again in")
    page.get_by_test_id("app-lock-cancel").click()
    notice(page, "Lockstep did not open the scanner: the PIN was not entered")
    assert "link.inspect" not in sent.ops

    context.clock.fast_forward(31_000)
    scan(no_reader, tmp_path / "qr.png")
    page.get_by_test_id("app-lock-pin").fill(PIN)
    page.get_by_test_id("app-lock-submit").click()
    wait_for_context(no_reader)
    page.get_by_test_id("link-approve").click()
    assert "to link this device" in dialog.inner_text()
    page.get_by_test_id("app-lock-pin").fill(PIN)
    page.get_by_test_id("app-lock-submit").click()
    page.get_by_test_id("link-success").wait_for(timeout=TIMEOUT)
    laptop.get_by_test_id("linked-account").wait_for(timeout=TIMEOUT)
    page.get_by_test_id("link-done").click()

    # Settings: a new PIN needs the old one first; afterwards only the new one opens the lock.
    new_pin = "13572468"
    page.get_by_test_id("app-lock-change").click()
    assert "to change the app lock" in dialog.inner_text()
    page.get_by_test_id("app-lock-pin").fill(PIN)
    page.get_by_test_id("app-lock-submit").click()
    page.get_by_test_id("app-lock-new-pin").fill(new_pin)
    page.get_by_test_id("app-lock-repeat-pin").fill(new_pin)
    page.get_by_test_id("app-lock-submit").click()
    dialog.wait_for(state="detached", timeout=TIMEOUT)
    page.get_by_test_id("link-with-code").click()
    enter(PIN, "Wrong PIN.")
    page.get_by_test_id("app-lock-pin").fill(new_pin)
    page.get_by_test_id("app-lock-submit").click()
    page.get_by_test_id("code-view").wait_for(timeout=TIMEOUT)
    context.close()
