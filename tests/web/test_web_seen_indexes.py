"""The browser keeps decrypted Megolm indexes as the Python client does (web/src/messenger/seenIndexes.ts
and e2e/replay.py, messaging.md §6.1): for any order of arrival, the same indexes are accepted and the
same bounded ranges kept, read from the built module in Chromium; each reads the other's pickle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.e2e.replay import SeenIndexes

pytestmark = pytest.mark.browser

ARRIVALS = st.lists(st.integers(0, 3_000), max_size=500)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals=ARRIVALS, before=st.lists(st.integers(0, 3_000), max_size=50))
def test_the_browser_accepts_and_keeps_indexes_as_the_python_client_does(
    harness: Any, arrivals: list[int], before: list[int]
) -> None:
    python = SeenIndexes.from_json(sorted(set(before)))  # state from before ranges, as both read it
    accepted = [python.add(index) for index in arrivals]
    browser = harness.evaluate(
        """([arrivals, before]) => {
            const { SeenIndexes } = window.lockstep.seenIndexes;
            const seen = SeenIndexes.fromJson(before);
            const accepted = arrivals.map((index) => seen.add(index));
            return { accepted, ranges: seen.toJson(), again: SeenIndexes.fromJson(seen.toJson()).toJson() };
        }""",
        [arrivals, sorted(set(before))],
    )
    assert browser["accepted"] == accepted
    assert browser["ranges"] == browser["again"] == python.to_json()
    assert SeenIndexes.from_json(browser["ranges"]).to_json() == python.to_json()


def test_the_browser_refuses_damaged_ranges(harness: Any) -> None:
    refused = harness.evaluate(
        """() => [{}, [[3, 1]], [[0, 2], [2, 4]], [[5, 6], [0, 1]], [[0, 1, 2]], [-1], [[-2, 1]], [["0", 1]]]
            .map((value) => { try { window.lockstep.seenIndexes.SeenIndexes.fromJson(value); return false; }
                              catch { return true; } })"""
    )
    assert all(refused)
