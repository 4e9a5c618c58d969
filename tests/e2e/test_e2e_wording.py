"""What the phone and the terminal say when a scan cannot link: the same words for the same refusal,
and never silence (issue 13, point 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import segno

from fake_camera import Phone
from lockstep_cli import lockstep
from phone_linking import TIMEOUT, create_account, link_companion, open_companion, scan

pytestmark = pytest.mark.browser


def refusal_on_phone(phone: Phone, picture: Path) -> str:
    scan(phone, picture)
    error = phone.page.get_by_test_id("link-error")
    error.wait_for(timeout=TIMEOUT)
    text: str = error.inner_text()
    phone.page.get_by_test_id("link-done").click()
    return text


def test_a_qr_code_that_is_not_lockstep_is_named_on_the_phone(
    server_process: Any, phone: Phone, tmp_path: Path
) -> None:
    create_account(phone, server_process.url, "hana", "Hana")
    menu = tmp_path / "menu.png"
    segno.make_qr("https://restaurant.example/menu").save(str(menu), scale=8, border=4)
    assert "not a Lockstep linking code" in refusal_on_phone(phone, menu)
    wifi = tmp_path / "wifi.png"
    segno.make_qr("WIFI:S:cafe;T:WPA;P:secret;;").save(str(wifi), scale=8, border=4)
    assert "not a Lockstep linking code" in refusal_on_phone(phone, wifi)
    # Byte-mode text that is not UTF-8 (QR's default ISO 8859-1, as many printed menus are encoded).
    latin = tmp_path / "latin.png"
    segno.make_qr("Café Noël", encoding="iso-8859-1").save(str(latin), scale=8, border=4)
    assert "not a Lockstep linking code" in refusal_on_phone(phone, latin)


def test_phone_and_terminal_say_the_same_for_a_used_code_and_names_stay_unique(
    server_process: Any, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url, "ines", "Ines")
    first = open_companion(computer, url)
    link_companion(phone, first, tmp_path / "first.png")  # the name the phone suggests, unchanged
    phone.page.get_by_test_id("link-done").click()
    second = open_companion(computer.browser.new_context(viewport={"width": 1280, "height": 860}), url)
    link_companion(phone, second, tmp_path / "second.png")
    phone.page.get_by_test_id("link-done").click()
    phone.page.get_by_test_id("device-row").nth(2).wait_for(timeout=TIMEOUT)
    names = phone.page.get_by_test_id("device-name").all_inner_texts()
    base = names[1]
    assert "Chrome" in base and names[2] == f"{base} (2)", names

    # The first code again: used. The phone and a terminal primary say the very same sentence.
    on_phone = refusal_on_phone(phone, tmp_path / "first.png")
    terminal = tmp_path / "terminal"
    assert (
        lockstep("primary", "init", "--server", url, "--handle", "joel", "--state", str(terminal)).returncode
        == 0
    )
    scanned = lockstep(
        "primary", "scan", "--image", str(tmp_path / "first.png"), "--yes", "--state", str(terminal)
    )
    assert scanned.returncode != 0
    assert "already used" in on_phone and scanned.stderr.strip() == f"lockstep: {on_phone}", (
        on_phone,
        scanned.stderr,
    )
