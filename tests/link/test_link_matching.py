"""The matching number of linking.md §6.5 against vectors/link-number.json (the browser runs them too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lockstep.link.matching import matching_number, number_matches
from lockstep.link.qr import LinkCode

CASES = json.loads((Path(__file__).parents[2] / "vectors" / "link-number.json").read_text())["cases"]
DEVICE_KEY = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")


def code_of(case: dict[str, Any]) -> LinkCode:
    return LinkCode(
        "https://chat.example",
        bytes.fromhex(case["ref"]),
        bytes(32),
        DEVICE_KEY,
        bytes.fromhex(case["link_secret"]),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["number"])
def test_the_number_is_two_digits_from_ref_and_secret(case: dict[str, Any]) -> None:
    code = code_of(case)
    assert matching_number(code) == case["number"]
    assert number_matches(f" {case['number'][0]} {case['number'][1]} ", code)
    other = f"{(int(case['number']) + 1) % 100:02d}"
    assert not number_matches(other, code)
    assert not number_matches("", code)
