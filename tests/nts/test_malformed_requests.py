"""RFC 8915 §5.7: a request that carries NTS extension fields is answered only with an
authenticated reply or an NTS NAK, or not at all — never with plain, unauthenticated time.

Each case below breaks the framing of a genuine NTS request in one way; the server core must drop
it, and so must the UDP server's batched receive path (over a real socket on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.ntp.aio.server import MAX_DATAGRAM, UdpServer, open_udp_socket
from lockstep.ntp.events import PacketDropped
from lockstep.ntp.nts import fields
from lockstep.ntp.nts.client import NtsClientSession
from lockstep.ntp.nts.cookies import CookieContents, CookieKeys
from lockstep.ntp.nts.fields import FieldType
from lockstep.ntp.nts.server import NtsServer
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from lockstep.ntp.timestamps import ONE_SECOND
from lockstep.ntp.wire import HEADER_LENGTH, KissCode, Packet

NOW = 3_900_000_000 * ONE_SECOND
KEYS = CookieKeys(b"m" * 32)
C2S = bytes(range(32))
S2C = bytes(range(32, 64))


def session() -> NtsClientSession:
    cookies = [KEYS.make(CookieContents(15, C2S, S2C), NOW) for _ in range(8)]
    return NtsClientSession(C2S, S2C, cookies)


def genuine_request(transmit: int = 0x1234) -> bytes:
    """A well-formed NTS request: header, unique identifier, cookie, authenticator (232 bytes)."""
    return session().protect(Packet(transmit_timestamp=transmit).encode())


def field_offsets(request: bytes) -> dict[int, tuple[int, int]]:
    """Where each extension field of a well-formed request starts and ends, by type."""
    out = {}
    offset = HEADER_LENGTH
    while offset < len(request):
        kind, length = struct.unpack_from(">HH", request, offset)
        out[kind] = (offset, offset + length)
        offset += length
    return out


def set_length(request: bytes, kind: int, length: int) -> bytes:
    start, _ = field_offsets(request)[kind]
    return request[: start + 2] + struct.pack(">H", length) + request[start + 4 :]


def odd_cookie(request: bytes) -> bytes:
    """The cookie field cut to an odd length (103-byte body, length 107): misaligns the rest."""
    start, end = field_offsets(request)[FieldType.NTS_COOKIE]
    body = request[start + 4 : end][:103]
    return request[:start] + struct.pack(">HH", FieldType.NTS_COOKIE, 4 + len(body)) + body + request[end:]


def nts_field_as_mac(request: bytes) -> bytes:
    """48 bytes of header and a 24-byte tail starting like an authenticator: RFC 7822 would read
    the tail as a legacy MAC, but it carries an NTS field type."""
    return request[:HEADER_LENGTH] + struct.pack(">HH", FieldType.NTS_AUTHENTICATOR, 24) + bytes(20)


MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "authenticator truncated": lambda r: r[:-8],
    "authenticator length not a multiple of 4": lambda r: set_length(r, FieldType.NTS_AUTHENTICATOR, 38),
    "authenticator overruns the datagram": lambda r: set_length(r, FieldType.NTS_AUTHENTICATOR, 44),
    "cookie of odd length": odd_cookie,
    "unique identifier shorter than a field": lambda r: set_length(r, FieldType.UNIQUE_IDENTIFIER, 8),
    "trailing bytes after the authenticator": lambda r: r + b"\x00\x01\x02",
    "authenticator followed by a MAC": lambda r: r + bytes(20),
    "NTS field where a MAC would be": nts_field_as_mac,
    "unique identifier only": lambda r: r[: field_offsets(r)[FieldType.UNIQUE_IDENTIFIER][1]],
}


def nts_core(rate_limit: RateLimit | None = None) -> NtpServer:
    return NtpServer(ServerState.local(3, NOW), rate_limit=rate_limit, nts=NtsServer(KEYS))


def is_authenticated_reply(reply: bytes) -> bool:
    """Whether ``reply`` ends with an NTS authenticator that verifies under the S2C key."""
    located = fields.locate(Packet.decode(reply))
    if not located or located[-1].field_type != FieldType.NTS_AUTHENTICATOR:
        return False
    try:
        fields.open_sealed(S2C, located[-1].value, reply[: located[-1].offset])
    except fields.AuthenticationFailed:
        return False
    return True


def is_nts_nak(reply: bytes) -> bool:
    return Packet.decode(reply).kiss_code is KissCode.NTSN


def assert_no_plain_time(reply: bytes | PacketDropped) -> None:
    if isinstance(reply, bytes):
        assert is_authenticated_reply(reply) or is_nts_nak(reply), reply.hex()


def test_the_genuine_request_is_answered_with_authenticated_time() -> None:
    reply = nts_core().respond(genuine_request(), "127.0.0.1", NOW)
    assert isinstance(reply, bytes) and is_authenticated_reply(reply)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_broken_framing_is_dropped(name: str) -> None:
    request = MALFORMED[name](genuine_request())
    core = nts_core()
    reply = core.respond(request, "127.0.0.1", NOW)
    assert isinstance(reply, PacketDropped), f"{name}: answered {len(reply)} bytes"
    assert core.counters.replied == 0


@pytest.mark.parametrize("name", list(MALFORMED))
def test_broken_framing_gets_no_plain_kiss_either(name: str) -> None:
    """A rate-limited client's NTS request gets its kiss authenticated or nothing (§5.7)."""
    core = nts_core(RateLimit(average_rate=0.01, burst=1, kod_interval=0.0))
    core.respond(Packet(transmit_timestamp=1).encode(), "127.0.0.1", NOW)  # spends the burst
    reply = core.respond(MALFORMED[name](genuine_request()), "127.0.0.1", NOW)
    assert isinstance(reply, PacketDropped)


@contextlib.contextmanager
def serving(core: NtpServer, *, batched: bool) -> Iterator[int]:
    """Our UDP server on loopback: the blocking recvmmsg thread, or the event-loop reader that
    reads one datagram at a time. Yields its port."""
    udp = UdpServer(core, open_udp_socket("127.0.0.1", 0), batched=batched)
    if batched:
        thread, stop = udp.start_thread()
        try:
            yield udp.address[1]
        finally:
            stop.set()
            thread.join(5)
            udp.close()
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop.call_soon_threadsafe(udp.start)
    thread.start()
    try:
        yield udp.address[1]
    finally:
        loop.call_soon_threadsafe(udp.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def exchange_all(port: int, requests: list[bytes]) -> list[bytes]:
    """Send ``requests`` back to back; return every reply that comes within half a second."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(0.5)
        for request in requests:
            client.sendto(request, ("127.0.0.1", port))
        with contextlib.suppress(TimeoutError):
            while len(replies) < len(requests):
                replies.append(client.recv(2048))
    return replies


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
def test_the_udp_server_answers_none_of_them(batched: bool) -> None:
    """One burst of plain and broken NTS requests at our UDP server: the plain ones get their
    48-byte replies, the broken ones nothing (the batched path sees them in the same batches)."""
    core = nts_core()
    requests = []
    for i, make in enumerate(MALFORMED.values()):
        requests += [Packet(transmit_timestamp=1000 + i).encode(), make(genuine_request(i))]
    with serving(core, batched=batched) as port:
        replies = exchange_all(port, requests)
    assert sorted(Packet.decode(r).origin_timestamp for r in replies) == [
        1000 + i for i in range(len(MALFORMED))
    ]
    assert all(len(r) == 48 for r in replies)
    assert sum(core.counters.dropped.values()) == len(MALFORMED)


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
def test_an_nts_request_longer_than_the_receive_buffer_gets_no_plain_time(batched: bool) -> None:
    """The server reads at most 1024 bytes of a datagram; a longer NTS request arrives cut short
    and must be dropped, not answered as plain NTP."""
    request = genuine_request()
    start, _ = field_offsets(request)[FieldType.NTS_AUTHENTICATOR]
    padding = struct.pack(">HH", 0x2005, 4 + 1000) + bytes(1000)  # an unknown field, well formed
    long_request = request[:start] + padding + request[start:]
    assert len(long_request) > MAX_DATAGRAM
    core = nts_core()
    with serving(core, batched=batched) as port:
        assert exchange_all(port, [long_request]) == []
    assert sum(core.counters.dropped.values()) == 1 and core.counters.replied == 0


# -- the property ------------------------------------------------------------------------------

NTS_TYPES = [int(kind) for kind in FieldType]


@st.composite
def datagrams_with_an_nts_field(draw: st.DrawFn) -> bytes:
    """A client request whose trailer has an NTS field type at a field boundary: after zero or
    more well-formed fields of other types comes a field header of an NTS type with any length,
    then anything; or a genuine NTS request cut, grown or with one trailer byte changed."""
    header = Packet(transmit_timestamp=draw(st.integers(1, 2**64 - 1))).encode()
    if draw(st.booleans()):
        request = genuine_request(int.from_bytes(header[40:48], "big"))
        mutation = draw(st.sampled_from(["cut", "grow", "flip"]))
        if mutation == "cut":
            return request[: draw(st.integers(HEADER_LENGTH + 4, len(request) - 1))]
        if mutation == "grow":
            return request + draw(st.binary(min_size=1, max_size=40))
        position = draw(st.integers(HEADER_LENGTH, len(request) - 1))
        return (
            request[:position]
            + bytes([request[position] ^ draw(st.integers(1, 255))])
            + request[position + 1 :]
        )
    before = b""
    for kind, body in draw(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=3)):
        if kind in NTS_TYPES:
            continue
        body = fields.padded(body)
        before += struct.pack(">HH", kind, 4 + len(body)) + body
    kind = draw(st.sampled_from(NTS_TYPES))
    length = draw(st.integers(0, 0xFFFF) | st.integers(0, 200))
    return header + before + struct.pack(">HH", kind, length) + draw(st.binary(max_size=300))


@settings(max_examples=500)
@given(datagrams_with_an_nts_field(), st.booleans())
def test_no_datagram_with_an_nts_field_gets_unauthenticated_time(request: bytes, limited: bool) -> None:
    core = nts_core(RateLimit(average_rate=0.01, burst=1, kod_interval=0.0) if limited else None)
    for _ in range(2):  # with the limit on, the second one takes the kiss path
        reply = core.respond(request, "127.0.0.1", NOW)
        assert_no_plain_time(reply)
        if isinstance(reply, bytes):
            assert len(reply) <= len(request)
