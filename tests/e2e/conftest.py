"""Browsers for the end-to-end tests: Debian's Chromium through Playwright, one with a fake camera.

Playwright's sync API keeps an event loop running while it is alive, so it lives per module here and
never overlaps the asyncio tests of other folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chromium import PHONE, add_platform_authenticator, launch
from fake_camera import FakeCamera, Phone


@pytest.fixture
def computer(playwright: Any) -> Iterator[Any]:
    """A desktop browser: opens the companion page."""
    browser = launch(playwright)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        yield context
    finally:
        browser.close()


@pytest.fixture
def phone(playwright: Any, tmp_path: Path) -> Iterator[Phone]:
    """A phone-sized browser whose camera shows whatever the test puts in ``phone.camera``, with a
    fingerprint reader (the app lock's passkey)."""
    camera = FakeCamera(tmp_path / "camera.y4m")
    browser = launch(playwright, camera=camera.path)
    page = browser.new_context(**PHONE).new_page()
    try:
        yield Phone(page, camera, add_platform_authenticator(page))
    finally:
        browser.close()
