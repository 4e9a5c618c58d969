"""Who a client is: the TCP peer, or — only when that peer is a trusted reverse proxy — the address the
proxy saw, read from ``X-Forwarded-For`` or ``Forwarded`` (RFC 7239).

Every per-address decision (rate limits, connection caps, the "same network" hint, the address shown
to a primary) uses :func:`client_address`. Pure: no sockets, no settings; the ASGI adapter is
:func:`address_of`.

Reading the header right to left: each trusted proxy appends the address it received the request
from, so the right-most hop that is not a trusted proxy is the first address no one we trust vouched
for — the client. Anything to its left was written by that client and is never believed. A hop that
does not parse (``unknown``, an obfuscated name, garbage) stops the walk at the trusted proxy that
wrote it.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyHeader(enum.Enum):
    """Which header the trusted proxies write; the other one is ignored (a client could have sent it)."""

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()
    header: ProxyHeader = ProxyHeader.X_FORWARDED_FOR

    @classmethod
    def parse(cls, cidrs: Iterable[str], header: str = ProxyHeader.X_FORWARDED_FOR.value) -> TrustedProxies:
        """From ``10.0.0.0/8``-style text (a bare address is one host); ValueError names a bad entry."""
        networks = []
        for text in cidrs:
            try:
                networks.append(ipaddress.ip_network(text.strip(), strict=True))
            except ValueError as error:
                raise ValueError(f"{text!r} is not an address or CIDR block ({error})") from error
        try:
            kind = ProxyHeader(header.strip().lower())
        except ValueError as error:
            raise ValueError(
                f"the proxy header must be x-forwarded-for or forwarded, got {header!r}"
            ) from error
        return cls(tuple(networks), kind)

    def trusts(self, address: str) -> bool:
        ip = parse_ip(address)
        return ip is not None and any(ip in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class ClientAddress:
    address: str
    """The client's address: the TCP peer, or the right-most untrusted hop behind trusted proxies."""
    peer: str
    """The TCP peer the server saw (the proxy, when there is one)."""

    @property
    def via_proxy(self) -> bool:
        return self.address != self.peer


def client_address(
    peer: str | None, headers: Sequence[tuple[bytes, bytes]], proxies: TrustedProxies
) -> ClientAddress:
    """The client behind ``peer``; ``headers`` are the raw ASGI header lines (name lowercased)."""
    peer_text = normalise(peer) if peer else "unknown"
    if not proxies.trusts(peer_text):
        return ClientAddress(peer_text, peer_text)
    name = proxies.header.value.encode()
    hops: list[str | None] = []
    for header_name, value in headers:
        if header_name == name:
            hops += forwarded_hops(value.decode("latin-1"), proxies.header)
    address = peer_text
    for hop in reversed(hops):
        if hop is None:
            break
        address = hop
        if not proxies.trusts(hop):
            break
    return ClientAddress(address, peer_text)


def address_of(connection: HTTPConnection, proxies: TrustedProxies) -> ClientAddress:
    """:func:`client_address` of an HTTP request or a WebSocket."""
    peer = connection.client.host if connection.client else None
    return client_address(peer, connection.scope["headers"], proxies)


def address_key(address: str) -> str:
    """What one client is for per-address limits: its IPv4 address, or its IPv6 /64 (the share one
    household or host usually gets, so a client cannot make itself new by changing the host bits)."""
    ip = parse_ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip) if ip is not None else address


def normalise(address: str) -> str:
    """An IP address in canonical text (IPv4-mapped IPv6 as IPv4); anything else unchanged."""
    ip = parse_ip(address)
    return str(ip) if ip is not None else address


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def forwarded_hops(line: str, header: ProxyHeader) -> list[str | None]:
    """The addresses one header line lists, left to right; None for a hop that names no address."""
    if header is ProxyHeader.X_FORWARDED_FOR:
        return [_node(item.strip()) for item in line.split(",") if item.strip()]
    elements = _forwarded_elements(line)
    if elements is None:  # broken syntax: we cannot tell where hops start, so none is usable
        return [None]
    return [_node(element.get("for", "")) for element in elements if element]


_NODE = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::\d{1,5})?|(?P<v4>\d{1,3}(?:\.\d{1,3}){3})(?::\d{1,5})?")


def _node(text: str) -> str | None:
    """RFC 7239 §6 node (also X-Forwarded-For's bare IPv6): an IP address, port dropped; else None."""
    match = _NODE.fullmatch(text)
    candidate = (match.group("v6") or match.group("v4")) if match else text
    ip = parse_ip(candidate)
    return str(ip) if ip is not None else None


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _forwarded_elements(line: str) -> list[dict[str, str]] | None:
    """RFC 7239 §4: ``1#forwarded-element``, each ``[pair] *(";" [pair])``, ``pair = token "=" value``,
    ``value = token / quoted-string``; names are case-insensitive. Empty elements are allowed (RFC 9110
    §5.6.1). None if the line does not parse."""
    elements: list[dict[str, str]] = [{}]
    position, end = 0, len(line)
    while True:
        while position < end and line[position] in " \t":
            position += 1
        if position == end:
            return elements
        if line[position] in ",;":
            if line[position] == ",":
                elements.append({})
            position += 1
            continue
        name = _TOKEN.match(line, position)
        if name is None or name.end() >= end or line[name.end()] != "=":
            return None
        position = name.end() + 1
        if position < end and line[position] == '"':
            value, position = _quoted_string(line, position)
            if value is None:
                return None
        else:
            token = _TOKEN.match(line, position)
            if token is None:
                return None
            value, position = token.group(), token.end()
        if name.group().lower() in elements[-1]:
            return None  # §4: a parameter MUST NOT occur more than once per element
        elements[-1][name.group().lower()] = value
        while position < end and line[position] in " \t":
            position += 1
        if position < end and line[position] not in ",;":
            return None


def _quoted_string(line: str, start: int) -> tuple[str | None, int]:
    """RFC 9110 §5.6.4 quoted-string from ``line[start] == '"'``: its text and the index after it."""
    characters: list[str] = []
    position = start + 1
    while position < len(line):
        character = line[position]
        if character == '"':
            return "".join(characters), position + 1
        if character == "\\":
            position += 1
            if position == len(line):
                break
            character = line[position]
        characters.append(character)
        position += 1
    return None, position
