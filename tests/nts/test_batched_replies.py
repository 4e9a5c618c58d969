"""The batched UDP server answers NTS requests (RFC 8915) byte for byte as ``NtpServer.respond``
does one at a time, whatever the batch mixes: good requests, requests asking for more cookies,
cookies we cannot open and tampered requests (NTS NAKs), broken framing (dropped), plain NTP,
and clients over their rate limit (authenticated RATE kisses)."""

from __future__ import annotations

import random
import socket
import time
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.ntp.aio import mmsg
from lockstep.ntp.nts.client import NtsAuthenticated, NtsClientSession
from lockstep.ntp.nts.cookies import CookieContents, CookieKeys
from lockstep.ntp.nts.server import NtsServer
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from lockstep.ntp.timestamps import UNIX_EPOCH_SECONDS, from_timestamp
from lockstep.ntp.wire import Packet
from ntp.batch_slots import UNIX_2026, arrived, fill, full_time, listening, make_server

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg are Linux only")

NOW = (UNIX_2026 + UNIX_EPOCH_SECONDS) << 32
KEYS = CookieKeys(b"m" * 32)
OTHER_KEYS = CookieKeys(b"o" * 32)  # another server's cookies: NAK
C2S = bytes(range(32))
S2C = bytes(range(32, 64))


def nts_request(kind: str, transmit: int, cookies_held: int) -> bytes:
    """An NTS request of one kind; ``cookies_held`` < 8 makes the client ask for more cookies
    with placeholders (§5.5)."""
    keys = OTHER_KEYS if kind == "foreign cookie" else KEYS
    cookies = [keys.make(CookieContents(15, C2S, S2C), NOW) for _ in range(cookies_held)]
    request = NtsClientSession(C2S, S2C, cookies).protect(Packet(transmit_timestamp=transmit).encode())
    if kind == "tampered":  # one bit of the header flipped after sealing
        return request[:20] + bytes([request[20] ^ 1]) + request[21:]
    if kind == "broken framing":  # the authenticator's length overruns the datagram
        return request[:-2]
    return request


datagrams = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "good",
                "good",
                "good",
                "foreign cookie",
                "tampered",
                "broken framing",
                "plain",
                "odd origin",
                "mutated",
            ]
        ),
        st.integers(1, 2**64 - 1),  # the client's transmit timestamp
        st.integers(1, 8),  # cookies the client holds
        st.integers(0, 999_999),  # arrival, ns after the batch's first
        st.integers(0, 3),  # which of four senders
        st.sampled_from([True, True, True, False]),  # whether the kernel stamped its arrival
    ),
    min_size=1,
    max_size=64,
)


def make_core(seed: int, rate_limited: bool, clock_offset: int = 0, *, compiled: bool = True) -> NtpServer:
    limit = RateLimit(average_rate=1.0, burst=4, kod_interval=0.5) if rate_limited else None
    # The same nonces for both servers of a comparison.
    nts = NtsServer(KEYS, random_bytes=random.Random(seed).randbytes, compiled=compiled)
    return NtpServer(ServerState.local(10, NOW), rate_limit=limit, nts=nts, clock_offset=clock_offset)


def payload_of(kind: str, transmit: int, held: int) -> bytes:
    if kind == "plain":
        return bytes([0x23]) + bytes(39) + transmit.to_bytes(8, "big")
    if kind == "odd origin":  # perhaps interleaved mode (RFC 9769): the Python path's to answer
        return NtsClientSession(C2S, S2C, [KEYS.make(CookieContents(15, C2S, S2C), NOW)]).protect(
            Packet(origin_timestamp=transmit | 1, transmit_timestamp=transmit).encode()
        )
    if kind == "mutated":  # one byte of the NTS part set to any value (unauthenticated padding too)
        request = bytearray(nts_request("good", transmit, held))
        request[48 + transmit % (len(request) - 48)] = (transmit >> 32) & 0xFF
        return bytes(request)
    return nts_request(kind, transmit, held)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=datagrams,
    seed=st.integers(0, 2**32),
    rate_limited=st.booleans(),
    first_ns=st.sampled_from([100_000_000, 999_500_000]),  # the batch may straddle a second
    clock_offset=st.sampled_from([0, 3 << 31, -(5 << 30)]),  # serving corrected time
)
def test_batched_nts_replies_equal_respond_byte_for_byte(
    batch: list[tuple[str, int, int, int, int, bool]],
    seed: int,
    rate_limited: bool,
    first_ns: int,
    clock_offset: int,
) -> None:
    """Each reply is what respond() gives for its datagram, with nonces drawn in the order the
    replies were made: those of the compiled path (sent for real; without limits, every good NTS
    request stamped in the first datagram's served second, and mutated ones that still verify)
    first, then the general path's, whose clock is held still here (the compiled path reads its
    own: each reply's T3 is given to the reference)."""
    core, reference = make_core(seed, rate_limited, clock_offset), make_core(seed, rate_limited, clock_offset)
    first = UNIX_2026 * 1_000_000_000 + first_ns
    general_path_now = first + 2_000_000_000  # T2 and T3 of the general path
    filled = [
        (payload_of(kind, transmit, held), first + spread, stamped)
        for kind, transmit, held, spread, _, stamped in batch
    ]
    senders = [bytes([127, 0, 0, 1 + sender]) for *_, sender, _ in batch]
    served_second = (full_time(filled[0][1]) + clock_offset) >> 32  # the first datagram's
    eligible = {
        i
        for i, (_, arrival_ns, stamped) in enumerate(filled)
        if stamped
        and not rate_limited
        and filled[0][2]  # the batch's template is its first datagram's
        and (full_time(arrival_ns) + clock_offset) >> 32 == served_second
    }
    compiled = {i for i in eligible if batch[i][0] == "good"}
    with (
        listening(senders) as sockets,
        make_server(core) as (server, recorded),
        mock.patch.object(time, "time_ns", return_value=general_path_now),
    ):
        fill(server, filled, senders, [sock.getsockname()[1] for sock in sockets])
        server._answer(server._mmsg, len(filled))  # type: ignore[arg-type]
        # Sockets on different addresses may share a port number: look up both.
        index_of = {sock.getsockname(): i for i, sock in enumerate(sockets)}
        by_general_path = {
            index_of[socket.inet_ntoa(address[4:8]), int.from_bytes(address[2:4], "big")]: reply
            for reply, address in recorded
        }
        by_compiled_path = arrived(sockets, compiled)
    assert compiled <= by_compiled_path.keys() <= compiled | {i for i in eligible if batch[i][0] == "mutated"}
    assert not by_compiled_path.keys() & by_general_path.keys()
    got = by_general_path | by_compiled_path
    long_replies = 0
    made_in_order = sorted(range(len(batch)), key=lambda i: i not in by_compiled_path)
    for i in made_in_order:
        payload, arrival_ns, stamped = filled[i]
        received = full_time(arrival_ns if stamped else general_path_now)
        transmit = received
        if i in got:  # T3 is the server's clock when it answered: give the reference the same reading
            transmit = (
                from_timestamp(int.from_bytes(got[i][40:48], "big"), received + clock_offset) - clock_offset
            )
        want = reference.respond(payload, int.from_bytes(senders[i], "big"), received, transmit)
        if isinstance(want, bytes):
            assert got[i] == want, f"datagram {i} ({batch[i][0]})"
            long_replies += len(want) > 48
        else:
            assert i not in got, f"datagram {i} ({batch[i][0]}) is dropped by respond()"
    assert core.counters == reference.counters
    assert core.nts is not None and reference.nts is not None
    assert core.nts.counters == reference.nts.counters
    assert long_replies == sum(len(reply) > 48 for reply in got.values())


def test_the_general_path_shares_sendmmsg_calls_between_nts_replies() -> None:
    """Without the compiled path, thirty-two good NTS requests read together are answered with
    authenticated replies that leave through the long-reply slots, at least two per ``sendmmsg``
    (each waits at most 40 µs for the next), not one ``sendto`` each."""
    core = make_core(1, rate_limited=False, compiled=False)
    arrival = UNIX_2026 * 1_000_000_000 + 100_000_000
    requests = [(nts_request("good", n + 1, 8), arrival + n, True) for n in range(32)]
    with make_server(core) as (server, sent):
        sends = []
        record = server._long_replies.send
        server._long_replies.send = lambda: sends.append(server._long_replies.used) or record()  # type: ignore[method-assign,func-returns-value]
        fill(server, requests)
        server._answer(server._mmsg, len(requests))  # type: ignore[arg-type]
    assert len(sent) == 32 and all(len(reply) == 232 for reply, _ in sent)
    assert sum(sends) == 32 and len(sends) <= 17 and min(sends[:-1], default=2) >= 2
    assert core.nts is not None and core.nts.counters.authenticated == 32


def test_the_compiled_path_answers_a_whole_batch_that_clients_accept() -> None:
    """Sixty-four good NTS requests (the most one recvmmsg reads), some asking for more cookies:
    every one answered by the compiled path, sent for real, and accepted by its client (the reply
    authenticates under S2C and echoes the request's unique identifier and transmit time)."""
    core = make_core(2, rate_limited=False)
    arrival = UNIX_2026 * 1_000_000_000 + 100_000_000
    cookie = KEYS.make(CookieContents(15, C2S, S2C), NOW)
    sessions = [NtsClientSession(C2S, S2C, [cookie] * (1 + n % 8)) for n in range(64)]
    requests = [
        (session.protect(Packet(transmit_timestamp=n + 1).encode()), arrival + n, True)
        for n, session in enumerate(sessions)
    ]
    senders = [bytes([127, 0, 1, n % 4]) for n in range(64)]
    with listening(senders) as sockets, make_server(core) as (server, recorded):
        fill(server, requests, senders, [sock.getsockname()[1] for sock in sockets])
        server._answer(server._mmsg, len(requests))  # type: ignore[arg-type]
        replies = arrived(sockets, set(range(64)))
    assert not recorded and len(replies) == 64
    for n, session in enumerate(sessions):
        reply = Packet.decode(replies[n])
        assert reply.origin_timestamp == n + 1
        assert session.check(replies[n], reply) == NtsAuthenticated(8 - n % 8)
    assert core.counters.replied == 64
    assert core.nts is not None and core.nts.counters.authenticated == 64


def test_a_reply_longer_than_its_slot_is_refused_not_written_over_the_next() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        slots = mmsg.ReplySlots(sock, size=2, max_datagram=64)
        slots.add(bytes(64), bytes(16))
        with pytest.raises(ValueError, match="does not fit"):
            slots.add(bytes(65), bytes(16))
        assert slots.used == 1 and slots.slot(0) == (bytes(64), bytes(16))
