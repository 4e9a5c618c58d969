"""Idle logout (docs/protocol/linking.md §4.5): companions live on the primary's signature.

The primary signs a fresh device list (same devices, next version, new ``issued_at``) whenever it is
online and its list is a day old. A companion whose newest list is 14 days old logs itself out and wipes
its keys, checking the list's age itself: a server that stops relaying the primary's lists (or its
presence) cannot keep a companion alive past that, because it cannot sign a newer list. Fewer than 3
days before, companions show how many are left. When the primary comes back after the 14 days, it signs
a list without its companions, which have wiped themselves.
"""

from __future__ import annotations

import math

from lockstep.link.devices import DeviceList, Role

DAY_MS = 86_400_000
IDLE_LOGOUT_MS = 14 * DAY_MS
"""A companion logs out when its newest list is this old (WhatsApp: 14 days without the phone)."""
REFRESH_AFTER_MS = DAY_MS
"""An online primary re-signs its list once it is this old."""
COUNTDOWN_DAYS = 3
"""Companions show the days left once fewer than this many remain."""


def days_left(devices: DeviceList, now: int) -> int:
    """Whole days (rounded up) until companions log out; 0 or less: they must log out now."""
    return math.ceil((devices.issued_at + IDLE_LOGOUT_MS - now) / DAY_MS)


def expired(devices: DeviceList, now: int) -> bool:
    return now >= devices.issued_at + IDLE_LOGOUT_MS


def countdown(devices: DeviceList, now: int) -> int | None:
    """The days left (rounded up) to show a companion once less than COUNTDOWN_DAYS remain, else None."""
    remaining = devices.issued_at + IDLE_LOGOUT_MS - now
    return days_left(devices, now) if 0 < remaining < COUNTDOWN_DAYS * DAY_MS else None


def keep_alive(devices: DeviceList, now: int) -> DeviceList | None:
    """The list an online primary should sign now, or None: the same devices re-signed once the list is
    a day old, or, 14 days after its last list, one without the companions (they have logged out)."""
    if not devices.companions or now - devices.issued_at < REFRESH_AFTER_MS:
        return None
    if expired(devices, now):
        return devices.successor(tuple(d for d in devices.devices if d.role is Role.PRIMARY), now)
    return devices.successor(devices.devices, now)
