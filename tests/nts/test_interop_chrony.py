"""Interop with chrony 4.3: our NTS client against chronyd's NTS server, chronyd against ours."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from lockstep.ntp.aio import clock
from lockstep.ntp.aio.client import query
from lockstep.ntp.aio.nts_ke import key_exchange_blocking
from lockstep.ntp.association import Association
from lockstep.ntp.events import KissReceived, SampleAccepted
from lockstep.ntp.nts.client import NtsClientSession
from lockstep.ntp.wire import Packet
from ntp.ntp_peers import running_chronyd
from nts.nts_peers import free_port, make_certificate, our_nts_server, udp_exchange

pytestmark = pytest.mark.interop


def test_our_client_against_chronyd_nts_server_cookies_and_ntsn(tmp_path: Path) -> None:
    certificate = make_certificate(tmp_path / "pki")
    ntp_port, ke_port = free_port(), free_port(__import__("socket").SOCK_STREAM)
    lines = [
        f"ntsport {ke_port}",
        f"ntsserverkey {certificate.key}",
        f"ntsservercert {certificate.cert}",
        "local stratum 8",
        "allow 127.0.0.1",
    ]
    with running_chronyd(tmp_path / "chronyd", lines, ntp_port) as peer:
        outcome = key_exchange_blocking("127.0.0.1", ke_port, cafile=str(certificate.cert))
        assert outcome.ntp_port == ntp_port and outcome.result.aead == 15
        assert len(outcome.result.cookies) == 8
        result = asyncio.run(query(f"127.0.0.1:{ke_port}", nts=True, cafile=str(certificate.cert)))
        assert result.info.stratum == 8
        assert abs(result.offset) < 0.001
        assert result.port == ntp_port
        serverstats = peer.chronyc("serverstats")
        assert re.search(r"Authenticated NTP packets\s*:\s*[1-9]", serverstats), serverstats

        # Cookies: each reply brings one back; lost replies are made up with placeholders.
        association = Association("chronyd", now=clock.now(), iburst=False)
        association.nts = NtsClientSession(outcome.c2s, outcome.s2c, outcome.result.cookies)
        for lost in (0, 3, 7):
            for _ in range(lost):  # requests whose replies never came back
                association.nts.protect(Packet().encode())
            assert association.nts.cookies == 8 - lost
            association.next_poll = clock.now()
            request = association.poll_due(clock.now())
            assert request is not None
            reply = udp_exchange(ntp_port, request)
            event = association.receive(reply, clock.now())
            assert isinstance(event, SampleAccepted), event
            assert association.nts.cookies == 8

        # A cookie chronyd cannot open: it answers NTS NAK, which we believe (unique id echoed).
        association.nts.rekey(outcome.c2s, outcome.s2c, [bytes(len(outcome.result.cookies[0]))])
        association.next_poll = clock.now()
        request = association.poll_due(clock.now())
        assert request is not None
        event = association.receive(udp_exchange(ntp_port, request), clock.now())
        assert event == KissReceived("chronyd", "NTSN")
        assert association.nts.needs_ke


def _authdata(text: str) -> dict[str, list[str]]:
    """``chronyc -n authdata`` rows by address: Mode KeyID Type KLen Last Atmp NAK Cook CLen."""
    rows = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 10 and fields[1] == "NTS":
            rows[fields[0]] = fields[1:]
    return rows


def test_chronyd_nts_client_against_our_server(tmp_path: Path) -> None:
    certificate = make_certificate(tmp_path / "pki")
    with our_nts_server(certificate, stratum=6) as ours:
        lines = [
            f"server 127.0.0.1 port {ours.ntp_port} nts ntsport {ours.ke_port} iburst minpoll 0 maxpoll 0",
            f"ntstrustedcerts {certificate.cert}",
        ]
        with running_chronyd(tmp_path / "chronyd-client", lines) as peer:
            deadline = time.monotonic() + 30
            sources = authdata = ""
            while time.monotonic() < deadline:
                sources = peer.chronyc("sources")
                authdata = peer.chronyc("authdata")
                row = _authdata(authdata).get("127.0.0.1")
                if row and "^*" in sources and row[7] == "8" and ours.core.counters.replied >= 4:
                    break
                time.sleep(0.5)
            row = _authdata(authdata).get("127.0.0.1")
            assert row is not None, authdata
            mode, _key_id, _type, key_length, _last, attempts, naks, cookies, cookie_length = row
            assert mode == "NTS" and key_length == "256" and cookie_length == "104", authdata
            assert int(cookies) == 8 and int(naks) == 0 and int(attempts) == 0, authdata
            assert re.search(r"^\^\*\s+127\.0\.0\.1", sources, re.M), sources + peer.log()
        assert ours.core.nts is not None
        assert ours.core.nts.counters.authenticated >= 4
        assert ours.ke.counters.served >= 1


def test_chronyd_keeps_its_cookies_across_our_restart_and_rekeys_after_ntsn(tmp_path: Path) -> None:
    """Same master secret after a restart: chronyd's cookies still open, no new NTS-KE. Another
    secret: chronyd gets NTSN (RFC 8915 §5.7), runs NTS-KE again and authenticates again."""
    import os
    import socket

    from lockstep.ntp.nts.cookies import CookieKeys

    certificate = make_certificate(tmp_path / "pki")
    master = os.urandom(32)
    ntp_port, ke_port = free_port(), free_port(socket.SOCK_STREAM)
    ports = {"ntp_port": ntp_port, "ke_port": ke_port}

    def wait_for(condition: object, what: str, peer: object) -> None:
        deadline = time.monotonic() + 30
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {peer.log()}")  # type: ignore[attr-defined]
            time.sleep(0.3)

    lines = [
        f"server 127.0.0.1 port {ntp_port} nts ntsport {ke_port} iburst minpoll 0 maxpoll 0",
        f"ntstrustedcerts {certificate.cert}",
    ]
    with running_chronyd(tmp_path / "chronyd-client", lines) as peer:
        with our_nts_server(certificate, cookie_keys=CookieKeys(master), **ports) as ours:
            nts = ours.core.nts
            assert nts is not None
            wait_for(lambda: nts.counters.authenticated >= 3, "first authenticated polls", peer)
            assert ours.ke.counters.served == 1
        with our_nts_server(certificate, cookie_keys=CookieKeys(master), **ports) as ours:
            nts = ours.core.nts
            assert nts is not None
            wait_for(lambda: nts.counters.authenticated >= 3, "polls after a restart", peer)
            assert nts.counters.naks == 0 and ours.ke.counters.served == 0
        with our_nts_server(certificate, cookie_keys=CookieKeys(os.urandom(32)), **ports) as ours:
            nts = ours.core.nts
            assert nts is not None
            wait_for(lambda: nts.counters.authenticated >= 3, "polls after new keys", peer)
            assert nts.counters.naks >= 1 and ours.ke.counters.served == 1
            row = _authdata(peer.chronyc("authdata")).get("127.0.0.1")
            assert row is not None and row[1] == "2", row  # chronyd's second NTS-KE (its "KeyID")
