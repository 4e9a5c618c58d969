"""A microphone the browser refuses, or none at all: the call screen says so in words and nothing is
dialled (docs/protocol/messaging.md §14; each case launches its own Chromium, with or without a fake
microphone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from call_pages import linked_browser
from webmsg_helpers import TIMEOUT, cli_primary, receive_json, start_chat

from chromium import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        # A microphone (Chromium's fake one) behind a permission prompt, which headless Chromium refuses.
        (
            ["--use-fake-device-for-media-stream"],
            "Lockstep may not use your microphone: allow it in the browser",
        ),
        ([], "No microphone was found on this device."),  # none at all
    ],
    ids=["refused", "absent"],
)
def test_a_refused_or_absent_microphone_is_said_in_words_and_nothing_is_dialled(
    server_process, playwright: Any, page_errors: Any, tmp_path: Path, flags: list[str], words: str
) -> None:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *flags])
    try:
        alice = cli_primary(server_process.url, tmp_path / "alice", "alice", "Alice")
        bob = cli_primary(server_process.url, tmp_path / "bob", "bob", "Bob")
        laptop = linked_browser(browser, page_errors, server_process.url, alice.primary, tmp_path / "qr.png")
        start_chat(laptop, "bob")
        laptop.get_by_test_id("call-voice").click()
        problem = laptop.get_by_test_id("call-problem")
        problem.wait_for(timeout=TIMEOUT)
        assert problem.inner_text().startswith(words), problem.inner_text()
        assert laptop.get_by_test_id("call-hangup").is_hidden()
        laptop.get_by_test_id("call-close").click()
        laptop.get_by_test_id("call-screen").wait_for(state="hidden", timeout=TIMEOUT)
    finally:
        browser.close()
    assert not [m for m in receive_json(bob.primary, wait=2) if m["kind"] == "call"]  # no offer went out
