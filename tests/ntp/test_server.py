"""The server core: replies, hardening (RFC 8633), eras."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.ntp.events import PacketDropped
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from lockstep.ntp.timestamps import ONE_SECOND, from_timestamp, to_timestamp
from lockstep.ntp.wire import KissCode, LeapIndicator, Mode, Packet

NOW = 3_973_000_000 << 32


def request(version: int = 4, mode: int = 3, transmit: int = 0x1122334455667788) -> bytes:
    return bytes([(version << 3) | mode, 0, 6, 0]) + bytes(36) + transmit.to_bytes(8, "big")


def server(**kwargs: object) -> NtpServer:
    return NtpServer(ServerState.local(stratum=2, now=NOW), **kwargs)  # type: ignore[arg-type]


def test_reply_echoes_transmit_as_origin_and_stamps_receive_and_transmit() -> None:
    reply = server().respond(request(), "127.0.0.1", NOW + 5 * ONE_SECOND)
    assert isinstance(reply, bytes)
    packet = Packet.decode(reply)
    assert packet.mode is Mode.SERVER
    assert packet.origin_timestamp == 0x1122334455667788
    # T2 is the arrival with its lowest bit set, T3 even and not before it (as chronyd does:
    # the odd T2 marks our receive timestamps for interleaved mode).
    arrival = to_timestamp(NOW + 5 * ONE_SECOND)
    assert packet.receive_timestamp == arrival | 1
    assert packet.transmit_timestamp == (arrival | 1) + 1
    assert packet.stratum == 2
    assert packet.reference_id == 0x7F7F0101
    assert packet.poll == 6


def test_version_3_is_answered_as_version_3() -> None:
    reply = server().respond(request(version=3), "127.0.0.1", NOW)
    assert isinstance(reply, bytes)
    assert Packet.decode(reply).version == 3


def test_control_and_private_modes_get_no_reply() -> None:
    core = server()
    assert isinstance(core.respond(request(mode=6) + bytes(400), "127.0.0.1", NOW), PacketDropped)
    assert isinstance(core.respond(request(mode=7) + bytes(400), "127.0.0.1", NOW), PacketDropped)
    assert core.dropped == {"mode 6/7 (control/private) is not served": 2}
    assert core.counters.replied == 0


def test_other_modes_and_versions_are_dropped_and_counted() -> None:
    core = server()
    for data in (request(mode=4), request(mode=1), request(version=0), request(version=5)):
        assert isinstance(core.respond(data, "127.0.0.1", NOW), PacketDropped)
    assert sum(core.dropped.values()) == 4


def test_unsynchronised_server_says_so() -> None:
    core = NtpServer(ServerState.unsynchronized())
    packet = Packet.decode(core.respond(request(), "127.0.0.1", NOW))  # type: ignore[arg-type]
    assert packet.leap is LeapIndicator.UNSYNCHRONIZED
    # Stratum 16 (MAXSTRAT) goes out as 0, as RFC 5905 §7.3 and A.5.3 fast_xmit say and as
    # chronyd and ntpd send it; the zero reference id is no kiss code.
    assert packet.stratum == 0
    assert packet.reference_id == 0


def test_rate_limit_sends_one_rate_kiss_then_drops() -> None:
    core = server(rate_limit=RateLimit(average_rate=1.0, burst=4, kod_interval=8.0))
    answers = [core.respond(request(), "192.0.2.9", NOW + i * (ONE_SECOND // 100)) for i in range(10)]
    replies = [a for a in answers if isinstance(a, bytes)]
    kisses = [Packet.decode(a) for a in replies if Packet.decode(a).stratum == 0]
    assert len(replies) == 5  # 4 answered in the burst, then exactly one kiss
    assert len(kisses) == 1 and kisses[0].kiss_code is KissCode.RATE
    assert kisses[0].origin_timestamp == 0x1122334455667788  # lets the client authenticate it
    assert core.dropped["rate limited"] == 5
    # Another client is unaffected, and the first recovers as its debt drains.
    assert isinstance(core.respond(request(), "192.0.2.10", NOW), bytes)
    later = core.respond(request(), "192.0.2.9", NOW + 10 * ONE_SECOND)
    assert isinstance(later, bytes) and Packet.decode(later).stratum == 2


def test_denied_network_gets_deny_kiss() -> None:
    core = server(deny=[ipaddress.ip_network("198.51.100.0/24")])
    kiss = core.respond(request(), "198.51.100.7", NOW)
    assert isinstance(kiss, bytes) and Packet.decode(kiss).kiss_code is KissCode.DENY
    assert isinstance(core.respond(request(), "203.0.113.1", NOW), bytes)


def test_rate_table_is_bounded() -> None:
    # 1000 addresses at once, all still in debt: the oldest are forgotten.
    core = server(rate_limit=RateLimit(max_clients=100))
    for i in range(1000):
        core.respond(request(), f"10.0.{i // 256}.{i % 256}", NOW)
    assert core.limiter.tracked <= 100
    # Addresses whose debt has drained are forgotten first, so the table keeps those in debt.
    core = server(rate_limit=RateLimit(max_clients=100, burst=2))
    for i in range(99):
        core.respond(request(), f"10.1.0.{i}", NOW)
    for _ in range(3):  # 10.2.0.1 runs into its limit and stays in debt
        core.respond(request(), "10.2.0.1", NOW + 10 * ONE_SECOND)
    core.respond(request(), "10.3.0.1", NOW + 10 * ONE_SECOND)  # the table is full: make room
    assert core.limiter.tracked == 2
    assert isinstance(core.respond(request(), "10.2.0.1", NOW + 10 * ONE_SECOND), PacketDropped)


def test_timestamps_are_era_correct_after_2036() -> None:
    era1 = (1 << 64) + 1000 * ONE_SECOND  # 2036-02-07 06:44:56 UTC, era 1
    core = NtpServer(ServerState.local(stratum=2, now=era1))
    packet = Packet.decode(core.respond(request(), "127.0.0.1", era1))  # type: ignore[arg-type]
    assert packet.transmit_timestamp == 1000 * ONE_SECOND + 2  # small 64-bit value in era 1
    client_clock = era1 - 3 * ONE_SECOND  # a client pivoting on its own clock gets the era right
    assert from_timestamp(packet.transmit_timestamp, client_clock) == era1 + 2


@settings(max_examples=500)
@given(st.binary(min_size=0, max_size=600), st.integers(0, 3))
def test_random_datagrams_never_crash_or_amplify(data: bytes, client: int) -> None:
    core = server(rate_limit=RateLimit(average_rate=2, burst=2, kod_interval=0.0))
    for _ in range(4):  # also drive the rate limiter into its kiss path
        reply = core.respond(data, f"127.0.0.{client}", NOW)
        if isinstance(reply, bytes):
            assert len(reply) <= len(data)
            assert Packet.decode(reply).mode is Mode.SERVER
        else:
            assert isinstance(reply, PacketDropped)


@given(st.binary(min_size=48, max_size=48).map(lambda b: bytes([(b[0] & 0xF8) | 3]) + b[1:]))
def test_any_48_byte_client_request_with_valid_version_gets_48_bytes(data: bytes) -> None:
    reply = server().respond(data, "127.0.0.1", NOW)
    version = (data[0] >> 3) & 7
    assert isinstance(reply, bytes) == (1 <= version <= 4)
    if isinstance(reply, bytes):
        assert len(reply) == 48
        assert reply[24:32] == data[40:48]  # origin = the request's transmit
