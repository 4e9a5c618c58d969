"""The phone's QR scanner against what a real camera sees: 20 distorted frames of a real linking code
(tests/scanner_frames.py), decoded in Chromium by the product's decoder and by the jsQR variants it
replaced (bench/scanner_decoders.py prints the same comparison with timings for docs/benchmarks.md)."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from phone_linking import open_settings
from scanner_frames import decode_in_page, make_frames

from . import test_web_primary
from .test_web_primary import Companion

pytestmark = pytest.mark.browser

setup = test_web_primary.setup  # the phone app with a new account, against the scripted server

PRODUCT_DECODER = "ZXing (WebAssembly)"
# A phone scans several frames a second: the scanner asks for one every 120 ms, and a phone's CPU is
# about 4x slower than this machine's (DevTools' mid-tier mobile preset), so 25 ms here is 100 ms there.
FRAME_BUDGET_MS = 25


@pytest.fixture
def bench(page: Any, static_origin: str, harness_build: None) -> Any:
    page.goto(f"{static_origin}/test/tests/scanner-harness.html")
    page.wait_for_function("window.scannerBench !== undefined")
    return page


def test_the_scanner_reads_every_distorted_frame_within_a_phones_budget(bench: Any) -> None:
    code, frames = make_frames()
    expected = code.to_text()
    read = {
        name: decode_in_page(bench, name, frames, repeats=3)
        for name in bench.evaluate("window.scannerBench.decoders")
    }
    product = read.pop(PRODUCT_DECODER)
    missed = [frame.name for frame, reading in zip(frames, product, strict=True) if reading.text != expected]
    assert missed == []
    # The fastest of 3 decodes per frame: the machine's other work (2 shared cores) only adds time.
    assert statistics.median(r.best_ms for r in product) < FRAME_BUDGET_MS
    for name, readings in read.items():  # what it replaced reads fewer (and never anything else)
        texts = [r.text for r in readings]
        assert set(texts) <= {expected, None}, name
        assert texts.count(expected) < len(frames), name


def test_the_phone_app_scans_a_tilted_rotated_blurred_noisy_code(setup: Any, static_origin: str) -> None:
    """The shot jsQR missed, in front of the phone app's camera: the app reads it and asks for consent."""
    phone, _server, _account = setup
    companion = Companion.make(static_origin)
    _code, frames = make_frames(companion.code)
    [hard] = [frame for frame in frames if frame.name == "tilted, rotated, blurred and noisy"]
    phone.camera.show_frame(hard.image)
    open_settings(phone.page)
    phone.page.get_by_test_id("link-device").click()
    phone.page.get_by_test_id("link-context").wait_for()
    assert phone.page.get_by_test_id("context-description").inner_text().startswith("Firefox 140 on Windows")
