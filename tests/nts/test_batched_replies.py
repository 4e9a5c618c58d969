"""The batched UDP server answers NTS requests (RFC 8915) byte for byte as ``NtpServer.respond``
does one at a time, whatever the batch mixes: good requests, requests asking for more cookies,
cookies we cannot open and tampered requests (NTS NAKs), broken framing (dropped), plain NTP,
and clients over their rate limit (authenticated RATE kisses)."""

from __future__ import annotations

import random
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.ntp.aio import mmsg
from lockstep.ntp.nts.client import NtsClientSession
from lockstep.ntp.nts.cookies import CookieContents, CookieKeys
from lockstep.ntp.nts.server import NtsServer
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from lockstep.ntp.timestamps import UNIX_EPOCH_SECONDS, from_timestamp
from lockstep.ntp.wire import Packet
from ntp.batch_slots import UNIX_2026, by_slot, fill, full_time, make_server

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
        st.sampled_from(["good", "good", "good", "foreign cookie", "tampered", "broken framing", "plain"]),
        st.integers(1, 2**64 - 1),  # the client's transmit timestamp
        st.integers(1, 8),  # cookies the client holds
        st.integers(0, 999_999),  # arrival, ns into the batch's second
        st.integers(0, 3),  # which of four senders
    ),
    min_size=1,
    max_size=64,
)


def make_core(seed: int, rate_limited: bool) -> NtpServer:
    limit = RateLimit(average_rate=1.0, burst=4, kod_interval=0.5) if rate_limited else None
    nts = NtsServer(KEYS, random_bytes=random.Random(seed).randbytes)  # the same nonces for both
    return NtpServer(ServerState.local(10, NOW), rate_limit=limit, nts=nts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=datagrams, seed=st.integers(0, 2**32), rate_limited=st.booleans())
def test_batched_nts_replies_equal_respond_byte_for_byte(
    batch: list[tuple[str, int, int, int, int]], seed: int, rate_limited: bool
) -> None:
    core, reference = make_core(seed, rate_limited), make_core(seed, rate_limited)
    arrival = UNIX_2026 * 1_000_000_000 + 100_000_000
    filled = []
    senders = []
    for kind, transmit, held, spread, sender in batch:
        if kind == "plain":
            payload = bytes([0x23]) + bytes(39) + transmit.to_bytes(8, "big")
        else:
            payload = nts_request(kind, transmit, held)
        filled.append((payload, arrival + spread, True))
        senders.append(bytes([127, 0, 0, 1 + sender]))
    with make_server(core) as (server, sent):
        fill(server, filled, senders)
        server._answer(server._mmsg, len(filled))  # type: ignore[arg-type]
    # Replies in request order: each datagram came from its own port (40000 + i).
    got = {int.from_bytes(address[2:4], "big") - 40000: reply for reply, address in by_slot(sent)}
    long_replies = 0
    for i, ((payload, arrival_ns, _), sender) in enumerate(zip(filled, senders, strict=True)):
        received = full_time(arrival_ns)
        # T3 is the server's clock when it answered: give the reference the same reading.
        transmit = from_timestamp(int.from_bytes(got[i][40:48], "big"), received) if i in got else received
        want = reference.respond(payload, int.from_bytes(sender, "big"), received, transmit)
        if isinstance(want, bytes):
            assert got[i] == want, f"datagram {i} ({batch[i][0]})"
            long_replies += len(want) > 48
        else:
            assert i not in got, f"datagram {i} ({batch[i][0]}) is dropped by respond()"
    assert core.counters == reference.counters
    assert core.nts is not None and reference.nts is not None
    assert core.nts.counters == reference.nts.counters
    assert long_replies == sum(len(reply) > 48 for reply in got.values())


def test_a_batch_of_nts_replies_shares_sendmmsg_calls() -> None:
    """Thirty-two good NTS requests read together are answered with authenticated replies that
    leave through the long-reply slots, at least two per ``sendmmsg`` (each waits at most
    40 µs for the next), not one ``sendto`` each."""
    core = make_core(1, rate_limited=False)
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


def test_a_reply_longer_than_its_slot_is_refused_not_written_over_the_next() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        slots = mmsg.ReplySlots(sock, size=2, max_datagram=64)
        slots.add(bytes(64), bytes(16))
        with pytest.raises(ValueError, match="does not fit"):
            slots.add(bytes(65), bytes(16))
        assert slots.used == 1 and slots.slot(0) == (bytes(64), bytes(16))
