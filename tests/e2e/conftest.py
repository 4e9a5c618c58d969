"""Browsers for the end-to-end tests: Debian's Chromium through Playwright, one with a fake camera.

Playwright's sync API keeps an event loop running while it is alive, so it lives per module here and
never overlaps the asyncio tests of other folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chromium import PHONE, launch
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
    """A phone-sized browser whose camera shows whatever the test puts in ``phone.camera``."""
    camera = FakeCamera(tmp_path / "camera.y4m")
    browser = launch(playwright, camera=camera.path)
    context = browser.new_context(**PHONE)
    try:
        yield Phone(context.new_page(), camera)
    finally:
        browser.close()
