"""The link warning page (/link): a linking URL opened as a link explains itself and does nothing.

It must show the warning, drop the fragment from the address bar, and never send the fragment anywhere
or act on it (no socket, no storage, no request beyond its own static files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CODE_TEXT = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "link-qr.json").read_text())[
    "valid"
][0]["text"]
FRAGMENT = CODE_TEXT.split("#", 1)[1]


def test_link_page_warns_and_ignores_fragment(page: Any, static_origin: str, product_build: None) -> None:
    requests: list[Any] = []
    sockets: list[str] = []
    console: list[str] = []
    page.on("request", lambda request: requests.append(request))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: console.append(str(error)))

    page.goto(f"{static_origin}/link#{FRAGMENT}")
    page.wait_for_load_state("networkidle")

    warning = page.get_by_test_id("link-warning")
    assert warning.is_visible()
    text = warning.inner_text()
    assert "scanning the code with the Lockstep app on your phone" in text
    assert "Link a device" in text
    assert "Nobody legitimate sends these codes" in text
    assert "ignore them" in text

    # The fragment is gone from the address bar and this history entry.
    assert page.evaluate("location.hash") == ""
    assert page.url == f"{static_origin}/link"

    # Nothing but the page and its own static files was fetched, nothing was posted, no socket opened.
    assert sockets == []
    for request in requests:
        assert request.method == "GET"
        assert request.url.startswith(static_origin + "/")
        assert FRAGMENT not in request.url and FRAGMENT[:16] not in request.url
        path = request.url[len(static_origin) :]
        assert path == "/link" or path.startswith("/assets/") or path == "/icon.svg", path

    # Nothing stored, nothing of the code shown, no errors (CSP violations would show up here).
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert page.evaluate("indexedDB.databases().then((dbs) => dbs.length)") == 0
    assert page.evaluate("document.cookie") == ""
    assert FRAGMENT[:16] not in page.content()
    assert console == []
