"""Fixtures for the Olm/Megolm interop tests: the TypeScript implementation (web/src/e2e) in Debian's
Chromium, next to vodozemac in this process.

A loopback-only static server serves /test/... from web/dist-test (the test build, which holds
tests/e2e-harness.html) and /vectors/... from vectors/, with the product's CSP. Playwright's sync API keeps
an event loop running while it lives, so the browser is per module, never per session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from static_site import StaticHandler, ensure_web_build, serve

from .harness import Harness

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
VECTORS = ROOT / "vectors"
DIST_TEST = WEB / "dist-test"
STAMP = DIST_TEST / "tests" / "e2e-harness.html"

CSP = "default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


@pytest.fixture(scope="session")
def e2e_build() -> None:
    """web/dist-test, rebuilt when missing or older than the web sources."""
    ensure_web_build(STAMP, "build:test")


class _Handler(StaticHandler):
    csp = CSP

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, folder in (("/test/", DIST_TEST), ("/vectors/", VECTORS)):
            if path.startswith(prefix):
                return self.inside(folder, path[len(prefix) :])
        return str(DIST_TEST / "__missing__")


@pytest.fixture(scope="module")
def static_origin() -> Iterator[str]:
    with serve(_Handler) as origin:
        yield origin


@pytest.fixture
def harness(chromium: Any, static_origin: str, e2e_build: None) -> Iterator[Harness]:
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{static_origin}/test/tests/e2e-harness.html")
        page.wait_for_function("window.e2eReady === true")
        yield Harness(page)
        assert errors == []
    finally:
        context.close()
