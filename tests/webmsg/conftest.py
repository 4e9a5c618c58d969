"""Browsers for the messaging tests: Chromium with a fake camera (chromium.py, fake_camera.py).

Playwright's sync API keeps an asyncio loop alive while it lives, so its fixture is module-scoped here
too, never session-scoped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chromium import CHROMIUM, CHROMIUM_ARGS, PHONE, add_platform_authenticator, call_args, launch
from fake_camera import FakeCamera, Phone
from lockstep_servers import ServerProcess, start_server
from tone import write_tone


class PageErrors:
    """Uncaught exceptions and console errors of every page of a context (CSP violations land here)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, context: Any) -> Any:
        def on_page(page: Any) -> None:
            page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
            page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))

        context.on("page", on_page)
        for page in context.pages:
            on_page(page)
        return context

    def check(self) -> None:
        # A socket that cannot connect while the server is down is logged by Chromium itself; allowed.
        real = [
            e for e in self.errors if "WebSocket connection to" not in e and "ERR_CONNECTION_REFUSED" not in e
        ]
        assert not real, real


@pytest.fixture
def page_errors() -> Iterator[PageErrors]:
    errors = PageErrors()
    yield errors
    errors.check()


@pytest.fixture(scope="module")
def module_page_errors() -> Iterator[PageErrors]:
    """Errors of pages a whole module shares (checked once, when the module is done)."""
    errors = PageErrors()
    yield errors
    errors.check()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``lockstep serve`` for a module whose tests share accounts and linked pages."""
    folder = tmp_path_factory.mktemp("server")
    server = start_server(folder / "data", folder / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def calling_browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium for calls, shared by a module: its fake microphone plays a 440 Hz tone the test made,
    its fake camera shows Chromium's test pattern, and ICE may use loopback (chromium.call_args)."""
    tone = write_tone(tmp_path_factory.mktemp("tone") / "browser-440.wav", 440, seconds=5)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *call_args(tone)])
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def call_browser(calling_browser: Any) -> Iterator[Any]:
    """``calling_browser`` for one test: the pages it opens are closed after it (their server is gone)."""
    before = set(calling_browser.contexts)
    yield calling_browser
    for context in calling_browser.contexts:
        if context not in before:
            context.close()


@pytest.fixture
def computer(playwright: Any, page_errors: PageErrors) -> Iterator[Any]:
    """A desktop browser (companion pages)."""
    browser = launch(playwright)
    context = page_errors.watch(browser.new_context(viewport={"width": 1280, "height": 860}))
    try:
        yield context
    finally:
        browser.close()


def _phone(
    playwright: Any, camera: FakeCamera, page_errors: PageErrors, screen: dict[str, Any] = PHONE
) -> tuple[Any, Phone]:
    browser = launch(playwright, camera=camera.path)
    page = page_errors.watch(browser.new_context(**screen)).new_page()
    return browser, Phone(page, camera, add_platform_authenticator(page))


@pytest.fixture
def phone(playwright: Any, tmp_path: Path, page_errors: PageErrors) -> Iterator[Phone]:
    """A phone-sized browser with a camera the test controls (a primary app)."""
    browser, phone = _phone(playwright, FakeCamera(tmp_path / "camera.y4m"), page_errors)
    try:
        yield phone
    finally:
        browser.close()


@pytest.fixture
def small_phone(playwright: Any, tmp_path: Path, page_errors: PageErrors) -> Iterator[Phone]:
    """A 390x844 phone (an iPhone 12-15's screen in CSS pixels), camera as ``phone``'s."""
    screen = {**PHONE, "viewport": {"width": 390, "height": 844}}
    browser, phone = _phone(playwright, FakeCamera(tmp_path / "camera.y4m"), page_errors, screen)
    try:
        yield phone
    finally:
        browser.close()


@pytest.fixture
def second_phone(playwright: Any, tmp_path: Path, page_errors: PageErrors) -> Iterator[Phone]:
    """Another person's phone."""
    browser, phone = _phone(playwright, FakeCamera(tmp_path / "camera2.y4m"), page_errors)
    try:
        yield phone
    finally:
        browser.close()
