"""Link with a typed code as people do it, in real Chromium (linking.md §10): the computer's page shows a
code, a person reads it and types it into the phone app, which shows the warning, then the context, and
links only on Link."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fake_camera import Phone
from lockstep.link.wording import code_refusal, companion_notice, link_code_text
from lockstep_cli import lockstep, start_code_companion
from phone_linking import TIMEOUT, approve, create_account, open_settings, wait_for_context

pytestmark = pytest.mark.browser


def shown_code(computer: Any, url: str) -> tuple[Any, str]:
    """The companion page switched to a typed code, and the code it shows."""
    laptop = computer.new_page()
    laptop.goto(f"{url}/")
    laptop.get_by_test_id("qr").wait_for(state="visible", timeout=TIMEOUT)
    laptop.get_by_test_id("use-code").click()
    typed = laptop.get_by_test_id("typed-code")
    typed.wait_for(state="visible", timeout=TIMEOUT)
    assert link_code_text("companion_instructions") in laptop.get_by_test_id("link-status").inner_text()
    assert laptop.get_by_test_id("qr").is_hidden()
    code = typed.inner_text()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", code), code
    return laptop, code


def type_code(phone: Phone, code: str) -> None:
    page = phone.page
    open_settings(page)
    page.get_by_test_id("link-with-code").click()
    warning = page.get_by_test_id("code-warning")
    warning.wait_for(state="visible", timeout=TIMEOUT)  # shown once the app lock let the person in
    assert warning.inner_text() == link_code_text("warning")
    page.get_by_test_id("code-input").fill(code)
    page.get_by_test_id("code-submit").click()


def test_a_phone_links_the_computer_by_its_typed_code(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url)
    laptop, code = shown_code(computer, url)
    (tmp_path / "companion-code.png").write_bytes(laptop.screenshot())
    type_code(phone, code.lower())
    context = wait_for_context(phone)  # context before consent, as for a QR
    assert "Chrome" in context["description"]
    assert context["address"] == "127.0.0.1 — the server's own machine"
    laptop.get_by_test_id("link-status").filter(has_text=companion_notice("scanned")).wait_for(
        timeout=TIMEOUT
    )
    approve(phone)
    linked = laptop.get_by_test_id("linked-account")
    linked.wait_for(timeout=TIMEOUT)
    assert "@alice" in linked.inner_text()
    phone.page.get_by_test_id("device-row").filter(has_text="Chrome 156").wait_for(timeout=TIMEOUT)


def test_a_mistyped_code_links_nothing_and_the_code_is_spent(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url)
    laptop, code = shown_code(computer, url)
    wrong = code[:-1] + ("0" if code[-1] != "0" else "1")
    type_code(phone, wrong)
    error = phone.page.get_by_test_id("link-error")
    error.wait_for(timeout=TIMEOUT)
    assert error.inner_text() == code_refusal("wrong_code")
    laptop.get_by_test_id("link-status").filter(has_text=companion_notice("wrong_code")).wait_for(
        timeout=TIMEOUT
    )
    assert laptop.get_by_test_id("typed-code").is_hidden()
    phone.page.get_by_test_id("link-done").click()
    type_code(phone, code)  # the right code, after the one attempt
    error.wait_for(timeout=TIMEOUT)
    assert "already used" in error.inner_text()
    assert phone.page.get_by_test_id("device-row").count() == 1  # only the phone itself


def test_a_terminal_companion_is_linked_by_a_code_typed_into_the_phone_app(
    server_process, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url)
    process, code, _printed = start_code_companion(url, tmp_path / "c")
    try:
        type_code(phone, code)
        wait_for_context(phone)
        approve(phone)
        _out, err = process.communicate(timeout=30)  # closes the pipes too
    finally:
        if process.returncode is None:  # the test failed first: reaped here, not by a later test's GC
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert lockstep("companion", "status", "--state", str(tmp_path / "c")).returncode == 0
