"""The phone app over `lockstep serve --lan`'s HTTPS, in a Chromium that trusts exactly one extra root:
the local certificate authority the server made (issue 13, point 8). Chromium gets that root as a phone
does after installing it: in its own NSS database (certutil, in a home folder the test makes), with no
flag that skips certificate checks. The service worker then registers and the app opens offline."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from chromium import launch
from lockstep_servers import free_port, start_server

pytestmark = pytest.mark.browser


def home_trusting(home: Path, root: Path | None) -> dict[str, str]:
    """The environment of a Chromium whose NSS database (what Linux Chromium trusts beyond its built-in
    roots) holds ``root`` as a CA for websites, or nothing."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True, timeout=30)
    if root is not None:
        subprocess.run(
            ["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "Lockstep local CA", "-t", "C,,", "-i", str(root)],
            check=True,
            timeout=30,
        )
    return {**os.environ, "HOME": str(home)}


def test_the_phone_app_registers_its_service_worker_once_the_root_is_installed(
    playwright: Any, tmp_path: Path
) -> None:
    lan_port, ca_port = free_port(), free_port()
    options = ("--lan", "--lan-host", "127.0.0.1", "--lan-port", str(lan_port), "--lan-ca-port", str(ca_port))
    server = start_server(tmp_path / "data", tmp_path / "server.log", *options)
    app = f"https://127.0.0.1:{lan_port}/app"
    try:
        # Before the root is installed, the certificate is refused (as on a phone that has not got it).
        untrusting = launch(playwright, env=home_trusting(tmp_path / "before", None))
        try:
            with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
                untrusting.new_page().goto(app)
        finally:
            untrusting.close()

        # With the root downloaded from the server's plain-HTTP page and installed: a secure context.
        root = tmp_path / "downloaded-ca.crt"
        with urllib.request.urlopen(f"http://127.0.0.1:{ca_port}/ca.crt", timeout=10) as download:
            root.write_bytes(download.read())
        browser = launch(playwright, env=home_trusting(tmp_path / "after", root))
        try:
            context = browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
            )
            page = context.new_page()
            page.goto(app)
            assert page.evaluate("window.isSecureContext")
            scope = page.evaluate("navigator.serviceWorker.ready.then((r) => r.active && r.scope)")
            assert scope == f"https://127.0.0.1:{lan_port}/app"
            page.reload()  # the worker now controls the app's page and keeps its shell
            page.wait_for_function("navigator.serviceWorker.controller !== null")
            context.set_offline(True)
            page.reload()
            # The app's own page from the worker's cache, not Chromium's "no internet" page.
            page.get_by_test_id("onboarding").wait_for(state="attached", timeout=20_000)
        finally:
            browser.close()
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
