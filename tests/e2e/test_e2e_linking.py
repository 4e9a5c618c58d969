"""Linking as people do it, in real Chromium: a phone scans the computer's QR code with its camera.

No shortcut through the API: the companion page's QR is screenshotted, fed to the phone browser as its
camera, decoded there, approved there, and the companion page turns linked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import segno

from fake_camera import Phone
from lockstep.client.qrimage import read_image
from lockstep.link.encoding import b64u_encode
from lockstep.link.qr import LinkCode, decode_text
from lockstep_cli import lockstep, start_terminal_companion
from phone_linking import (
    TIMEOUT,
    approve,
    create_account,
    link_companion,
    open_companion,
    scan,
    wait_for_context,
)

pytestmark = pytest.mark.browser


def test_phone_scans_the_computer_and_links_it(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url)
    laptop = open_companion(computer, url)
    laptop.get_by_test_id("qr").screenshot(path=str(tmp_path / "qr.png"))
    (tmp_path / "companion.png").write_bytes(laptop.screenshot())

    scan(phone, tmp_path / "qr.png")
    context = wait_for_context(phone)
    assert "Chrome" in context["description"] and "Linux" in context["description"]
    assert context["description"].endswith("— as the computer describes itself")  # a claim, not a fact
    assert context["address"] == "127.0.0.1 — the server's own machine"  # what the server saw
    assert "same network" in context["network"].lower()
    assert "s" in context["age"]
    approve_box = phone.page.get_by_test_id("link-approve").bounding_box()
    decline_box = phone.page.get_by_test_id("link-decline").bounding_box()
    assert approve_box and decline_box
    assert abs(approve_box["width"] - decline_box["width"]) < 2  # equally prominent
    assert abs(approve_box["height"] - decline_box["height"]) < 2
    approve(phone)

    linked = laptop.get_by_test_id("linked-account")
    linked.wait_for(timeout=TIMEOUT)
    assert "@alice" in linked.inner_text() and "Alice Liddell" in linked.inner_text()
    laptop.reload()
    laptop.get_by_test_id("linked-account").wait_for(timeout=TIMEOUT)  # stays linked across reloads
    row = phone.page.get_by_test_id("device-row").filter(has_text="Chrome 156")
    row.wait_for(timeout=TIMEOUT)

    # The server stored the link, but never the QR's secret (only phone and computer saw it).
    code = decode_text(read_image(tmp_path / "qr.png"))
    database = b"".join(p.read_bytes() for p in server_process.data_dir.glob("lockstep.sqlite3*"))
    assert b"alice" in database
    assert code.link_secret not in database and b64u_encode(code.link_secret).encode() not in database


def test_unlink_logs_the_browser_companion_out(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url, "bob", "Bob")
    laptop = open_companion(computer, url)
    link_companion(phone, laptop, tmp_path / "qr.png")

    row = phone.page.get_by_test_id("device-row").filter(has_text="Chrome 156")
    row.get_by_test_id("unlink").click()
    phone.page.get_by_test_id("unlink-confirm").click()
    laptop.get_by_test_id("logged-out").wait_for(timeout=TIMEOUT)
    laptop.reload()
    laptop.get_by_test_id("qr").wait_for(state="visible", timeout=TIMEOUT)  # keys wiped: back to a code
    assert (
        laptop.get_by_test_id("linked-account").count() == 0
        or not laptop.get_by_test_id("linked-account").is_visible()
    )


def test_cli_primary_links_a_browser_companion(server_process, computer: Any, tmp_path: Path) -> None:
    url, state = server_process.url, tmp_path / "primary"
    assert (
        lockstep(
            "primary", "init", "--server", url, "--handle", "carol", "--name", "Carol", "--state", str(state)
        ).returncode
        == 0
    )
    laptop = open_companion(computer, url)
    laptop.get_by_test_id("qr").screenshot(path=str(tmp_path / "qr.png"))
    scanned = lockstep("primary", "scan", "--image", str(tmp_path / "qr.png"), "--yes", "--state", str(state))
    assert scanned.returncode == 0, scanned.stderr
    assert "Chrome" in scanned.stdout
    laptop.get_by_test_id("linked-account").wait_for(timeout=TIMEOUT)
    assert "@carol" in laptop.get_by_test_id("linked-account").inner_text()


def test_browser_primary_links_a_cli_companion(server_process, phone: Phone, tmp_path: Path) -> None:
    url, qr = server_process.url, tmp_path / "qr.png"
    create_account(phone, url, "dora", "Dora")
    companion = start_terminal_companion(url, tmp_path / "c", qr)
    scan(phone, qr)
    context = wait_for_context(phone)
    assert "Lockstep terminal" in context["description"]
    approve(phone)
    out, err = companion.communicate(timeout=20)
    assert companion.returncode == 0, err
    assert "Linked to @dora (Dora)" in out


def test_a_code_for_another_server_is_refused(server_process, phone: Phone, tmp_path: Path) -> None:
    create_account(phone, server_process.url, "erin", "Erin")
    foreign = LinkCode(
        "https://lockstep-verify.example", bytes(32), bytes(32), bytes(32), bytes(32)
    ).to_text()
    segno.make_qr(foreign).save(str(tmp_path / "foreign.png"), scale=8, border=4)
    scan(phone, tmp_path / "foreign.png")
    error = phone.page.get_by_test_id("link-error")
    error.wait_for(timeout=TIMEOUT)
    assert "not from your server" in error.inner_text()
    assert (
        phone.page.get_by_test_id("link-context").count() == 0
        or not phone.page.get_by_test_id("link-context").is_visible()
    )


def test_a_used_code_is_refused(server_process, computer: Any, phone: Phone, tmp_path: Path) -> None:
    create_account(phone, server_process.url, "fay", "Fay")
    laptop = open_companion(computer, server_process.url)
    laptop.get_by_test_id("qr").screenshot(path=str(tmp_path / "qr.png"))
    scan(phone, tmp_path / "qr.png")
    wait_for_context(phone)
    approve(phone)
    phone.page.reload()
    phone.page.get_by_test_id("account").wait_for(timeout=TIMEOUT)
    scan(phone, tmp_path / "qr.png")
    error = phone.page.get_by_test_id("link-error")
    error.wait_for(timeout=TIMEOUT)
    assert "already used" in error.inner_text()


def test_the_linking_url_opened_as_a_link_only_warns(server_process, computer: Any, tmp_path: Path) -> None:
    requests: list[str] = []
    page = computer.new_page()
    page.on("request", lambda request: requests.append(request.url))
    code = LinkCode(server_process.url, bytes(range(32)), bytes(32), bytes(32), bytes(32)).to_text()
    page.goto(code)
    warning = page.get_by_test_id("link-warning")
    warning.wait_for(timeout=TIMEOUT)
    text = warning.inner_text().lower()
    assert "scan" in text and "nobody" in text
    fragment = code.split("#", 1)[1]
    assert "#" not in page.url  # the code is cleared from the address bar
    assert all(fragment not in url for url in requests)


def test_pages_are_served_with_a_strict_policy(server_process) -> None:
    import urllib.request

    with urllib.request.urlopen(server_process.url + "/app") as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    info = json.loads(urllib.request.urlopen(server_process.url + "/api/info").read())
    assert info["origin"] == server_process.url


def test_every_other_device_hears_of_a_new_link_and_a_rename(
    server_process, computer: Any, phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    create_account(phone, url, "gus", "Gus")
    first = open_companion(computer, url)
    link_companion(phone, first, tmp_path / "first.png", "Office PC")
    assert "Office PC" in first.get_by_test_id("linked-account").inner_text()

    other_computer = computer.browser.new_context(viewport={"width": 1280, "height": 860})
    second = open_companion(other_computer, url)  # its own storage: a different computer
    phone.page.reload()
    phone.page.get_by_test_id("account").wait_for(timeout=TIMEOUT)
    link_companion(phone, second, tmp_path / "second.png", "Home laptop")

    notice = first.get_by_test_id("notice").filter(has_text="Home laptop")
    notice.wait_for(timeout=TIMEOUT)
    assert "new device linked" in notice.inner_text().lower()

    row = phone.page.get_by_test_id("device-row").filter(has_text="Office PC")
    row.get_by_test_id("rename").click()
    phone.page.get_by_test_id("rename-input").fill("Front desk")
    phone.page.get_by_test_id("rename-save").click()
    first.get_by_test_id("linked-account").filter(has_text="Front desk").wait_for(timeout=TIMEOUT)
