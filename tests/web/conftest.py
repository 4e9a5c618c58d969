"""Fixtures for the browser-code tests: a loopback static server and Debian's Chromium via Playwright.

The static server serves, on 127.0.0.1 only and with the product's CSP:
  /test/...     web/dist-test  (the test harness build: `npm run build:test`, never shipped)
  /vectors/...  vectors/       (the shared vector files)
  /, /app, /link and the rest   web/dist (the product build), mapped as `lockstep serve` maps them
Each build is (re)made, by the fixture that needs it, when missing or older than the web sources.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chromium import PHONE, launch
from fake_camera import FakeCamera, Phone
from static_site import StaticHandler, ensure_web_build, serve

from .fake_lockstep import FakeServer

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
VECTORS = ROOT / "vectors"
DIST = WEB / "dist"
DIST_TEST = WEB / "dist-test"

CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
PAGES = {"/": "index.html", "/app": "app.html", "/link": "link.html"}


@pytest.fixture(scope="session")
def harness_build() -> None:
    ensure_web_build(DIST_TEST / "tests" / "harness.html", "build:test")


@pytest.fixture(scope="session")
def product_build() -> None:
    ensure_web_build(DIST / "index.html", "build")


class _Handler(StaticHandler):
    csp = CSP

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        if path in PAGES:
            return str(DIST / PAGES[path])
        for prefix, folder in (("/test/", DIST_TEST), ("/vectors/", VECTORS)):
            if path.startswith(prefix):
                return self.inside(folder, path[len(prefix) :])
        return self.inside(DIST, path.lstrip("/"))


@pytest.fixture(scope="session")
def static_origin() -> Iterator[str]:
    with serve(_Handler) as origin:
        yield origin


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh page; the test fails if the page threw or logged an error (CSP violations included)."""
    context = chromium.new_context()
    page = context.new_page()
    errors = watch_errors(page)
    try:
        yield page
        assert errors == [], errors
    finally:
        context.close()


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return errors


@pytest.fixture
def harness(page: Any, static_origin: str, harness_build: None) -> Any:
    """A page with the real browser modules exposed as `window.lockstep`."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{static_origin}/test/tests/harness.html")
    page.wait_for_function("window.lockstepReady === true")
    assert errors == []
    return page


@pytest.fixture
def fake_server(page: Any, static_origin: str, product_build: None) -> FakeServer:
    """The page's /ws answered by the test instead of a real server (see fake_lockstep.py)."""
    return FakeServer(page, static_origin)


@pytest.fixture
def phone(playwright: Any, tmp_path: Path) -> Iterator[Phone]:
    """A phone-sized Chromium whose (fake) camera shows what the test puts on it; camera allowed."""
    camera = FakeCamera(tmp_path / "camera.y4m")
    browser = launch(playwright, camera=camera.path)
    context = browser.new_context(**PHONE)
    page = context.new_page()
    errors = watch_errors(page)
    try:
        yield Phone(page, camera)
        assert errors == [], errors
    finally:
        browser.close()
