"""The phone scanner's QR decoders over 20 distorted camera frames of a real linking code, in Chromium.

Each decoder of web/src/pages/primary/qrDecoders.ts (jsQR, jsQR with preprocessing, ZXing's WebAssembly
build) reads every frame of tests/scanner_frames.py; it is timed as the median of ``--repeats`` decodes
per frame, on this machine and with Chromium's CPU throttled ``--throttle`` times (DevTools'
"mid-tier mobile" preset is 4x, how Lighthouse stands in for a phone). Prints a Markdown table for
docs/benchmarks.md, then which frames each decoder missed.

    .venv/bin/python bench/scanner_decoders.py [--repeats 5] [--throttle 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from chromium import launch
from scanner_frames import Reading, decode_in_page, make_frames
from static_site import ensure_web_build

WEB = Path(__file__).resolve().parents[1] / "web"


def measure(page: Any, frames: list[Any], expected: str, repeats: int) -> dict[str, list[Reading]]:
    decoders: list[str] = page.evaluate("window.scannerBench.decoders")
    return {name: decode_in_page(page, name, frames, repeats=repeats) for name in decoders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--throttle", type=float, default=4.0)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    ensure_web_build(WEB / "dist-test" / "tests" / "scanner-harness.html", "build:test")
    from static_site import serve
    from web.conftest import _Handler  # tests/web/conftest.py: the harness build behind the product's CSP

    code, frames = make_frames()
    expected = code.to_text()
    rows: list[str] = []
    with sync_playwright() as playwright, serve(_Handler) as origin:
        browser = launch(playwright)
        for rate in (1.0, args.throttle):
            page = browser.new_page()
            page.goto(f"{origin}/test/tests/scanner-harness.html")
            page.wait_for_function("window.scannerBench !== undefined")
            if rate != 1.0:
                page.context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": rate})
            for name, readings in measure(page, frames, expected, args.repeats).items():
                read = [r for r in readings if r.text == expected]
                wrong = [r for r in readings if r.text is not None and r.text != expected]
                times = [r.ms for r in readings]
                rows.append(
                    f"| {name} | {rate:g}x | {len(read)}/{len(frames)} | {len(wrong)} | "
                    f"{statistics.median(times):.1f} | {max(times):.1f} |"
                )
                if rate == 1.0:
                    missed = [f.name for f, r in zip(frames, readings, strict=True) if r.text != expected]
                    print(f"{name} missed: {missed}", file=sys.stderr)
            page.close()
        browser.close()
    print("| Decoder | CPU | Frames read | Misread | Median ms/frame | Slowest ms/frame |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
