"""What the server can tell a primary about a companion: device description and network (§6.2)."""

from __future__ import annotations

import ipaddress
import re

_BROWSERS = (
    ("Edge", re.compile(r"Edg/(\d+)")),
    ("Opera", re.compile(r"OPR/(\d+)")),
    ("Firefox", re.compile(r"Firefox/(\d+)")),
    ("Chromium", re.compile(r"Chromium/(\d+)")),
    ("Chrome", re.compile(r"(?:HeadlessChrome|Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/")),
)
_SYSTEMS = (
    ("Android", re.compile(r"Android")),
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Linux", re.compile(r"Linux|X11")),
)
_TERMINAL = re.compile(r"lockstep-cli/([\w.]+)(?: \((\w+)\))?")


def describe_user_agent(user_agent: str) -> str:
    """A short human description like "Chrome 156 on Linux" or "Lockstep terminal 0.1 on Linux"."""
    terminal = _TERMINAL.search(user_agent)
    if terminal:
        system = terminal.group(2) or "unknown system"
        return f"Lockstep terminal {terminal.group(1)} on {system}"
    browser = next((f"{name} {m.group(1)}" for name, rx in _BROWSERS if (m := rx.search(user_agent))), None)
    system = next((name for name, rx in _SYSTEMS if rx.search(user_agent)), None)
    if browser is None:
        return f"Unknown app on {system}" if system else "Unknown app"
    return f"{browser} on {system}" if system else browser


def same_network(first: str, second: str) -> bool:
    """Whether two client addresses look like one network: equal, both loopback, or one private subnet.

    A /24 for IPv4 and a /64 for IPv6 private (RFC 1918 / RFC 4193) addresses; public addresses only
    when equal (one NAT). This is a signal for the person deciding, not an authorisation.
    """
    try:
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(second)
    except ValueError:
        return False
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        a = a.ipv4_mapped
    if isinstance(b, ipaddress.IPv6Address) and b.ipv4_mapped:
        b = b.ipv4_mapped
    if a == b or (a.is_loopback and b.is_loopback):
        return True
    if a.version != b.version or not (a.is_private and b.is_private):
        return False
    prefix = 24 if a.version == 4 else 64
    return ipaddress.ip_network(f"{a}/{prefix}", strict=False) == ipaddress.ip_network(
        f"{b}/{prefix}", strict=False
    )
