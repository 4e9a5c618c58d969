"""Who one client is for the per-address limits of the NTP and NTS-KE servers: an IPv4 address on
its own, an IPv6 address together with the rest of its /64.

One IPv6 /64 is what a single host or household usually gets (RFC 6177), so its owner can use
2**64 source addresses; counting each of them apart would let one client multiply its share of
every per-address limit at will. The web server draws the same line
(:func:`lockstep.server.client_address.address_key`). Pure: no sockets, no state.

Keys come in the forms :class:`lockstep.ntp.limiter.ClientLimiter` accepts: address text, packed
address bytes (4 or 16), or an ``int`` (an IPv4 address's value, or :data:`IPV6_KEY` plus an IPv6
address's value). The key of a client has the same form as the client's own key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Sequence
from typing import Final, cast, overload

#: Added to an IPv6 address's integer value to make its client key (IPv4 keys are below 2**32).
IPV6_KEY: Final = 1 << 128
#: The /64 of an IPv6 int key: its marker bit and the address's top 64 bits.
_IPV6_PREFIX_MASK: Final = ~((1 << 64) - 1)
#: An IPv4-mapped IPv6 int key (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) without its low 32 bits.
_IPV4_MAPPED_KEY: Final = IPV6_KEY | 0xFFFF << 32
_IPV6_INTERFACE_ID: Final = bytes(8)


@overload
def limit_key(client: str) -> str: ...
@overload
def limit_key(client: int) -> int: ...
@overload
def limit_key(client: bytes) -> bytes: ...
@overload
def limit_key(client: Hashable) -> Hashable: ...
def limit_key(client: Hashable) -> Hashable:
    """The key ``client`` is limited under: itself for IPv4 (an IPv4-mapped IPv6 address counts as
    its IPv4 address), its /64 for IPv6; anything that is not an address is its own key."""
    if isinstance(client, int):
        if client < IPV6_KEY:
            return client
        if client >> 32 == _IPV4_MAPPED_KEY >> 32:
            return client - _IPV4_MAPPED_KEY
        return client & _IPV6_PREFIX_MASK
    if isinstance(client, bytes):
        if len(client) != 16:
            return client
        if client[:12] == b"\0" * 10 + b"\xff\xff":  # ::ffff:a.b.c.d (RFC 4291 §2.5.5.2)
            return client[12:]
        return client[:8] + _IPV6_INTERFACE_ID
    if isinstance(client, str):
        try:
            ip = ipaddress.ip_address(client)
        except ValueError:
            return client
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)
    return client


def limit_keys(clients: Sequence[Hashable]) -> Sequence[Hashable]:
    """:func:`limit_key` of each of ``clients``; a batch of IPv4 int keys (the NTP server's
    batched path, the usual case) is its own answer, found with one pass in C."""
    if not clients:
        return clients
    try:
        if max(clients) < IPV6_KEY:  # type: ignore[type-var,operator]
            return clients
    except TypeError:  # not all ints
        return [limit_key(client) for client in clients]
    ints = cast("Sequence[int]", clients)  # they compared with an int: all ints
    mapped = _IPV4_MAPPED_KEY >> 32
    return [  # limit_key() inlined for int keys: two thirds of its cost
        client
        if client < IPV6_KEY
        else client - _IPV4_MAPPED_KEY
        if client >> 32 == mapped
        else client & _IPV6_PREFIX_MASK
        for client in ints
    ]
