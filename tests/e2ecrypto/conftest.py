"""Fixtures for the Olm/Megolm interop tests: the TypeScript implementation (web/src/e2e) in Debian's
Chromium, next to vodozemac in this process.

A loopback-only static server serves /test/... from web/dist-test (the test build, which holds
tests/e2e-harness.html) and /vectors/... from vectors/, with the product's CSP. Playwright's sync API keeps
an event loop running while it lives, so the browser is per module, never per session.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chromium import CHROMIUM, CHROMIUM_ARGS

from .harness import Harness

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
VECTORS = ROOT / "vectors"
DIST_TEST = WEB / "dist-test"
STAMP = DIST_TEST / "tests" / "e2e-harness.html"

CSP = "default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


def _newest_source_mtime() -> float:
    sources = [WEB / "package.json", WEB / "vite.config.ts"]
    for folder in ("src", "tests"):
        sources.extend(p for p in (WEB / folder).rglob("*") if p.is_file())
    return max(p.stat().st_mtime for p in sources if p.exists())


@pytest.fixture(scope="session")
def e2e_build() -> None:
    """web/dist-test, rebuilt when missing or older than the web sources."""
    if STAMP.exists() and STAMP.stat().st_mtime >= _newest_source_mtime():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed to build web/"
    if not (WEB / "node_modules").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "--silent", "build:test"], cwd=WEB, check=True, stdout=subprocess.DEVNULL)


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - class attribute of the stdlib handler
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".json": "application/json",
    }

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, folder in (("/test/", DIST_TEST), ("/vectors/", VECTORS)):
            if path.startswith(prefix):
                target = (folder / path[len(prefix) :]).resolve()
                if folder.resolve() in target.parents:
                    return str(target)
        return str(DIST_TEST / "__missing__")

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def static_origin() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


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
