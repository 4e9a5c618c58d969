"""The pure NTS core end to end in memory: KE client <-> KE server, NTS client <-> NTS server."""

from __future__ import annotations

import os

import pytest

from lockstep.ntp.events import DropReason, PacketDropped
from lockstep.ntp.nts.client import NtsAuthenticated, NtsClientSession, NtsNak, NtsReplyRejected
from lockstep.ntp.nts.cookies import COOKIE_LENGTH, CookieContents, CookieKeys, CookieRejected
from lockstep.ntp.nts.ke import (
    KeAccepted,
    KeClient,
    KeFailed,
    KeRefused,
    KeServerSession,
    exporter_context,
)
from lockstep.ntp.nts.records import ErrorCode, Record, RecordType, decode_records, encode_records
from lockstep.ntp.nts.server import NtsNakSent, NtsServer
from lockstep.ntp.timestamps import ONE_SECOND
from lockstep.ntp.wire import KissCode, Mode, Packet, Trailer, scan_trailer

NOW = 3_900_000_000 * ONE_SECOND
C2S = bytes(range(32))
S2C = bytes(range(32, 64))


def keys(**kwargs: int) -> CookieKeys:
    return CookieKeys(b"m" * 32, **kwargs)


def negotiated_session(cookie_keys: CookieKeys) -> NtsClientSession:
    client = KeClient()
    server = KeServerSession(cookie_keys, ntp_port=1234)
    outcome = server.receive_data(client.request())
    assert outcome == KeAccepted(15)
    result = client.receive_data(server.respond(C2S, S2C, NOW))
    assert result is not None
    assert result.port == 1234 and result.aead == 15 and len(result.cookies) == 8
    assert "cookies=8" in repr(result)
    return NtsClientSession(C2S, S2C, result.cookies)


def header(transmit: int = 0x1234) -> bytes:
    return Packet(transmit_timestamp=transmit).encode()


def reply_header(request: bytes) -> bytes:
    packet = Packet.decode(request)
    return Packet(
        mode=Mode.SERVER,
        stratum=2,
        origin_timestamp=packet.transmit_timestamp,
        receive_timestamp=NOW,
        transmit_timestamp=NOW,
    ).encode()


def trailer(request: bytes) -> Trailer:
    scanned = scan_trailer(request)
    assert scanned is not None
    return scanned


def exchange(session: NtsClientSession, server: NtsServer, now: int = NOW) -> bytes | NtsNakSent:
    request = session.protect(header())
    reply = server.respond(request, trailer(request), reply_header(request), now)
    assert not isinstance(reply, PacketDropped)
    if isinstance(reply, bytes):
        assert len(reply) <= len(request)
    return reply  # type: ignore[return-value]


def test_exporter_context() -> None:
    assert exporter_context(0, 15, 0) == b"\x00\x00\x00\x0f\x00"
    assert exporter_context(0, 15, 1) == b"\x00\x00\x00\x0f\x01"


def test_authenticated_exchange_replenishes_cookies() -> None:
    cookie_keys = keys()
    session = negotiated_session(cookie_keys)
    server = NtsServer(cookie_keys)
    for _ in range(20):
        reply = exchange(session, server)
        assert isinstance(reply, bytes)
        assert session.check(reply, Packet.decode(reply)) == NtsAuthenticated(1)
        assert session.cookies == 8
    # Lose three replies: the next request asks for four cookies and gets them.
    for _ in range(3):
        session.protect(header())
    assert session.cookies == 5
    reply = exchange(session, server)
    assert isinstance(reply, bytes)
    assert session.check(reply, Packet.decode(reply)) == NtsAuthenticated(4)
    assert session.cookies == 8


def test_tampered_reply_is_rejected() -> None:
    cookie_keys = keys()
    session = negotiated_session(cookie_keys)
    reply = exchange(session, NtsServer(cookie_keys))
    assert isinstance(reply, bytes)
    tampered = bytearray(reply)
    tampered[40] ^= 1  # the transmit timestamp
    with pytest.raises(NtsReplyRejected, match="does not verify"):
        session.check(bytes(tampered), Packet.decode(bytes(tampered)))
    # The genuine reply still verifies afterwards; then a replay of it is refused.
    session.check(reply, Packet.decode(reply))
    with pytest.raises(NtsReplyRejected, match="no NTS request outstanding"):
        session.check(reply, Packet.decode(reply))


def test_reply_to_an_earlier_request_is_refused() -> None:
    cookie_keys = keys()
    session = negotiated_session(cookie_keys)
    server = NtsServer(cookie_keys)
    old = exchange(session, server)
    assert isinstance(old, bytes)
    exchange(session, server)  # a new request is outstanding now
    with pytest.raises(NtsReplyRejected, match="unique identifier does not match"):
        session.check(old, Packet.decode(old))


def test_unauthenticated_reply_is_refused() -> None:
    session = negotiated_session(keys())
    request = session.protect(header())
    plain = reply_header(request)
    with pytest.raises(NtsReplyRejected, match="no NTS unique identifier"):
        session.check(plain, Packet.decode(plain))


def test_unknown_cookie_gets_nts_nak_and_client_rekeys() -> None:
    session = negotiated_session(keys())
    other_server = NtsServer(CookieKeys(b"x" * 32))
    nak = exchange(session, other_server)
    assert isinstance(nak, NtsNakSent) and "does not verify" in nak.reason
    packet = Packet.decode(nak.data)
    assert packet.kiss_code is KissCode.NTSN
    assert session.check(nak.data, packet) == NtsNak()
    session.accept_nak()
    assert session.needs_ke


def test_expired_key_is_refused() -> None:
    cookie_keys = keys(rotation=3600, keep=2)
    contents = CookieContents(15, C2S, S2C)
    cookie = cookie_keys.make(contents, NOW)
    assert len(cookie) == COOKIE_LENGTH
    assert cookie_keys.open(cookie, NOW + 2 * 3600 * ONE_SECOND) == contents
    with pytest.raises(CookieRejected, match="expired"):
        cookie_keys.open(cookie, NOW + 3 * 3600 * ONE_SECOND)
    with pytest.raises(CookieRejected, match="future"):
        cookie_keys.open(cookie, NOW - 3600 * ONE_SECOND)


def test_nak_for_expired_cookie() -> None:
    cookie_keys = keys(rotation=60, keep=1)
    session = negotiated_session(cookie_keys)
    nak = exchange(session, NtsServer(cookie_keys), now=NOW + 600 * ONE_SECOND)
    assert isinstance(nak, NtsNakSent) and nak.reason == "cookie key expired"


def test_tampered_request_gets_nak() -> None:
    cookie_keys = keys()
    session = negotiated_session(cookie_keys)
    request = bytearray(session.protect(header()))
    request[47] ^= 1
    reply = NtsServer(cookie_keys).respond(
        bytes(request), trailer(bytes(request)), reply_header(bytes(request)), NOW
    )
    assert isinstance(reply, NtsNakSent) and "does not verify" in reply.reason


def test_ke_server_refusals() -> None:
    server = KeServerSession(keys())
    outcome = server.receive_data(
        encode_records([Record(0x1234, b"", critical=True), Record.end_of_message()])
    )
    assert isinstance(outcome, KeRefused)
    assert decode_records(outcome.response)[0] == Record.error(ErrorCode.UNRECOGNIZED_CRITICAL_RECORD)
    outcome = KeServerSession(keys()).receive_data(encode_records([Record.end_of_message()]))
    assert isinstance(outcome, KeRefused) and "Next Protocol" in outcome.reason
    outcome = KeServerSession(keys()).receive_data(
        encode_records([Record.next_protocol(0), Record.aead_algorithm(1), Record.end_of_message()])
    )
    assert isinstance(outcome, KeRefused)
    assert [r.record_type for r in decode_records(outcome.response)] == [1, 4, 0]
    outcome = KeServerSession(keys()).receive_data(b"\x80\x01\x00\x03abc" + Record.end_of_message().encode())
    assert isinstance(outcome, KeRefused) and "odd length" in outcome.reason


def test_ke_client_reports_server_error() -> None:
    client = KeClient()
    client.request()
    with pytest.raises(KeFailed, match=r"error 1 \(BAD_REQUEST\)"):
        client.receive_data(encode_records([Record.error(1), Record.end_of_message()]))


def test_ke_client_refuses_incomplete_or_odd_responses() -> None:
    client = KeClient()
    assert client.receive_data(Record.next_protocol(0).encode()) is None
    with pytest.raises(KeFailed, match="before End of Message"):
        client.connection_closed()
    with pytest.raises(KeFailed, match="carries no cookies"):
        KeClient().receive_data(
            encode_records([Record.next_protocol(0), Record.aead_algorithm(15), Record.end_of_message()])
        )
    with pytest.raises(KeFailed, match="did not offer"):
        KeClient().receive_data(
            encode_records([Record.next_protocol(0), Record.aead_algorithm(16), Record.end_of_message()])
        )
    with pytest.raises(KeFailed, match="unrecognised critical"):
        KeClient().receive_data(encode_records([Record(99, b"", critical=True), Record.end_of_message()]))
    # Unknown non-critical records are ignored (§4).
    result = KeClient().receive_data(
        encode_records(
            [
                Record(99, b"x"),
                Record.next_protocol(0),
                Record.aead_algorithm(15),
                Record.new_cookie(os.urandom(100)),
                Record.end_of_message(),
            ]
        )
    )
    assert result is not None and result.port is None
    assert RecordType.NEW_COOKIE == 5


def test_ntp_server_core_serves_nts_and_plain_ntp() -> None:
    from lockstep.ntp.server import NtpServer, ServerState

    cookie_keys = keys()
    core = NtpServer(ServerState.local(3, NOW), nts=NtsServer(cookie_keys))
    session = negotiated_session(cookie_keys)
    request = session.protect(header(77))
    reply = core.respond(request, "127.0.0.1", NOW)
    assert isinstance(reply, bytes) and len(reply) <= len(request)
    packet = Packet.decode(reply)
    assert packet.origin_timestamp == 77 and packet.stratum == 3
    assert isinstance(session.check(reply, packet), NtsAuthenticated)
    plain = core.respond(header(5), "127.0.0.1", NOW)
    assert isinstance(plain, bytes) and len(plain) == 48
    nak = core.respond(NtsClientSession(C2S, S2C, [bytes(104)]).protect(header()), "127.0.0.1", NOW)
    assert isinstance(nak, bytes) and Packet.decode(nak).kiss_code is KissCode.NTSN
    assert core.counters.kiss_sent == 1 and core.nts is not None and core.nts.counters.naks == 1


def test_association_accepts_only_authenticated_replies_and_rekeys_on_nak() -> None:
    from lockstep.ntp.association import Association
    from lockstep.ntp.events import KeyExchangeNeeded, KissReceived, SampleAccepted
    from lockstep.ntp.server import NtpServer, ServerState

    cookie_keys = keys()
    core = NtpServer(ServerState.local(3, NOW), nts=NtsServer(cookie_keys))
    association = Association("s", now=NOW, iburst=False)
    association.nts = negotiated_session(cookie_keys)
    request = association.poll_due(NOW)
    assert request is not None
    reply = core.respond(request, "c", NOW)
    assert isinstance(reply, bytes)
    forged = bytearray(reply)
    forged[32] ^= 0x80  # receive timestamp
    event = association.receive(bytes(forged), NOW)
    assert isinstance(event, PacketDropped) and event.reason is DropReason.NTS
    assert "does not verify" in event.detail
    assert isinstance(association.receive(reply, NOW), SampleAccepted)
    replayed = association.receive(reply, NOW)
    assert isinstance(replayed, PacketDropped) and "no NTS request outstanding" in replayed.message
    # A server that lost its keys answers NTSN; the association then waits for NTS-KE.
    association.next_poll = NOW
    request = association.poll_due(NOW)
    assert request is not None
    nak = NtpServer(ServerState.local(3, NOW), nts=NtsServer(CookieKeys(b"z" * 32))).respond(
        request, "c", NOW
    )
    assert isinstance(nak, bytes)
    # With our unique identifier but another origin timestamp it is not believed.
    forged_nak = nak[:24] + bytes(8) + nak[32:]
    dropped = association.receive(forged_nak, NOW)
    assert isinstance(dropped, PacketDropped) and dropped.reason is DropReason.BOGUS
    assert association.nts.cookies == 7
    assert association.receive(nak, NOW) == KissReceived("s", "NTSN")
    assert association.nts.needs_ke
    # The core asks for NTS-KE at once (and only once), sends nothing until it gets the result,
    # then polls at once with the new cookies.
    assert association.poll_due(NOW) == KeyExchangeNeeded("s")
    later = NOW + 100 * ONE_SECOND
    assert association.poll_due(later) is None
    assert association.counters["waiting for NTS-KE"] == 2
    cookies = [cookie_keys.make(CookieContents(15, C2S, S2C), later) for _ in range(8)]
    association.rekey(C2S, S2C, cookies, 15, later)
    request = association.poll_due(later)
    assert isinstance(request, bytes)
    reply = core.respond(request, "c", later)
    assert isinstance(reply, bytes) and isinstance(association.receive(reply, later), SampleAccepted)


def test_server_and_port_negotiation() -> None:
    client = KeClient(server_hint="ignored.example", port_hint=9)
    server = KeServerSession(keys(), ntp_server="time.example", ntp_port=123)
    assert isinstance(server.receive_data(client.request()), KeAccepted)
    result = client.receive_data(server.respond(C2S, S2C, NOW))
    assert result is not None and result.server == "time.example" and result.port == 123
