"""Probation for new companions (docs/protocol/linking.md §4.6, version 2).

A companion linked from another network than the primary's (§6.5) is on probation for its first 24
hours: the primary writes ``probation_until`` (and the address it was linked from) into its entry of the
signed device list. Until then the other devices of the account refuse it what a hijacked companion
would want first: no history transfer, no group creation or membership change, and every other device
shows a banner naming it. It still receives new messages. The rule lives in the signed list, so the
server can neither lift it (a list without the field would have to be signed by the account key) nor
shorten it; the companion itself is not trusted to enforce anything.

Devices judge "now" on the earlier of their own clock and the server's (:func:`judged_now`): a server
that reports a later time cannot end probation early. The primary ends it early ("Send history now") by
signing a list without the field (:func:`ended`).
"""

from __future__ import annotations

import datetime
from dataclasses import replace

from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.errors import DeviceListError
from lockstep.link.wording import probation_text

HOUR_MS = 3_600_000
PROBATION_MS = 24 * HOUR_MS
"""How long a companion linked from another network stays on probation (issue 12, item 4)."""


def judged_now(server_now: int, own_now: int) -> int:
    """The time probation is judged at: the earlier of the two clocks, so neither a server nor a device
    whose clock runs ahead lifts it early (one whose clock runs behind keeps it longer: fail-safe)."""
    return min(server_now, own_now)


def start(entry: DeviceEntry, now: int, address: str) -> DeviceEntry:
    """``entry`` as the primary lists a companion it links from another network at ``now``."""
    if entry.role is not Role.COMPANION:
        raise DeviceListError("only a companion can be on probation")
    return replace(entry, probation_until=now + PROBATION_MS, linked_from=address)


def on_probation(entry: DeviceEntry | None, now: int) -> bool:
    return entry is not None and entry.probation_until is not None and now < entry.probation_until


def on_probation_in(devices: DeviceList, device_id: str, now: int) -> bool:
    """Whether ``device_id`` is a device of ``devices`` still on probation at ``now``."""
    return on_probation(devices.find(device_id), now)


def newcomers(devices: DeviceList, now: int, seen_from: str) -> tuple[DeviceEntry, ...]:
    """The devices on probation that the device ``seen_from`` shows a banner for (not itself)."""
    return tuple(d for d in devices.devices if d.device_id != seen_from and on_probation(d, now))


def hours_since_link(entry: DeviceEntry, now: int) -> int:
    """Whole hours since the link, for the banner ("linked 3 hours ago"); never negative."""
    return max(0, (now - entry.linked_at) // HOUR_MS)


def banner(entry: DeviceEntry, now: int) -> str:
    """ "New device linked 3 hours ago from 203.0.113.7 — not you?": the caller adds how to unlink."""
    return probation_text(
        "banner", hours=hours_since_link(entry, now), address=entry.linked_from or "another network"
    )


def ended(devices: DeviceList, device_id: str, now: int) -> DeviceList:
    """The primary's next list with ``device_id`` off probation ("Send history now")."""
    entry = devices.find(device_id)
    if entry is None:
        raise DeviceListError(f"no linked device {device_id}")
    if entry.probation_until is None:
        raise DeviceListError(f"{entry.name} is not on probation")
    lifted = replace(entry, probation_until=None, linked_from=None)
    return devices.successor(tuple(lifted if d is entry else d for d in devices.devices), now)


def until_text(probation_until: int) -> str:
    """When probation ends, as every device words it: ``2026-11-27 03:20 UTC``."""
    moment = datetime.datetime.fromtimestamp(probation_until / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
