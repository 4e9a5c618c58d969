"""The client address behind trusted proxies (lockstep.server.client_address): X-Forwarded-For and
RFC 7239 Forwarded parsing, the right-most untrusted hop, and what a client can and cannot forge."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.server.client_address import ProxyHeader, TrustedProxies, client_address, forwarded_hops
from lockstep.server.settings import Settings, SettingsError

PROXY = "10.0.0.2"
TRUSTED = TrustedProxies.parse(["10.0.0.0/24", "2001:db8:ffff::/48"])
TRUSTED_FORWARDED = TrustedProxies.parse(["10.0.0.0/24"], "forwarded")


def xff(*lines: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", line.encode()) for line in lines]


def forwarded(*lines: str) -> list[tuple[bytes, bytes]]:
    return [(b"forwarded", line.encode()) for line in lines]


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        (PROXY, xff("198.51.100.7"), "198.51.100.7"),
        (PROXY, xff("203.0.113.1, 198.51.100.7"), "198.51.100.7"),  # the left one is the client's claim
        (PROXY, xff("198.51.100.7, 10.0.0.9"), "198.51.100.7"),  # two trusted hops
        (PROXY, xff("203.0.113.1", "198.51.100.7"), "198.51.100.7"),  # two header lines, in order
        (PROXY, xff("198.51.100.7:4711"), "198.51.100.7"),
        (PROXY, xff("[2001:db8::7]:443"), "2001:db8::7"),
        (PROXY, xff("2001:DB8::7"), "2001:db8::7"),
        (PROXY, xff("::ffff:198.51.100.7"), "198.51.100.7"),
        (PROXY, xff("unknown"), PROXY),  # nothing usable: the proxy itself
        (PROXY, xff("198.51.100.7, garbage"), PROXY),
        (PROXY, xff("203.0.113.1, , 198.51.100.7"), "198.51.100.7"),  # empty list elements are ignored
        (PROXY, xff("10.0.0.7, 10.0.0.8"), "10.0.0.7"),  # all trusted: the left-most
        (PROXY, [], PROXY),  # the proxy's own request (a health check)
        ("::ffff:10.0.0.2", xff("198.51.100.7"), "198.51.100.7"),  # dual-stack listener
        ("198.51.100.9", xff("203.0.113.1"), "198.51.100.9"),  # an untrusted peer's header is ignored
        (None, xff("203.0.113.1"), "unknown"),
        (PROXY, forwarded("for=203.0.113.1"), PROXY),  # the header the proxies do not write
    ],
)
def test_x_forwarded_for(peer: str | None, headers: list[tuple[bytes, bytes]], client: str) -> None:
    assert client_address(peer, headers, TRUSTED).address == client


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        # RFC 7239 §4 and §7.1 examples
        (forwarded('for="_gazonk"'), PROXY),
        (forwarded('For="[2001:db8:cafe::17]:4711"'), "2001:db8:cafe::17"),
        (forwarded("for=192.0.2.60;proto=http;by=203.0.113.43"), "192.0.2.60"),
        (forwarded("for=192.0.2.43, for=198.51.100.17"), "198.51.100.17"),
        (forwarded("for=192.0.2.43", "for=198.51.100.17;by=10.0.0.2"), "198.51.100.17"),
        (forwarded('for=192.0.2.43, for="[2001:db8:cafe::17]", for=unknown'), PROXY),
        (forwarded('for="192.0.2.43:47011"'), "192.0.2.43"),
        (forwarded("for=192.0.2.43:47011"), PROXY),  # ":" is not a token character: must be quoted
        (forwarded('proto=https;host="chat.example"'), PROXY),  # an element with no "for"
        (forwarded('for="\\"oops'), PROXY),  # unterminated quoted-string
        (forwarded("for=192.0.2.1;for=192.0.2.2"), PROXY),  # a parameter twice in one element
        (forwarded('for="x, for=203.0.113.5', "for=198.51.100.17"), "198.51.100.17"),  # broken line only
        (xff("203.0.113.1"), PROXY),
    ],
)
def test_forwarded(headers: list[tuple[bytes, bytes]], client: str) -> None:
    assert client_address(PROXY, headers, TRUSTED_FORWARDED).address == client


def test_the_peer_is_kept_and_a_proxy_hop_is_marked() -> None:
    seen = client_address(PROXY, xff("198.51.100.7"), TRUSTED)
    assert (seen.address, seen.peer, seen.via_proxy) == ("198.51.100.7", PROXY, True)
    direct = client_address("198.51.100.7", [], TRUSTED)
    assert (direct.peer, direct.via_proxy) == ("198.51.100.7", False)


def test_no_trusted_proxy_means_the_peer_always() -> None:
    assert client_address("127.0.0.1", xff("203.0.113.1"), TrustedProxies()).address == "127.0.0.1"


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str)
untrusted_client = st.one_of(ipv4, ipv6).filter(lambda text: not TRUSTED.trusts(text))
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@given(claims=st.lists(header_text, max_size=3), client=untrusted_client)
def test_nothing_a_client_writes_in_x_forwarded_for_changes_who_it_is(claims: list[str], client: str) -> None:
    # nginx's $proxy_add_x_forwarded_for: the client's own header, then ", <peer>".
    line = ", ".join([*claims, client])
    assert client_address(PROXY, xff(line), TRUSTED).address == ipaddress.ip_address(client).compressed


@given(claims=st.lists(header_text, max_size=3), client=untrusted_client)
def test_nothing_a_client_writes_in_forwarded_makes_it_someone_else(claims: list[str], client: str) -> None:
    # A proxy appending its element to the client's line: a line the client broke is not believed at
    # all (the proxy's address then stands for the client); otherwise the client is who it is.
    quoted = f'"[{client}]"' if ":" in client else client
    line = ", ".join([*claims, f"for={quoted}"])
    seen = client_address(PROXY, forwarded(line), TRUSTED_FORWARDED).address
    assert seen in (ipaddress.ip_address(client).compressed, PROXY)
    separate = client_address(PROXY, forwarded(*claims, f"for={quoted}"), TRUSTED_FORWARDED).address
    assert separate == ipaddress.ip_address(client).compressed  # on its own line: always exact


@given(addresses=st.lists(st.one_of(ipv4, ipv6), min_size=1, max_size=5), ports=st.booleans())
def test_hops_round_trip(addresses: list[str], ports: bool) -> None:
    def node(address: str) -> str:
        bracketed = f"[{address}]" if ":" in address else address
        return f"{bracketed}:443" if ports else bracketed

    expected = [ipaddress.ip_address(a).compressed for a in addresses]
    assert forwarded_hops(", ".join(node(a) for a in addresses), ProxyHeader.X_FORWARDED_FOR) == expected
    line = ", ".join(f'for="{node(a)}";proto=https' for a in addresses)
    assert forwarded_hops(line, ProxyHeader.FORWARDED) == expected


@given(line=st.text(max_size=80))
def test_any_header_text_parses_to_hops_or_nothing(line: str) -> None:
    for header in ProxyHeader:
        for hop in forwarded_hops(line, header):
            assert hop is None or ipaddress.ip_address(hop)


def test_settings_read_trusted_proxies_from_the_environment_and_flags() -> None:
    settings = Settings.from_env({"LOCKSTEP_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1 2001:db8::/32"})
    assert [str(n) for n in settings.proxies.networks] == ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]
    assert settings.proxies.header is ProxyHeader.X_FORWARDED_FOR
    flags = Settings.from_env(
        {"LOCKSTEP_TRUSTED_PROXIES": "10.0.0.0/8"}, trusted_proxies=["127.0.0.1"], proxy_header="forwarded"
    )
    assert [str(n) for n in flags.proxies.networks] == ["127.0.0.1/32"]
    assert flags.proxies.header is ProxyHeader.FORWARDED
    assert Settings.from_env({}).proxies.networks == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOCKSTEP_TRUSTED_PROXIES": "10.0.0.1/8"}, "has host bits set"),
        ({"LOCKSTEP_TRUSTED_PROXIES": "proxy.example"}, "not an address or CIDR block"),
        ({"LOCKSTEP_PROXY_HEADER": "x-real-ip"}, "x-forwarded-for or forwarded"),
    ],
)
def test_bad_proxy_settings_fail_fast(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
