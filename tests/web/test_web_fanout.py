"""The browser plans a fan-out into requests exactly as the Python client does (web/src/messenger/fanout.ts
and e2e/fanout.py, messaging.md §6.3): the same size bound for each payload and the same split, for any
devices, plaintext length and budget, read from the built module in Chromium."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.e2e.fanout import FanoutTooLarge, payload_size_bound, plan_requests

pytestmark = pytest.mark.browser

DEVICE_IDS = st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,43}", fullmatch=True), unique=True, max_size=200)


def python_plan(devices: list[str], size: int, budget: int, most: int) -> list[list[str]] | str:
    try:
        return plan_requests(devices, size, budget, most)
    except FanoutTooLarge:
        return "too large"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    devices=DEVICE_IDS,
    size=st.integers(0, 70_000),
    budget=st.integers(1000, 60_000),
    most=st.integers(1, 1024),
)
def test_the_browser_splits_a_fan_out_as_the_python_client_does(
    harness: Any, devices: list[str], size: int, budget: int, most: int
) -> None:
    browser = harness.evaluate(
        """([devices, size, budget, most]) => {
            const { planRequests, payloadSizeBound, FanoutTooLarge } = window.lockstep.fanout;
            const bounds = devices.map((d) => payloadSizeBound(d, size));
            try { return [bounds, planRequests(devices, size, budget, most)]; }
            catch (error) { if (error instanceof FanoutTooLarge) return [bounds, "too large"]; throw error; }
        }""",
        [devices, size, budget, most],
    )
    assert browser == json.loads(
        json.dumps([[payload_size_bound(d, size) for d in devices], python_plan(devices, size, budget, most)])
    )
