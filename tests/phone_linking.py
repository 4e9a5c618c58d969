"""Linking as a person does it in the real pages, in Chromium: an account made on the phone app, the
companion page opened on a computer, its QR code photographed by the phone's (fake) camera, the context
read and the link approved.

    create_account(phone, url)                               # and the app lock on, with the phone's passkey
    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "qr.png")      # the whole gesture, until the page is linked
    open_settings(phone.page); open_chats(phone.page)       # the primary app's two screens
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from fake_camera import Phone
from lockstep.link.wording import relay_text
from lockstep_cli import start_terminal_companion
from other_network import OTHER_ADDRESS

TIMEOUT = 20_000
PIN = "246810"
"""The app lock PIN ``create_account(..., lock="pin")`` sets."""

AppLock = Literal["passkey", "pin", "off"]


def app_url(url: str) -> str:
    """The phone app of the server at ``url``, as a phone opens it: by a name. WebAuthn (the app lock's
    passkey) takes the page's host as its relying-party id, and an IP address cannot be one; ``localhost``
    can, is a secure context over plain HTTP, and reaches the same loopback server."""
    parts = urlsplit(url)
    if parts.hostname == "127.0.0.1":
        parts = parts._replace(netloc=f"localhost:{parts.port}")
    return f"{urlunsplit(parts)}/app"


def create_account(
    phone: Phone, url: str, handle: str = "alice", name: str = "Alice Liddell", *, lock: AppLock = "passkey"
) -> None:
    """Make the account on the phone app and answer the app lock's offer as ``lock`` says: "passkey" (the
    phone's screen lock: ``phone`` must have an authenticator), "pin" (:data:`PIN`) or "off" (Not now)."""
    page = phone.page
    page.goto(app_url(url))
    page.get_by_test_id("handle").fill(handle)
    page.get_by_test_id("display-name").fill(name)
    page.get_by_test_id("create-account").click()
    page.get_by_test_id("account").wait_for(timeout=TIMEOUT)
    assert f"@{handle}" in page.get_by_test_id("account").inner_text()
    offer = page.get_by_test_id("app-lock-offer")
    offer.wait_for(timeout=TIMEOUT)
    if lock == "off":
        page.get_by_test_id("app-lock-offer-skip").click()
    else:
        turn_on = page.get_by_test_id("app-lock-offer-on")
        expected = "Use this phone's screen lock" if lock == "passkey" else "Set a PIN"
        page.wait_for_function(
            "([el, text]) => el.textContent.trim() === text", arg=[turn_on.element_handle(), expected]
        )
        turn_on.click()
        if lock == "pin":
            page.get_by_test_id("app-lock-new-pin").fill(PIN)
            page.get_by_test_id("app-lock-repeat-pin").fill(PIN)
            page.get_by_test_id("app-lock-submit").click()
    offer.wait_for(state="hidden", timeout=TIMEOUT)


def open_companion(computer: Any, url: str) -> Any:
    page = computer.new_page()
    page.goto(f"{url}/")
    page.get_by_test_id("qr").wait_for(state="visible", timeout=TIMEOUT)
    assert "Link a device" in page.get_by_test_id("link-instructions").inner_text()
    return page


def open_settings(page: Any) -> None:
    """Go to the primary app's Settings screen (Linked devices, "Link a device"), from wherever it is:
    from a chat, back to the chat list first (an open chat covers the screen), then the app bar's
    Settings button."""
    back = page.get_by_test_id("back")
    if back.count() and back.is_visible():
        back.click()
    settings = page.get_by_test_id("open-settings")
    if settings.is_visible():
        settings.click()
    page.get_by_test_id("link-device").wait_for(timeout=TIMEOUT)


def open_chats(page: Any) -> None:
    """Back from the primary app's Settings screen to its chat list (nothing if already there)."""
    back = page.get_by_test_id("settings-back")
    if back.count() and back.is_visible():
        back.click()


def scan(phone: Phone, picture: bytes | Path) -> None:
    """Point the phone's camera at ``picture`` and start a scan in the primary app's Settings."""
    phone.camera.show_picture(picture)
    open_settings(phone.page)
    phone.page.get_by_test_id("link-device").click()


def wait_for_context(phone: Phone) -> dict[str, str]:
    page = phone.page
    page.get_by_test_id("link-context").wait_for(timeout=TIMEOUT)
    return {
        key: page.get_by_test_id(f"context-{key}").inner_text()
        for key in ("description", "address", "network", "age")
    }


def approve(phone: Phone) -> None:
    phone.page.get_by_test_id("link-approve").click()
    phone.page.get_by_test_id("link-success").wait_for(timeout=TIMEOUT)
    phone.camera.show_blank()


def link_companion(phone: Phone, companion: Any, picture: Path, name: str | None = None) -> None:
    """The whole gesture: photograph the companion's code, scan it, (rename), approve, see it linked."""
    companion.get_by_test_id("qr").screenshot(path=str(picture))
    scan(phone, picture)
    wait_for_context(phone)
    if name is not None:
        phone.page.get_by_test_id("device-name-input").fill(name)
    approve(phone)
    companion.get_by_test_id("linked-account").wait_for(timeout=TIMEOUT)


def scanned_from_elsewhere(phone: Phone, laptop: Any, picture: Path) -> str:
    """Scan the code of a page that reached the server from OTHER_ADDRESS (linking.md §6.5): the phone
    covers the screen with the warning, the page shows its number; returns that number."""
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


def link_from_elsewhere(phone: Phone, laptop: Any, picture: Path) -> dict[str, str]:
    """Link a page that reached the server from OTHER_ADDRESS up to its context: the warning, then the
    number it shows typed on the phone; returns the context (approve() links it)."""
    number = scanned_from_elsewhere(phone, laptop, picture)
    phone.page.get_by_test_id("relay-number").fill(number)
    phone.page.get_by_test_id("relay-continue").click()
    return wait_for_context(phone)


def link_terminal_companion_to_phone(phone: Phone, url: str, state: Path, qr: Path) -> None:
    """A terminal companion (`lockstep companion link` into ``state``) linked by the phone app, which
    photographs the code it wrote to ``qr``; returns once the terminal says it is linked."""
    process = start_terminal_companion(url, state, qr)
    scan(phone, qr)
    wait_for_context(phone)
    approve(phone)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
