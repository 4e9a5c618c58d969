"""Builds of web/ and a loopback static server for the browser-code tests (tests/web, tests/e2ecrypto)."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WEB = Path(__file__).resolve().parent.parent / "web"


def _newest_source_mtime() -> float:
    sources = [WEB / "package.json", WEB / "vite.config.ts", *WEB.glob("*.html")]
    for folder in ("src", "public", "tests"):
        sources.extend(p for p in (WEB / folder).rglob("*") if p.is_file())
    return max(p.stat().st_mtime for p in sources if p.exists())


def ensure_web_build(stamp: Path, script: str) -> None:
    """Run `npm run SCRIPT` in web/ unless ``stamp`` is newer than every web source."""
    if stamp.exists() and stamp.stat().st_mtime >= _newest_source_mtime():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed to build web/"
    if not (WEB / "node_modules").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "--silent", script], cwd=WEB, check=True, stdout=subprocess.DEVNULL)


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with the product's headers; subclasses map paths in ``translate_path``."""

    csp = "default-src 'self'"
    extensions_map = {  # noqa: RUF012 - class attribute of the stdlib handler
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".json": "application/json",
        ".webmanifest": "application/manifest+json",
        ".svg": "image/svg+xml",
    }

    @staticmethod
    def inside(folder: Path, relative: str) -> str:
        """``folder/relative``, or a missing file when ``relative`` escapes the folder."""
        target = (folder / relative).resolve()
        if folder.resolve() not in target.parents and target != folder.resolve():
            return str(folder / "__missing__")
        return str(target)

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", self.csp)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextlib.contextmanager
def serve(handler: type[StaticHandler]) -> Iterator[str]:
    """Serve with ``handler`` on 127.0.0.1 (a free port) for the duration; yields the origin."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
