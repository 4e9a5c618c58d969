"""Refusals over real sockets: every forged, tampered or malformed input is refused with a
clear reason, and our server keeps serving afterwards (RFC 8915 §4, §5.7, §6)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from OpenSSL import SSL

from lockstep.ntp.aio.client import Monitor, QueryFailed, query
from lockstep.ntp.aio.nts_ke import KeRateLimit, NtsKeError, client_context, key_exchange_blocking
from lockstep.ntp.client import NtpClient
from lockstep.ntp.nts.client import NtsClientSession, NtsNak
from lockstep.ntp.nts.cookies import CookieKeys
from lockstep.ntp.nts.records import ALPN, ErrorCode, Record, RecordType, decode_records, encode_records
from lockstep.ntp.wire import KissCode, Packet
from nts.nts_peers import Certificate, OurNtsServer, UdpProxy, make_certificate, our_nts_server, udp_exchange


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(certificate: Certificate) -> Iterator[OurNtsServer]:
    with our_nts_server(certificate) as ours:
        yield ours


def still_serves(server: OurNtsServer, certificate: Certificate) -> None:
    result = asyncio.run(
        query(f"127.0.0.1:{server.ke_port}", nts=True, cafile=str(certificate.cert), timeout=3)
    )
    assert result.info.stratum == 5


def query_cli(ke_port: int, certificate: Certificate) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lockstep.cli.ntp",
            "ntp",
            "query",
            "--nts",
            f"127.0.0.1:{ke_port}",
            "--ca",
            str(certificate.cert),
            "--timeout",
            "1.5",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@contextlib.contextmanager
def proxied_server(certificate: Certificate, transform: object) -> Iterator[tuple[OurNtsServer, UdpProxy]]:
    """Our server with NTS-KE pointing clients at a proxy in front of the NTP port."""
    from nts.nts_peers import free_port

    ntp_port = free_port()
    with (
        UdpProxy(ntp_port, transform) as proxy,  # type: ignore[arg-type]
        our_nts_server(certificate, ntp_port=ntp_port, advertised_ntp_port=proxy.port) as ours,
    ):
        yield ours, proxy


def test_tampered_authenticator_is_refused_and_the_cli_says_why(certificate: Certificate) -> None:
    def tamper(reply: bytes) -> bytes:
        return reply[:-20] + bytes([reply[-20] ^ 1]) + reply[-19:]

    with proxied_server(certificate, tamper) as (ours, _):
        result = query_cli(ours.ke_port, certificate)
        assert result.returncode != 0
        assert "no authentic reply" in result.stderr
        assert "authenticator does not verify (tampered or forged)" in result.stderr, result.stderr
        assert ours.core.nts is not None and ours.core.nts.counters.authenticated >= 1


def test_wrong_unique_identifier_is_refused(certificate: Certificate) -> None:
    def change_uid(reply: bytes) -> bytes:
        return reply[:52] + bytes([reply[52] ^ 0xFF]) + reply[53:]

    with (
        proxied_server(certificate, change_uid) as (ours, _),
        pytest.raises(QueryFailed, match="unique identifier does not match our request"),
    ):
        asyncio.run(query(f"127.0.0.1:{ours.ke_port}", nts=True, cafile=str(certificate.cert), timeout=1.5))


def test_replayed_reply_is_refused(certificate: Certificate) -> None:
    first: list[bytes] = []

    def replay(reply: bytes) -> bytes:
        if not first:
            first.append(reply)
        return first[0]

    with proxied_server(certificate, replay) as (ours, _):
        target = f"127.0.0.1:{ours.ke_port}"
        asyncio.run(query(target, nts=True, cafile=str(certificate.cert), timeout=2))  # the genuine reply
        with pytest.raises(QueryFailed, match=r"refused: NTS: unique identifier does not match .*replayed"):
            asyncio.run(query(target, nts=True, cafile=str(certificate.cert), timeout=1.5))


def test_unknown_cookie_gets_ntsn(server: OurNtsServer, certificate: Certificate) -> None:
    from lockstep.ntp.aio import clock

    key_id = server.ke.cookie_keys.key_id(clock.now()).to_bytes(4, "big")  # a current key id, forged body
    session = NtsClientSession(os.urandom(32), os.urandom(32), [key_id + os.urandom(100)])
    request = session.protect(Packet(transmit_timestamp=99).encode())
    reply = udp_exchange(server.ntp_port, request)
    packet = Packet.decode(reply)
    assert packet.kiss_code is KissCode.NTSN and packet.origin_timestamp == 99
    assert len(reply) <= len(request)
    assert isinstance(session.check(reply, packet), NtsNak)
    session.accept_nak()
    assert session.needs_ke
    assert server.core.nts is not None
    assert server.core.nts.counters.nak_reasons == {"cookie does not verify under our key": 1}
    still_serves(server, certificate)


def test_expired_server_key_gets_ntsn(certificate: Certificate) -> None:
    keys = CookieKeys(os.urandom(32), rotation=1, keep=0)
    with our_nts_server(certificate, cookie_keys=keys) as ours:
        outcome = key_exchange_blocking("127.0.0.1", ours.ke_port, cafile=str(certificate.cert))
        session = NtsClientSession(outcome.c2s, outcome.s2c, outcome.result.cookies)
        time.sleep(2.1)  # two rotations: the key that made the cookies is gone
        request = session.protect(Packet(transmit_timestamp=7).encode())
        packet = Packet.decode(udp_exchange(ours.ntp_port, request))
        assert packet.kiss_code is KissCode.NTSN
        assert ours.core.nts is not None
        assert ours.core.nts.counters.nak_reasons == {"cookie key expired": 1}


def test_monitor_runs_ke_again_after_ntsn(certificate: Certificate) -> None:
    with our_nts_server(certificate) as ours:
        client = NtpClient()
        events: list[object] = []

        async def main() -> Monitor:
            runner = Monitor(client, cafile=str(certificate.cert), on_event=events.append)
            await runner.add_source(f"127.0.0.1:{ours.ke_port}", nts=True, minpoll=0, maxpoll=0)
            stop = asyncio.Event()
            task = asyncio.ensure_future(runner.run(stop))
            await asyncio.sleep(2.5)
            # The server loses its keys (a restart without the master secret): old cookies fail.
            fresh = CookieKeys(os.urandom(32))
            assert ours.core.nts is not None
            ours.core.nts.cookie_keys = fresh
            ours.ke.cookie_keys = fresh
            await asyncio.sleep(4.5)
            stop.set()
            await task
            return runner

        runner = asyncio.run(main())
        assert ours.core.nts is not None
        assert ours.core.nts.counters.naks >= 1
        assert runner.ke_count[f"127.0.0.1:{ours.ke_port}"] == 2
        association = client.associations[f"127.0.0.1:{ours.ke_port}"]
        assert association.counters.get("kiss NTSN", 0) >= 1
        assert association.nts is not None and association.nts.cookies == 8
        assert association.counters.get("accepted", 0) >= 4


def test_bad_alpn_is_refused(server: OurNtsServer, certificate: Certificate) -> None:
    with pytest.raises(NtsKeError, match="did not negotiate ALPN ntske/1"):
        key_exchange_blocking("127.0.0.1", server.ke_port, cafile=str(certificate.cert), alpn=b"http/1.1")
    time.sleep(0.2)
    assert server.ke.counters.refused.get("client did not negotiate ALPN ntske/1") == 1
    still_serves(server, certificate)


def test_untrusted_certificate_is_refused(server: OurNtsServer, tmp_path: Path) -> None:
    other = make_certificate(tmp_path / "other")
    with pytest.raises(NtsKeError, match="certificate verify failed"):
        key_exchange_blocking("127.0.0.1", server.ke_port, cafile=str(other.cert))


def raw_ke(port: int, certificate: Certificate, payload: bytes) -> list[Record]:
    """Send ``payload`` as the NTS-KE request over TLS; return the records the server sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(None)  # blocking: pyOpenSSL raises WantRead on sockets with timeouts
    conn = SSL.Connection(client_context(str(certificate.cert)), sock)
    conn.set_alpn_protos([ALPN])
    conn.set_connect_state()
    try:
        conn.do_handshake()
        conn.sendall(payload)
        data = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except (SSL.ZeroReturnError, SSL.SysCallError):
                break
            if not chunk:
                break
            data += chunk
        return decode_records(data)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (
            encode_records([Record(0x4321, b"", critical=True), Record.end_of_message()]),
            ErrorCode.UNRECOGNIZED_CRITICAL_RECORD,
        ),
        (encode_records([Record.aead_algorithm(15), Record.end_of_message()]), ErrorCode.BAD_REQUEST),
        (b"\x80\x01\x00\x03\x00\x00\x00" + Record.end_of_message().encode(), ErrorCode.BAD_REQUEST),
        (
            encode_records(
                [
                    Record.next_protocol(0),
                    Record.aead_algorithm(15),
                    Record.new_cookie(b"x" * 8),
                    Record.end_of_message(),
                ]
            ),
            ErrorCode.BAD_REQUEST,
        ),
        (Record(5, bytes(20000)).encode(), ErrorCode.BAD_REQUEST),
    ],
    ids=["unknown-critical", "no-next-protocol", "odd-length", "client-cookie", "oversized"],
)
def test_malformed_ke_records_get_an_error_record(
    server: OurNtsServer, certificate: Certificate, payload: bytes, code: ErrorCode
) -> None:
    records = raw_ke(server.ke_port, certificate, payload)
    assert records[0] == Record.error(code)
    assert records[-1].record_type == RecordType.END_OF_MESSAGE
    still_serves(server, certificate)


def test_truncated_ke_request_and_early_close_do_not_hurt(
    server: OurNtsServer, certificate: Certificate
) -> None:
    sock = socket.create_connection(("127.0.0.1", server.ke_port), timeout=5)
    sock.settimeout(None)
    conn = SSL.Connection(client_context(str(certificate.cert)), sock)
    conn.set_alpn_protos([ALPN])
    conn.set_connect_state()
    conn.do_handshake()
    conn.sendall(Record.next_protocol(0).encode()[:3])
    sock.close()
    with socket.create_connection(("127.0.0.1", server.ke_port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not even TLS
        with contextlib.suppress(OSError):
            raw.recv(100)
    time.sleep(0.3)
    refused = server.ke.counters.refused
    assert refused.get("client closed before End of Message") == 1
    assert refused.get("not a TLS handshake") == 1  # closed in the waiting room, no slot taken
    still_serves(server, certificate)


def test_ke_rate_limit(certificate: Certificate) -> None:
    with our_nts_server(certificate, ke_rate_limit=KeRateLimit(per_second=0.01, burst=2)) as ours:
        for _ in range(2):
            key_exchange_blocking("127.0.0.1", ours.ke_port, cafile=str(certificate.cert))
        with pytest.raises(NtsKeError):
            key_exchange_blocking("127.0.0.1", ours.ke_port, cafile=str(certificate.cert), timeout=2)
        assert ours.ke.counters.refused == {"rate limited": 1}


def test_ntp_rate_limit_applies_to_nts_requests_with_an_authenticated_rate_kiss(
    certificate: Certificate,
) -> None:
    from lockstep.ntp.aio import clock
    from lockstep.ntp.association import Association
    from lockstep.ntp.events import KissReceived, SampleAccepted
    from lockstep.ntp.server import RateLimit

    with our_nts_server(certificate, rate_limit=RateLimit(average_rate=0.01, burst=3)) as ours:
        outcome = key_exchange_blocking("127.0.0.1", ours.ke_port, cafile=str(certificate.cert))
        association = Association("ours", now=clock.now(), iburst=False)
        association.nts = NtsClientSession(outcome.c2s, outcome.s2c, outcome.result.cookies)
        events = []
        for _ in range(6):
            association.next_poll = clock.now()
            request = association.poll_due(clock.now())
            assert request is not None
            with contextlib.suppress(TimeoutError):
                events.append(
                    association.receive(udp_exchange(ours.ntp_port, request, timeout=0.5), clock.now())
                )
        # Three answers, then one RATE kiss that is NTS-authenticated (so an NTS client may
        # honour it, RFC 8915 §5.7) and brings a replacement cookie; the rest is dropped.
        assert [type(e) for e in events] == [SampleAccepted] * 3 + [KissReceived]
        assert events[3] == KissReceived("ours", "RATE")
        assert association.minpoll > 0 and association.nts.cookies == 6
        assert ours.core.counters.kiss_sent == 1
        assert ours.core.counters.dropped.get("rate limited") == 2
