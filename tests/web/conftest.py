"""Fixtures for the browser-code tests: a loopback static server and Debian's Chromium via Playwright.

The static server serves, on 127.0.0.1 only and with the product's CSP:
  /test/...     web/dist-test  (the test harness build: `npm run build:test`, never shipped)
  /vectors/...  vectors/       (the shared vector files)
  /, /app, /link and the rest   web/dist (the product build), mapped as `lockstep serve` maps them
Each build is (re)made, by the fixture that needs it, when missing or older than the web sources.
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

from chromium import CHROMIUM, CHROMIUM_ARGS, camera_args

from .fake_camera import FakeCamera, Phone
from .fake_lockstep import FakeServer

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
VECTORS = ROOT / "vectors"
DIST = WEB / "dist"
DIST_TEST = WEB / "dist-test"

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGES = {"/": "index.html", "/app": "app.html", "/link": "link.html"}


def _newest_source_mtime() -> float:
    sources = [WEB / "package.json", WEB / "vite.config.ts", *WEB.glob("*.html")]
    for folder in ("src", "public", "tests"):
        sources.extend(p for p in (WEB / folder).rglob("*") if p.is_file())
    return max(p.stat().st_mtime for p in sources if p.exists())


def _ensure_build(stamp: Path, script: str) -> None:
    if stamp.exists() and stamp.stat().st_mtime >= _newest_source_mtime():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed to build web/"
    if not (WEB / "node_modules").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "--silent", script], cwd=WEB, check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def harness_build() -> None:
    _ensure_build(DIST_TEST / "tests" / "harness.html", "build:test")


@pytest.fixture(scope="session")
def product_build() -> None:
    _ensure_build(DIST / "index.html", "build")


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - class attribute of the stdlib handler
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".json": "application/json",
        ".webmanifest": "application/manifest+json",
        ".svg": "image/svg+xml",
    }

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        if path in PAGES:
            return str(DIST / PAGES[path])
        for prefix, folder in (("/test/", DIST_TEST), ("/vectors/", VECTORS)):
            if path.startswith(prefix):
                return self._inside(folder, path[len(prefix) :])
        return self._inside(DIST, path.lstrip("/"))

    @staticmethod
    def _inside(folder: Path, relative: str) -> str:
        target = (folder / relative).resolve()
        if folder.resolve() not in target.parents and target != folder.resolve():
            return str(folder / "__missing__")
        return str(target)

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="session")
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
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def chromium(playwright: Any) -> Iterator[Any]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


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
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            *CHROMIUM_ARGS,
            *camera_args(camera.path),
        ],
    )
    context = browser.new_context(viewport={"width": 412, "height": 860}, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors = watch_errors(page)
    try:
        yield Phone(page, camera)
        assert errors == [], errors
    finally:
        browser.close()
