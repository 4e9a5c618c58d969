"""Debian's Chromium as every browser test launches it (never a downloaded browser, no network chatter).

    browser = launch(playwright)                       # the ``playwright`` fixture of tests/conftest.py
    phone = launch(playwright, camera=camera.path)     # with a fake camera (fake_camera.py)
    fingerprint = add_platform_authenticator(page)     # the phone's screen lock, for WebAuthn

Playwright's sync API keeps an asyncio loop running while it lives, so fixtures that start it must be
module-scoped, never session-scoped: a live one would break the asyncio tests of later folders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE: dict[str, Any] = {"viewport": {"width": 412, "height": 860}, "is_mobile": True, "has_touch": True}


def launch(playwright: Any, *, camera: Path | None = None, **options: Any) -> Any:
    """Chromium with CHROMIUM_ARGS, and a camera showing the video file ``camera`` if given."""
    args = [*CHROMIUM_ARGS, *(camera_args(camera) if camera is not None else [])]
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args, **options)


def camera_args(video_file: Path) -> list[str]:
    """Flags for a camera that shows ``video_file`` (one YUV4MPEG2 frame, looped) and needs no prompt."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video_file}",
    ]


def call_args(audio_file: Path) -> list[str]:
    """Flags for calls: fake microphone (``audio_file``, a WAV, looped) and camera with no prompt, host
    candidates on loopback with their addresses (no mDNS names), and sound that plays without a gesture."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={audio_file}",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ]


@dataclass(frozen=True)
class VirtualAuthenticator:
    """A phone's platform authenticator (its fingerprint reader or screen lock) as Chromium's WebAuthn
    testing domain plays it: passkeys live in it, and it says yes or no to user verification as told."""

    session: Any
    authenticator_id: str

    def set_user_verified(self, verified: bool) -> None:
        """From now on, the person's finger is recognised (True) or not (False)."""
        self.session.send(
            "WebAuthn.setUserVerified", {"authenticatorId": self.authenticator_id, "isUserVerified": verified}
        )

    def credential_count(self) -> int:
        result = self.session.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id})
        return len(result["credentials"])


def add_platform_authenticator(page: Any) -> VirtualAuthenticator:
    """Give ``page`` a built-in authenticator that verifies its user (CDP
    ``WebAuthn.addVirtualAuthenticator``, transport "internal"): then
    ``PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable()`` is true, and WebAuthn calls
    are answered at once. It lives as long as the page (reloads and navigations included). Chromium's
    own dialogs are left out (``enableUI`` false): there is no person to click them."""
    session = page.context.new_cdp_session(page)
    session.send("WebAuthn.enable", {"enableUI": False})
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    result = session.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return VirtualAuthenticator(session, result["authenticatorId"])


def databases(page: Any) -> list[str]:
    """The names of the IndexedDB databases of ``page``'s origin."""
    names: list[str] = page.evaluate("indexedDB.databases().then((dbs) => dbs.map((db) => db.name))")
    return names


def wait_for_no_databases(page: Any, timeout: float = 10.0) -> None:
    """Poll until ``page``'s origin has no IndexedDB database left (a wipe deletes them; Chromium does so
    once every tab has let go). Polled from here: ``wait_for_function`` does not await a Promise, it
    takes one as a true result at once."""
    deadline = time.monotonic() + timeout
    while (left := databases(page)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"IndexedDB databases left after {timeout} s: {left}"
