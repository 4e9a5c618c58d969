"""What a primary tells a person when a scan cannot link, from one file shared with the browser.

``wording.json`` beside this module is also imported by web/src/link/wording.ts, so the phone app and
``lockstep primary scan`` say the same words for the same refusal (linking.md §3.3, §7.5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

_WORDING: dict[str, dict[str, str]] = json.loads(
    resources.files(__package__).joinpath("wording.json").read_text(encoding="utf-8")
)


def code_refusal(key: str, **fields: Any) -> str:
    """The sentence for a scanned text that is not a usable code (``not_a_link_code``, ...)."""
    return _WORDING["code"][key].format(**fields)


SERVER_REFUSALS: Mapping[str, str] = MappingProxyType(_WORDING["server"])
"""Server error code met while linking (``ref_used``, ``too_many_devices``, ...) → the sentence to show."""


def companion_notice(event: str) -> str:
    """What a companion shows for ``scanned`` or a ``link.declined`` reason (``declined``,
    ``too_many_devices``, ``wrong_code``, ``wrong_number``; anything else reads as a plain decline)."""
    notices = _WORDING["companion"]
    return notices["declined"] if event == "number" else notices.get(event, notices["declined"])


def number_notice(number: str) -> str:
    """What a companion shows with its matching number once its code was inspected (§6.5)."""
    return _WORDING["companion"]["number"].format(number=number)


def link_code_text(key: str) -> str:
    """The code flow's fixed sentences: ``warning`` (shown wherever a code is typed) and
    ``companion_instructions`` (shown beside a code)."""
    return _WORDING["link_code"][key]


def relay_text(key: str, **fields: Any) -> str:
    """The different-network screen (linking.md §6.5): ``warning`` (with ``address``) and
    ``number_prompt``."""
    return _WORDING["relay"][key].format(**fields)


def idle_text(key: str, **fields: Any) -> str:
    """Idle logout (linking.md §4.5): ``logged_out``, or the countdown for ``days`` left."""
    if key == "countdown" and fields.get("days") == 1:
        key = "countdown_one"
    return _WORDING["idle"][key].format(**fields)


def probation_text(key: str, **fields: Any) -> str:
    """Probation (linking.md §4.6): ``banner`` (with ``hours`` and ``address``), then ``unlink`` on the
    primary or ``unlink_on_phone`` on a companion; ``here`` (with ``until``) on the device on probation;
    ``no_history`` and ``group_refused`` for what other devices refuse it."""
    if key == "banner" and fields.get("hours") in (0, 1):
        key = "banner_new" if fields["hours"] == 0 else "banner_one"
    return _WORDING["probation"][key].format(**fields)
