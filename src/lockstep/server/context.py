"""What the server can tell a primary about a companion: device description and network (§6.2)."""

from __future__ import annotations

import ipaddress
import re

from lockstep.server.client_address import parse_ip

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


PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(block)
    for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
"""RFC 1918 and RFC 6598 (carrier NAT) IPv4, RFC 4193 IPv6: addresses behind a router of someone's own."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _kind_and_prefix(ip: IPAddress) -> tuple[str, int]:
    v4 = ip.version == 4
    if ip.is_loopback:
        return "loopback", 8 if v4 else 128
    if ip.is_link_local:
        return "link-local", 16 if v4 else 64
    if any(ip in network for network in PRIVATE_NETWORKS):
        return "private", 24 if v4 else 64
    return "public", 24 if v4 else 48


def network_of(address: str) -> dict[str, str | None]:
    """The network a client address belongs to, as the primary is shown it (§6.2).

    ``kind`` is ``loopback`` (the server's own machine), ``private`` (a home or office network: a
    /24 or /64), ``link-local``, ``public`` (the internet: the /24 or /48 around it, a rough idea of
    whose network it is) or ``unknown``; ``prefix`` is that network in CIDR notation.
    """
    ip = parse_ip(address)
    if ip is None:
        return {"kind": "unknown", "prefix": None}
    kind, length = _kind_and_prefix(ip)
    return {"kind": kind, "prefix": str(ipaddress.ip_network((ip, length), strict=False))}


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(texts: list[str]) -> tuple[Network, ...]:
    """``--separate-network`` values: addresses or CIDR blocks. Raises ValueError naming a bad one."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as error:
            raise ValueError(f"{text!r} is not an address or CIDR block") from error
    return tuple(networks)


def same_network(first: str, second: str, separate: tuple[Network, ...] = ()) -> bool:
    """Whether two client addresses look like one network: equal, both loopback, or one private subnet.

    A /24 for IPv4 and a /64 for IPv6 private (RFC 1918 / RFC 4193) addresses; public addresses only
    when equal (one NAT). ``separate`` are networks the operator declared to be networks of their own
    (a VPN range, a guest Wi-Fi, a second loopback address in tests): an address inside one is on the
    same network only as addresses inside that same one. This is a signal for the person deciding, and
    what makes a primary ask for the number (linking.md §6.5), not an authorisation.
    """
    a, b = parse_ip(first), parse_ip(second)
    if a is None or b is None:
        return False
    for network in separate:
        if (a in network) != (b in network):
            return False
        if a in network:  # both inside it
            return True
    if a == b or (a.is_loopback and b.is_loopback):
        return True
    return network_of(first) == network_of(second) and network_of(first)["kind"] == "private"
