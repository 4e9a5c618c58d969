"""The server's rate limiter and deny list: a whole batch decides as request-by-request does."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.ntp.limit_key import limit_key, limit_keys
from lockstep.ntp.limiter import IPV6_KEY, ClientLimiter, RateLimit, client_address
from lockstep.ntp.nts.server import COMPILED_AVAILABLE
from lockstep.ntp.timestamps import ONE_SECOND
from lockstep.ntp.wire import KissCode

NOW = 3_973_000_000 << 32
DENIED = ipaddress.ip_network("192.0.2.0/24")
KEYS = [int(ipaddress.IPv4Address(f"198.51.100.{n}")) for n in range(1, 9)] + [
    int(ipaddress.IPv4Address("192.0.2.1")),
    IPV6_KEY + int(ipaddress.IPv6Address("2001:db8::1")),
    IPV6_KEY + int(ipaddress.IPv6Address("2001:db8::2:3")),  # the same /64
    IPV6_KEY + int(ipaddress.IPv6Address("::ffff:198.51.100.1")),  # the first key, mapped
]


def sequential(limiter: ClientLimiter, clients: list[int], arrivals: list[int]) -> list[tuple[int, KissCode]]:
    """What NtpServer.respond decides, one request at a time."""
    refused = []
    for i, (client, arrival) in enumerate(zip(clients, arrivals, strict=True)):
        if limiter.deny and limiter.is_denied(client):
            refused.append((i, KissCode.DENY))
        elif limiter.rate_limit is not None and not limiter.admit(client, arrival):
            refused.append((i, KissCode.RATE))
    return refused


Batches = list[tuple[int, list[tuple[int, int]]]]


def request_batches(
    max_gap: int, max_spacing: int, max_size: int, max_batches: int
) -> st.SearchStrategy[Batches]:
    """Batches of (client key, time since the previous request), each after a gap."""
    requests = st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, max_spacing)), max_size=max_size)
    return st.lists(st.tuples(st.integers(0, max_gap), requests), max_size=max_batches)


def timed(start: int, batches: Batches) -> Iterator[tuple[list[int], list[int]]]:
    """Each batch's clients and arrival times (full NTP time), the first gap counted from start."""
    now = start
    for gap, requests in batches:
        now += gap
        clients = [client for client, _ in requests]
        arrivals = [now + sum(spacing for _, spacing in requests[: i + 1]) for i in range(len(requests))]
        yield clients, arrivals


@settings(max_examples=300, deadline=None)
@given(
    batches=request_batches(4 * ONE_SECOND, ONE_SECOND // 50, max_size=12, max_batches=12),
    rate=st.sampled_from([0.5, 3.0, 1000.0]),
    burst=st.sampled_from([0, 1, 3]),
    max_clients=st.sampled_from([3, 6, 100]),
    deny=st.booleans(),
    compiled=st.booleans(),
)
def test_a_batch_decides_and_remembers_as_one_request_at_a_time(
    batches: Batches,
    rate: float,
    burst: int,
    max_clients: int,
    deny: bool,
    compiled: bool,
) -> None:
    def make() -> ClientLimiter:
        return ClientLimiter(
            RateLimit(rate, burst, 2.0, max_clients), [DENIED] if deny else [], compiled=compiled
        )

    batched, reference = make(), make()
    for clients, arrivals in timed(NOW, batches):
        decided = batched.admit_batch(clients, arrivals)
        if decided is None:  # declined (a table that could fill up): the caller goes one by one
            decided = sequential(batched, clients, arrivals)
        assert decided == sequential(reference, clients, arrivals)
        # Same debts, in the same order: later evictions pick the same clients.
        assert list(batched._tats.items()) == list(reference._tats.items())


@settings(max_examples=300, deadline=None)
@given(
    # today, just before full NTP time passes 64 bits (2036, era 1), just before 128 bits run out
    start=st.sampled_from([NOW, (1 << 64) - 2 * ONE_SECOND, (1 << 128) - 2 * ONE_SECOND]),
    batches=request_batches(2 * ONE_SECOND, ONE_SECOND // 20, max_size=40, max_batches=10),
    rate=st.sampled_from([0.5, 3.0, 1000.0]),
    burst=st.sampled_from([1, 3, 16]),
    deny=st.booleans(),
)
def test_the_compiled_limiter_decides_and_remembers_as_the_python_one(
    start: int, batches: Batches, rate: float, burst: int, deny: bool
) -> None:
    """lockstep/ntp/nts/_fastpath.c's charge_batch against admit_batch's Python passes, including
    times past 2**64 - 1 (from 2036) and past 2**128 - 1, where the compiled pass stops and the
    Python one finishes the batch."""

    def make(compiled: bool) -> ClientLimiter:
        return ClientLimiter(RateLimit(rate, burst, 2.0), [DENIED] if deny else [], compiled=compiled)

    compiled, reference = make(True), make(False)
    for clients, arrivals in timed(start, batches):
        assert compiled.admit_batch(clients, arrivals) == reference.admit_batch(clients, arrivals)
        assert list(compiled._tats.items()) == list(reference._tats.items())


def test_the_compiled_limiter_is_used_where_it_was_built() -> None:
    limiter = ClientLimiter(RateLimit())
    assert (limiter._charge_batch is not None) == COMPILED_AVAILABLE


def test_the_usual_batch_is_admitted_whole_and_in_debt_clients_one_by_one() -> None:
    limiter = ClientLimiter(RateLimit(average_rate=1.0, burst=2))
    clients = KEYS[:4]
    assert limiter.admit_batch(clients, [NOW] * 4) == []
    # The same four again at once: each has one request of debt, and may have one more.
    assert limiter.admit_batch(clients, [NOW] * 4) == []
    # A third time: all over their limit.
    assert limiter.admit_batch(clients, [NOW] * 4) == [(i, KissCode.RATE) for i in range(4)]
    # Two seconds later their debt has drained.
    assert limiter.admit_batch(clients, [NOW + 2 * ONE_SECOND] * 4) == []


def test_client_keys_name_their_addresses() -> None:
    assert client_address(int(ipaddress.IPv4Address("192.0.2.7"))) == ipaddress.IPv4Address("192.0.2.7")
    assert client_address(IPV6_KEY + 1) == ipaddress.IPv6Address("::1")
    assert client_address(bytes([192, 0, 2, 7])) == ipaddress.IPv4Address("192.0.2.7")
    assert client_address("2001:db8::2") == ipaddress.IPv6Address("2001:db8::2")
    assert client_address("not an address") is None
    limiter = ClientLimiter(deny=[ipaddress.ip_network("::1/128"), DENIED])
    assert limiter.is_denied(IPV6_KEY + 1)
    assert not limiter.is_denied(1)  # 0.0.0.1, not ::1
    assert limiter.is_denied(int(ipaddress.IPv4Address("192.0.2.200")))


def test_two_ipv6_addresses_in_one_64_share_a_limit() -> None:
    """A host with a /64 cannot make itself a new client by changing its address's low bits;
    the next /64 and IPv4 clients keep limits of their own. Both paths, and the kisses, agree."""
    first, same_64, next_64 = (
        IPV6_KEY + int(ipaddress.IPv6Address(text))
        for text in ("2001:db8:0:1::1", "2001:db8:0:1:ffff:ffff:ffff:fffe", "2001:db8:0:2::1")
    )
    one_by_one = ClientLimiter(RateLimit(1.0, burst=2))
    assert one_by_one.admit(first, NOW)
    assert one_by_one.admit(same_64, NOW)
    assert not one_by_one.admit(same_64, NOW)  # the /64's burst of 2 is spent
    assert not one_by_one.admit(first, NOW)
    assert one_by_one.admit(next_64, NOW)
    assert one_by_one.admit("2001:db8:0:3::9", NOW)  # text keys too
    assert one_by_one.admit("2001:db8:0:3::a", NOW)
    assert not one_by_one.admit("2001:db8:0:3:1::", NOW)

    batched = ClientLimiter(RateLimit(1.0, burst=2))
    refused = batched.admit_batch([first, same_64, same_64, next_64, KEYS[0]], [NOW] * 5)
    assert refused == [(2, KissCode.RATE)]

    one_by_one.record_kiss(first, NOW)
    assert not one_by_one.kiss_due(same_64, NOW + ONE_SECOND)  # one kiss per 8 s for the /64
    assert one_by_one.kiss_due(next_64, NOW + ONE_SECOND)


@given(st.ip_addresses(v=6))
def test_every_form_of_an_address_has_the_same_limit_key(address: ipaddress.IPv6Address) -> None:
    key = limit_key(str(address))
    if address.ipv4_mapped is not None:
        assert key == str(address.ipv4_mapped)
        assert limit_key(IPV6_KEY + int(address)) == int(address.ipv4_mapped)
        assert limit_key(address.packed) == address.ipv4_mapped.packed
    else:
        network = ipaddress.IPv6Network((address, 64), strict=False)
        assert key == str(network)
        assert limit_key(IPV6_KEY + int(address)) == IPV6_KEY + int(network.network_address)
        assert limit_key(address.packed) == network.network_address.packed
    batch = [IPV6_KEY + int(address), 7, IPV6_KEY + int(address) + 1]
    assert limit_keys(batch) == [limit_key(client) for client in batch]  # the inlined batch form
    assert limit_key("not an address") == "not an address"
    assert limit_key("192.0.2.7") == "192.0.2.7"
