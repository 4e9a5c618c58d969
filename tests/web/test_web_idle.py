"""The browser's idle-logout rules (web/src/link/idle.ts) give the Python answers (lockstep.link.idle) for
the same lists and times: when a companion counts down, when it logs out, what an online primary signs."""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.link import idle
from lockstep.link.devices import DeviceEntry, DeviceList, Role

pytestmark = pytest.mark.browser

PRIMARY = DeviceEntry.new(
    bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
    Role.PRIMARY,
    "Phone",
    0,
)
LAPTOP = DeviceEntry.new(
    bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
    Role.COMPANION,
    "Laptop",
    0,
)
ISSUED = 1_764_000_000_000
HOUR = 3_600_000
AGES = [
    0,
    HOUR,
    idle.DAY_MS,
    11 * idle.DAY_MS,
    11 * idle.DAY_MS + HOUR,
    13 * idle.DAY_MS + 23 * HOUR,
    idle.IDLE_LOGOUT_MS,
    20 * idle.DAY_MS,
]


@pytest.mark.parametrize("companions", [(), (LAPTOP,)], ids=["alone", "with-a-companion"])
def test_the_browser_applies_the_same_idle_rules(harness: Any, companions: tuple[DeviceEntry, ...]) -> None:
    devices = DeviceList(PRIMARY.device_id, 5, ISSUED, (PRIMARY, *companions))
    payload = devices.to_payload()
    browser = harness.evaluate(
        """([list, times]) => times.map((now) => {
             const { idle } = window.lockstep;
             const kept = idle.keepAlive(list, now);
             return [idle.countdown(list.issued_at, now), idle.expired(list.issued_at, now),
                     kept === null ? null : kept.map((d) => d.device_id)];
           })""",
        [payload, [ISSUED + age for age in AGES]],
    )
    for age, (shown, gone, kept) in zip(AGES, browser, strict=True):
        now = ISSUED + age
        assert shown == idle.countdown(devices, now), age
        assert gone == idle.expired(devices, now), age
        successor = idle.keep_alive(devices, now)
        assert kept == (None if successor is None else [d.device_id for d in successor.devices]), age
