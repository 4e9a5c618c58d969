"""The browser's matching number (web/src/link/matching.ts) against vectors/link-number.json, which the
Python side (lockstep.link.matching) runs too: both devices must show and expect the same two digits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CASES = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "link-number.json").read_text())[
    "cases"
]


def test_the_browser_computes_the_same_numbers(harness: Any) -> None:
    out = harness.evaluate(
        """async (cases) => {
             const { matching, bytes } = window.lockstep;
             const results = [];
             for (const c of cases) {
               const [ref, secret] = [bytes.fromHex(c.ref), bytes.fromHex(c.link_secret)];
               results.push([
                 await matching.matchingNumber(ref, secret),
                 await matching.numberMatches(` ${c.number} `, ref, secret),
                 await matching.numberMatches("", ref, secret),
               ]);
             }
             return results;
           }""",
        CASES,
    )
    assert out == [[case["number"], True, False] for case in CASES]
