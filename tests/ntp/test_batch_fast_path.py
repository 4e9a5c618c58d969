"""The batched server's fast path answers exactly as NtpServer.respond does, datagram by datagram.

The batch is filled by hand (no traffic), as recvmmsg would leave it, and sends are recorded
instead of made (:mod:`ntp.batch_slots`).
"""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.ntp.aio import mmsg
from lockstep.ntp.aio.server import compiled_send_basic
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from lockstep.ntp.timestamps import UNIX_EPOCH_SECONDS, from_timestamp
from lockstep.ntp.wire import LeapIndicator
from ntp.batch_slots import UNIX_2026, UNIX_2040, by_slot, client_key, expected, fill, full_time, make_server

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg are Linux only")

requests = st.tuples(
    st.sampled_from([0x0B, 0x13, 0x1B, 0x23, 0xE3, 0x63, 0xDB]),  # mode 3, versions 1..4, any LI
    st.integers(0, 255),  # poll byte, echoed
    st.binary(min_size=46, max_size=46),  # stratum, then bytes 3..47
    st.integers(0, 999_999_999),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(requests, min_size=1, max_size=64),
    second=st.sampled_from([UNIX_2026, UNIX_2040 + 12345]),
    spread=st.booleans(),
    offset=st.sampled_from([0, 3 << 32, -(1 << 31), (1 << 32) + 12345]),
    synchronised=st.booleans(),
    via_answer=st.booleans(),
)
def test_fast_path_replies_equal_respond_byte_for_byte(
    batch: list[tuple[int, int, bytes, int]],
    second: int,
    spread: bool,
    offset: int,
    synchronised: bool,
    via_answer: bool,
) -> None:
    base_ns = second * 1_000_000_000
    if synchronised:
        state = ServerState(
            LeapIndicator.NO_WARNING,
            3,
            -24,
            0.0123,
            0.0456,
            0x7F000001,
            (second + UNIX_EPOCH_SECONDS - 100) << 32,
        )
    else:
        state = ServerState.local(10, (second + UNIX_EPOCH_SECONDS) << 32)
    core = NtpServer(state, clock_offset=offset)
    reference = NtpServer(state, clock_offset=offset)
    with make_server(core) as (server, sent):
        datagrams = []
        for i, (first, poll, rest, ns) in enumerate(batch):
            payload = bytes([first, rest[0], poll]) + rest[1:]
            # All in one second, or spread over a second boundary.
            arrival = base_ns + (i * 20_000_000 if spread else ns // 1000)
            datagrams.append((payload, arrival, True))
        fill(server, datagrams)
        # The fast path serves a batch within one second of served time (one header template);
        # a batch across a second boundary goes through respond(), as does anything unusual
        # (here: an odd origin timestamp, which may ask for interleaved mode).
        served_seconds = {(full_time(arrival) + offset) >> 32 for _, arrival, _ in datagrams}
        plain = len(served_seconds) == 1 and not any(payload[31] & 1 for payload, _, _ in datagrams)
        if via_answer:  # as served: small batches skip the fast path
            server._answer(server._mmsg, len(datagrams))  # type: ignore[arg-type]
            fast = plain and len(datagrams) >= 3
        else:
            fast = server._answer_plain(server._mmsg, len(datagrams))  # type: ignore[arg-type]
            assert fast == plain
            if not fast:
                server._answer(server._mmsg, len(datagrams))  # type: ignore[arg-type]
        replies = by_slot(sent)
        assert len(replies) == len(datagrams)
        for i, ((reply, address), (payload, arrival, _)) in enumerate(zip(replies, datagrams, strict=True)):
            transmit = int.from_bytes(reply[40:48], "big")
            sender = bytes([127, 0, 0, 1 + i])
            assert reply == expected(reference, payload, arrival, transmit, client_key(sender))
            assert len(reply) <= len(payload)
            assert address[4:8] == sender
            assert reply[39] & 1 == 1 and reply[47] & 1 == 0  # T2 odd, T3 even
        assert core.counters.replied == len(datagrams)
        if fast:  # every reply of the batch carries one T3, read after the latest arrival
            assert len({reply[40:48] for reply, _ in replies}) == 1


def test_fast_path_is_taken_for_plain_requests() -> None:
    core = NtpServer(ServerState.local(10, (UNIX_2026 + UNIX_EPOCH_SECONDS) << 32))
    with make_server(core) as (server, sent):
        fill(server, [(bytes([0x23]) + bytes(47), UNIX_2026 * 10**9, True)] * 3)
        assert server._answer_plain(server._mmsg, 3)  # type: ignore[arg-type]
        assert len(sent) == 3


@pytest.mark.parametrize(
    "odd",
    [
        (bytes([0x23]) + bytes(47) + b"\x20\x05\x00\x10" + bytes(12), "longer than 48 bytes"),
        (bytes([0x23]) + bytes(55), "malformed extension fields"),
        (bytes([0x24]) + bytes(47), "mode 4"),
        (bytes([0x26]) + bytes(47), "mode 6"),
        (bytes([0x03]) + bytes(47), "version 0"),
        (bytes([0x2B]) + bytes(47), "version 5"),
        (bytes([0x23]) + bytes(20), "short"),
    ],
    ids=lambda odd: odd[1] if isinstance(odd, tuple) else str(odd),
)
def test_a_batch_with_anything_unusual_takes_the_general_path(odd: tuple[bytes, str]) -> None:
    core = NtpServer(ServerState.local(10, (UNIX_2026 + UNIX_EPOCH_SECONDS) << 32))
    with make_server(core) as (server, sent):
        plain = bytes([0x23]) + bytes(39) + (7).to_bytes(8, "big")
        fill(
            server,
            [
                (plain, UNIX_2026 * 10**9, True),
                (odd[0], UNIX_2026 * 10**9, True),
                (plain, UNIX_2026 * 10**9, True),
            ],
        )
        assert not server._answer_plain(server._mmsg, 3)  # type: ignore[arg-type]
        server._answer(server._mmsg, 3)  # type: ignore[arg-type]
        # The plain ones are answered (and addressed to their own senders), the odd one as
        # respond() decides: a 48-byte reply to a longer plain request (an unknown extension
        # field), a drop otherwise.
        replies = by_slot(sent)
        if odd[1] == "longer than 48 bytes":
            assert [address[4:8] for _, address in replies] == [bytes([127, 0, 0, n]) for n in (1, 2, 3)]
        else:
            assert [address[4:8] for _, address in replies] == [bytes([127, 0, 0, n]) for n in (1, 3)]
            assert sum(core.dropped.values()) == 1
        assert all(reply[24:32] == (7).to_bytes(8, "big") for reply, _ in [replies[0], replies[-1]])


def test_missing_kernel_timestamp_takes_the_general_path() -> None:
    core = NtpServer(ServerState.local(10, (UNIX_2026 + UNIX_EPOCH_SECONDS) << 32))
    with make_server(core) as (server, _sent):
        fill(
            server,
            [(bytes([0x23]) + bytes(47), UNIX_2026 * 10**9, True), (bytes([0x23]) + bytes(47), 0, False)],
        )
        assert not server._answer_plain(server._mmsg, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("second", [UNIX_2026, UNIX_2040 + 12345])
@pytest.mark.parametrize("offset", [0, 3 << 31, -(5 << 30)])
def test_a_lone_basic_reply_leaves_from_c_with_t3_read_just_before(second: int, offset: int) -> None:
    """What a lightly loaded server sends most: one plain request answered alone. The compiled
    send (T3 read in C, then sendto) delivers respond()'s bytes for that T3, and T3 is the served
    clock (the system's + offset) between the test's readings before and after, even, after T2
    (also when T2 is in NTP era 1, past 2036)."""
    # make test builds the module (scripts/ensure-debian-packages.sh installs gcc and nettle-dev), so a
    # missing build fails here rather than passing unseen, as tests/nts/test_compiled_path.py does.
    assert compiled_send_basic is not None, "lockstep.ntp.nts._fastpath was not built (gcc, nettle-dev?)"
    core = NtpServer(ServerState.local(10, (second + UNIX_EPOCH_SECONDS) << 32), clock_offset=offset)
    reference = NtpServer(ServerState.local(10, (second + UNIX_EPOCH_SECONDS) << 32), clock_offset=offset)
    request = bytes([0x23, 0, 6]) + bytes(37) + (0x1234_5678_9ABC_DEF0).to_bytes(8, "big")
    arrival_ns = time.time_ns() if second == UNIX_2026 else second * 10**9 + 5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client, make_server(core) as (server, recorded):
        client.bind(("127.0.0.1", 0))
        client.settimeout(2)
        fill(server, [(request, arrival_ns, True)], [bytes([127, 0, 0, 1])], [client.getsockname()[1]])
        server._compiled_send_basic = compiled_send_basic
        before = full_time(time.time_ns()) + offset
        server._answer(server._mmsg, 1)  # type: ignore[arg-type]
        after = full_time(time.time_ns()) + offset
        reply = client.recv(100)
    assert not recorded and len(reply) == 48
    transmit = int.from_bytes(reply[40:48], "big")
    received = full_time(arrival_ns) + offset
    served_transmit = from_timestamp(transmit, received)
    assert transmit & 1 == 0 and served_transmit > received
    if second == UNIX_2026:
        assert before & ~1 <= served_transmit <= after
    else:  # T2 in NTP era 1, ahead of this clock: T3 is the next even time, in the same era
        assert served_transmit == (received | 1) + 1
    assert reply == expected(reference, request, arrival_ns, transmit, client_key(bytes([127, 0, 0, 1])))


# Eight ordinary senders and two in a denied network (addresses in buffers only: no traffic).
SENDERS = [bytes([127, 0, 0, n]) for n in range(1, 9)] + [bytes([127, 0, 9, n]) for n in (1, 2)]
DENIED = ipaddress.ip_network("127.0.9.0/24")

limited_batches = st.lists(
    st.tuples(
        st.integers(0, 3_000_000_000),  # ns since the previous batch
        st.lists(
            st.tuples(st.sampled_from(SENDERS), st.integers(0, 2_000_000), st.binary(min_size=8, max_size=8)),
            min_size=1,
            max_size=24,
        ),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=limited_batches,
    deny=st.booleans(),
    rate=st.sampled_from([0.5, 2.0, 1000.0]),
    burst=st.sampled_from([1, 3]),
    offset=st.sampled_from([0, 3 << 32]),
    max_clients=st.sampled_from([100_000, 6]),
)
def test_rate_limited_and_denied_batches_get_what_respond_sends(
    batches: list[tuple[int, list[tuple[bytes, int, bytes]]]],
    deny: bool,
    rate: float,
    burst: int,
    offset: int,
    max_clients: int,
) -> None:
    """Batch after batch, with clients in debt, repeated in a batch, denied, and a client table
    that overflows: the replies (kisses included), their order and their addresses are what
    respond() gives per datagram."""
    now = (UNIX_2026 + UNIX_EPOCH_SECONDS) << 32

    def make_core() -> NtpServer:
        return NtpServer(
            ServerState.local(10, now),
            rate_limit=RateLimit(average_rate=rate, burst=burst, kod_interval=2.0, max_clients=max_clients),
            deny=[DENIED] if deny else [],
            clock_offset=offset,
        )

    core, reference = make_core(), make_core()
    arrival = UNIX_2026 * 1_000_000_000 + 100_000_000
    with make_server(core) as (server, sent):
        for gap, requests in batches:
            arrival += gap
            datagrams = []
            for i, (_, spacing, transmit) in enumerate(requests):
                payload = bytes([0x23]) + bytes(39) + transmit
                datagrams.append((payload, arrival + i * spacing, True))
            senders = [sender for sender, _, _ in requests]
            fill(server, datagrams, senders)
            before = len(sent)
            server._answer(server._mmsg, len(datagrams))  # type: ignore[arg-type]
            got = by_slot(sent[before:])
            want = []
            for (payload, arrival_ns, _), sender in zip(datagrams, senders, strict=True):
                answer = reference.respond(payload, client_key(sender), full_time(arrival_ns), 0)
                if isinstance(answer, bytes):
                    want.append((answer, sender))
            assert len(got) == len(want)
            for (reply, address), (answer, sender) in zip(got, want, strict=True):
                assert address[4:8] == sender
                if reply[1] == 0:
                    assert reply == answer  # a kiss
                else:  # a reply: all but T3, which is the server's clock at sending
                    assert reply[:40] == answer[:40] and reply[40:48] != bytes(8)
            assert core.counters == reference.counters


def test_over_its_limit_an_address_gets_one_rate_kiss_per_interval_and_a_denied_one_deny() -> None:
    """Batches mixing good clients, one flooding client and one in a denied network, all on the
    fast path: good clients are answered; the flooder is answered as its bucket allows and
    otherwise gets RATE at most once per kod_interval (RFC 8633: the rest is dropped); the
    denied client gets DENY likewise and nothing else."""
    now = (UNIX_2026 + UNIX_EPOCH_SECONDS) << 32
    core = NtpServer(
        ServerState.local(10, now),
        rate_limit=RateLimit(average_rate=1.0, burst=4, kod_interval=8.0),
        deny=[DENIED],
    )
    good = [bytes([127, 0, 1, n]) for n in range(1, 201)]
    flooder, denied = bytes([127, 0, 0, 66]), bytes([127, 0, 9, 9])
    answered: dict[bytes, int] = {}
    kisses: list[tuple[int, bytes, bytes]] = []  # (batch number, code, to whom)
    start_ns = UNIX_2026 * 1_000_000_000
    with make_server(core) as (server, sent):
        batch = server._mmsg
        assert batch is not None
        for step in range(100):  # 20 s, a batch every 0.2 s: the flooder sends 10/s
            at = start_ns + step * 200_000_000
            senders = [good[step * 2], flooder, good[step * 2 + 1], denied, flooder]
            request = bytes([0x23]) + bytes(39) + step.to_bytes(8, "big")
            fill(server, [(request, at + i * 1000, True) for i in range(5)], senders)
            before = len(sent)
            assert server._answer_plain(batch, 5), "refused clients keep the batch on the fast path"
            for reply, address in sent[before:]:
                if reply[1] == 0:
                    kisses.append((step, reply[12:16], address[4:8]))
                else:
                    answered[address[4:8]] = answered.get(address[4:8], 0) + 1
    assert all(answered.get(sender) == 1 for sender in good)
    # 1 request/s with a burst of 4: the first 4, then one per second as the debt drains.
    assert answered[flooder] == 4 + 19
    assert denied not in answered
    rate = [t for t, code, to in kisses if code == b"RATE" and to == flooder]
    deny = [t for t, code, to in kisses if code == b"DENY" and to == denied]
    assert len(kisses) == len(rate) + len(deny)
    # A kiss when the flooder first runs over its limit (its 5th request, at 0.4 s), then the
    # first refusal after each 8 s (40 batches); the denied client's first request, then every 8 s.
    assert rate == [2, 42, 82]
    assert deny == [0, 40, 80]
    assert core.dropped == {"rate limited": 200 - 23 - 3, "denied": 100 - 3}
