"""What the primary is shown about a companion: device description and same-network signal (§6.2)."""

from __future__ import annotations

import re

import pytest

from lockstep.server.context import describe_user_agent, network_of, parse_networks, same_network

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Mobile/15E148 Safari/604.1"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
EDGE_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0"
)


@pytest.mark.parametrize(
    ("user_agent", "description"),
    [
        (CHROME_LINUX, "Chrome 156 on Linux"),
        (SAFARI_IPHONE, "Safari 18 on iOS"),
        (FIREFOX_WINDOWS, "Firefox 140 on Windows"),
        (EDGE_MAC, "Edge 140 on macOS"),
        ("lockstep-cli/0.1.0 (Linux)", "Lockstep terminal 0.1.0 on Linux"),
        ("curl/8.0", "Unknown app"),
        ("", "Unknown app"),
    ],
)
def test_user_agents_are_described_plainly(user_agent: str, description: str) -> None:
    assert describe_user_agent(user_agent) == description


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "::1", True),
        ("192.168.1.10", "192.168.1.77", True),
        ("192.168.1.10", "192.168.2.10", False),
        ("10.0.0.5", "1.2.3.4", False),
        ("1.2.3.4", "1.2.3.4", True),
        ("1.2.3.4", "1.2.3.5", False),
        ("fd00::1", "fd00::2", True),
        ("::ffff:192.168.1.2", "192.168.1.3", True),
        ("unknown", "127.0.0.1", False),
    ],
)
def test_same_network(first: str, second: str, same: bool) -> None:
    assert same_network(first, second) is same


@pytest.mark.parametrize(
    ("address", "kind", "prefix"),
    [
        ("127.0.0.1", "loopback", "127.0.0.0/8"),
        ("::1", "loopback", "::1/128"),
        ("192.168.1.23", "private", "192.168.1.0/24"),
        ("10.1.2.3", "private", "10.1.2.0/24"),
        ("100.64.7.7", "private", "100.64.7.0/24"),  # carrier NAT
        ("fd12:3456:789a:1::5", "private", "fd12:3456:789a:1::/64"),
        ("169.254.10.20", "link-local", "169.254.0.0/16"),
        ("fe80::1", "link-local", "fe80::/64"),
        ("203.0.113.9", "public", "203.0.113.0/24"),  # documentation range: public for our purposes
        ("2001:db8:aaaa:bbbb::1", "public", "2001:db8:aaaa::/48"),
        ("::ffff:192.168.1.23", "private", "192.168.1.0/24"),
        ("unknown", "unknown", None),
    ],
)
def test_the_network_of_an_address(address: str, kind: str, prefix: str | None) -> None:
    assert network_of(address) == {"kind": kind, "prefix": prefix}


SEPARATE = parse_networks(["127.0.0.2/32", "10.8.0.0/16"])


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("127.0.0.1", "127.0.0.2", False),  # both loopback, but one is a network of its own
        ("127.0.0.2", "127.0.0.2", True),
        ("127.0.0.1", "127.0.0.3", True),
        ("10.8.1.5", "10.8.200.7", True),  # one declared network, beyond one /24
        ("10.8.1.5", "10.9.1.6", False),
        ("192.168.1.10", "192.168.1.20", True),
    ],
)
def test_operator_declared_networks_are_networks_of_their_own(first: str, second: str, same: bool) -> None:
    assert same_network(first, second, SEPARATE) is same
    assert same_network(second, first, SEPARATE) is same


def test_a_declared_network_must_be_an_address_or_block() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        parse_networks(["10.0.0.0/33"])
