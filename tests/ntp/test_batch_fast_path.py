"""The batched server's fast path answers exactly as NtpServer.respond does, datagram by datagram.

The batch is filled by hand (no traffic), as recvmmsg would leave it: payloads, lengths, the
kernel's SO_TIMESTAMPNS control messages and the senders' addresses; ``sendmmsg`` is replaced by
a function that records what would have been sent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.ntp.aio import mmsg
from lockstep.ntp.aio.server import UdpServer, open_udp_socket
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from lockstep.ntp.timestamps import UNIX_EPOCH_SECONDS
from lockstep.ntp.wire import LeapIndicator

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg are Linux only")

UNIX_2026 = 1_764_000_000
UNIX_2040 = 2_208_988_800  # 2040-01-01: NTP era 1


@contextlib.contextmanager
def make_server(core: NtpServer) -> Iterator[tuple[UdpServer, list[list[tuple[bytes, bytes]]]]]:
    server = UdpServer(core, open_udp_socket("127.0.0.1", 0), batched=True)
    batch = server._mmsg
    assert batch is not None
    sent: list[list[tuple[bytes, bytes]]] = []

    def send(count: int) -> int:
        sent.append(
            [
                (
                    bytes(batch.sdata[i * 48 : i * 48 + 48]),
                    bytes(batch.raddr[i * mmsg.ADDRESS_SIZE : i * mmsg.ADDRESS_SIZE + 16]),
                )
                for i in range(count)
            ]
        )
        return count

    batch.send = send  # type: ignore[method-assign]
    try:
        yield server, sent
    finally:
        server.sock.close()


def fill(server: UdpServer, datagrams: list[tuple[bytes, int, bool]]) -> None:
    """Put (payload, arrival in Unix ns, whether the kernel stamped it) into the receive slots;
    datagram i comes from 127.0.0.(i + 1), port 40000 + i."""
    batch = server._mmsg
    assert batch is not None
    for i, (payload, arrival_ns, stamped) in enumerate(datagrams):
        start = i * batch.max_datagram
        batch.rdata[start : start + len(payload)] = payload
        batch.lengths[i * mmsg.STRIDE + mmsg.MSG_LEN_INDEX] = len(payload)
        address = i * mmsg.ADDRESS_SIZE
        batch.raddr[address : address + 16] = (
            struct.pack("<H", socket.AF_INET) + struct.pack(">H", 40000 + i) + bytes([127, 0, 0, 1 + i])
        ) + bytes(8)
        words = i * (mmsg.CONTROL_SIZE // 8)
        if not stamped:
            batch.lengths[i * mmsg.STRIDE + mmsg.CONTROLLEN_INDEX] = 0
        else:
            batch.lengths[i * mmsg.STRIDE + mmsg.CONTROLLEN_INDEX] = mmsg.CONTROL_SIZE
            batch.control_words[words + 2] = arrival_ns // 1_000_000_000
            batch.control_words[words + 3] = arrival_ns % 1_000_000_000


def full_time(unix_ns: int) -> int:
    return (UNIX_EPOCH_SECONDS << 32) + ((unix_ns << 32) + 500_000_000) // 1_000_000_000


def expected(core: NtpServer, payload: bytes, arrival_ns: int, transmit: int) -> bytes:
    """What respond() says, given the reply's own T3 (transmit) as the transmit time."""
    reply = core.respond(payload, None, full_time(arrival_ns), transmit - core.clock_offset)
    assert isinstance(reply, bytes)
    return reply


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
        # a batch across a second boundary goes through respond(), as does anything unusual.
        served_seconds = {(full_time(arrival) + offset) >> 32 for _, arrival, _ in datagrams}
        if via_answer:  # as served: small batches skip the fast path
            server._answer(server._mmsg, len(datagrams))  # type: ignore[arg-type]
            fast = len(served_seconds) == 1 and len(datagrams) >= 3
        else:
            fast = server._answer_plain(server._mmsg, len(datagrams))  # type: ignore[arg-type]
            assert fast == (len(served_seconds) == 1)
            if not fast:
                server._answer(server._mmsg, len(datagrams))  # type: ignore[arg-type]
        assert len(sent) == 1 and len(sent[0]) == len(datagrams)
        for i, ((reply, address), (payload, arrival, _)) in enumerate(zip(sent[0], datagrams, strict=True)):
            transmit = int.from_bytes(reply[40:48], "big")
            assert reply == expected(reference, payload, arrival, transmit)
            assert len(reply) <= len(payload)
            assert address[4:8] == bytes([127, 0, 0, 1 + i])
        assert core.counters.replied == len(datagrams)
        if fast:  # every reply of the batch carries one T3, read after the latest arrival
            assert len({reply[40:48] for reply, _ in sent[0]}) == 1


def test_fast_path_is_taken_for_plain_requests() -> None:
    core = NtpServer(ServerState.local(10, (UNIX_2026 + UNIX_EPOCH_SECONDS) << 32))
    with make_server(core) as (server, sent):
        fill(server, [(bytes([0x23]) + bytes(47), UNIX_2026 * 10**9, True)] * 3)
        assert server._answer_plain(server._mmsg, 3)  # type: ignore[arg-type]
        assert len(sent[0]) == 3


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
        replies = sent[0]
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


def test_rate_limits_and_deny_lists_keep_the_per_datagram_path() -> None:
    now = (UNIX_2026 + UNIX_EPOCH_SECONDS) << 32
    for core in (
        NtpServer(ServerState.local(10, now), rate_limit=RateLimit(average_rate=1, burst=2)),
        NtpServer(ServerState.local(10, now), deny=[ipaddress.ip_network("10.0.0.0/8")]),
    ):
        assert core.batch_template(now) is None
    limited = NtpServer(ServerState.local(10, now), rate_limit=RateLimit(average_rate=1, burst=2))
    with make_server(limited) as (server, sent):
        # One client (127.0.0.1 for all: same key) sending 5 at once: 2 answered, 1 RATE kiss.
        fill(server, [(bytes([0x23]) + bytes(47), UNIX_2026 * 10**9, True)] * 5)
        batch = server._mmsg
        assert batch is not None
        for i in range(5):
            batch.raddr[i * mmsg.ADDRESS_SIZE + 7] = 1
        server._answer(batch, 5)
        kinds = [reply[12:16] for reply, _ in sent[0]]
        assert kinds.count(b"RATE") == 1 and len(kinds) == 3
