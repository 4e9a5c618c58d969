"""NTS-KE under connection floods (RFC 8915 §4): a peer that has not sent its TLS ClientHello
never holds a session slot, one address holds only a few slots, and legitimate clients are
served while the flood goes on. Bounded floods on loopback from several 127.0.0.x addresses."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from lockstep.ntp.aio.nts_ke import PREEMPTED, KeRateLimit, key_exchange_blocking
from nts.ke_flood import Flood, client_hello, legitimate_exchanges, loopback_addresses
from nts.nts_peers import Certificate, OurNtsServer, make_certificate, our_nts_server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(certificate: Certificate) -> Iterator[OurNtsServer]:
    """Our server with the limits `lockstep ntp serve` uses, but a short ClientHello deadline."""
    with our_nts_server(certificate, ke_rate_limit=KeRateLimit(), ke_hello_timeout=0.5) as ours:
        yield ours


@contextlib.contextmanager
def stalled_hellos(server: OurNtsServer, cafile: str, count: int, source: str) -> Iterator[None]:
    """``count`` connections from ``source`` that send a genuine ClientHello, then nothing."""
    hello = client_hello(cafile)
    with contextlib.ExitStack() as stack:
        for _ in range(count):
            sock = stack.enter_context(
                socket.create_connection(("127.0.0.1", server.ke_port), timeout=5, source_address=(source, 0))
            )
            sock.sendall(hello)
        yield


def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Whether ``condition`` holds within ``timeout`` seconds (the server counts on its threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ended the connection (a close with unread data arrives as a reset)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_silent_flood_does_not_starve_legitimate_clients(certificate: Certificate) -> None:
    """Sixteen addresses each open a connection every 100 ms and send nothing (the review's
    attack, which kept all 32 slots busy); ten other addresses run 40 key exchanges meanwhile.

    Run: .venv/bin/pytest -s tests/nts/test_ke_flood.py -k silent_flood   (prints the figure)
    """
    with our_nts_server(certificate, ke_rate_limit=KeRateLimit()) as ours:  # every default
        cafile = str(certificate.cert)
        with Flood(ours.ke_port, loopback_addresses(10, 16), interval=0.1, hold=6.0) as flood:
            time.sleep(1.0)  # the flood is in full swing before the first legitimate client
            outcomes = legitimate_exchanges(ours.ke_port, cafile, loopback_addresses(100, 10), attempts=40)
        print(f"\nunder a flood of {flood.opened} silent connections: {outcomes.summary()}")
        refused = ours.ke.counters.refused
        assert refused.get("no ClientHello within 2 s", 0) >= 16, refused  # the flood was there...
        assert refused.get("rate limited", 0) > 0, refused
        assert outcomes.success_rate >= 0.95, (outcomes.summary(), outcomes.failures[:3], refused)
        assert eventually(lambda: ours.ke.counters.served == len(outcomes.latencies))  # ...took no slot


def test_stalled_handshakes_from_40_addresses_do_not_starve_legitimate_clients(
    certificate: Certificate,
) -> None:
    """Forty addresses each send a genuine ClientHello and then nothing, once a second (within
    the per-address rate limit): with the 2 s handshake deadline alone they kept the 32 slots
    busy and legitimate clients got through 1 time in 20 (the re-review). A session that stalls
    while others wait now gives its slot up, and addresses that stalled wait behind the others.

    Run: .venv/bin/pytest -s tests/nts/test_ke_flood.py -k 40_addresses   (prints the figure)
    """
    with our_nts_server(certificate, ke_rate_limit=KeRateLimit()) as ours:  # every default
        cafile = str(certificate.cert)
        flooders = [f"127.0.1.{n}" for n in range(1, 41)]
        with Flood(ours.ke_port, flooders, interval=1.0, hold=6.0, payload=client_hello(cafile)) as flood:
            time.sleep(2.0)  # the slots are all taken before the first legitimate client
            outcomes = legitimate_exchanges(ours.ke_port, cafile, loopback_addresses(100, 10), attempts=40)
        print(f"\nunder {flood.opened} stalled ClientHellos from 40 addresses: {outcomes.summary()}")
        refused = ours.ke.counters.refused
        assert refused.get(PREEMPTED, 0) > 0, refused  # the flood took slots, and gave them up
        assert outcomes.success_rate >= 0.95, (outcomes.summary(), outcomes.failures[:3], refused)


def test_silent_and_dribbling_connections_are_closed_at_the_hello_deadline(
    server: OurNtsServer,
) -> None:
    hello_prefix = b"\x16\x03\x01\x02\x00\x01"  # a TLS handshake record header, then nothing more
    with (
        socket.create_connection(("127.0.0.1", server.ke_port), timeout=5) as silent,
        socket.create_connection(("127.0.0.1", server.ke_port), timeout=5) as dribbling,
    ):
        dribbling.sendall(hello_prefix)
        began = time.monotonic()
        assert closed_by_server(silent)
        assert closed_by_server(dribbling)
        assert 0.3 < time.monotonic() - began < 3.0  # ...at the 0.5 s deadline
    assert server.ke.counters.refused == {"no ClientHello within 0.5 s": 2}
    assert server.ke.counters.served == 0


def test_not_tls_is_closed_at_once(server: OurNtsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.ke_port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
        began = time.monotonic()
        assert closed_by_server(raw)
        assert time.monotonic() - began < 0.4  # before the ClientHello deadline
    assert server.ke.counters.refused == {"not a TLS handshake": 1}


def test_one_address_holds_at_most_its_share_of_slots(certificate: Certificate) -> None:
    """Four connections from one address send a genuine ClientHello and stall; with 4 slots, 2
    per address, the other two wait, and a client from another address is still served."""
    limits = KeRateLimit(max_sessions=4, max_sessions_per_address=2)
    with our_nts_server(certificate, ke_rate_limit=limits, ke_hello_timeout=3.0) as ours:
        cafile = str(certificate.cert)
        with stalled_hellos(ours, cafile, 4, "127.0.0.60"):
            assert eventually(lambda: ours.ke.sessions == 2)
            time.sleep(0.2)  # time for a third session to start, were the cap not there
            assert ours.ke.sessions == 2
            key_exchange_blocking("127.0.0.1", ours.ke_port, cafile=cafile, timeout=3, source="127.0.0.61")
            assert eventually(lambda: ours.ke.counters.served == 1)  # counted once the session ends


def test_a_stalled_session_gives_its_slot_to_a_waiting_client(certificate: Certificate) -> None:
    """Both slots held by ClientHello-then-silence and a 3 s handshake deadline: a client from
    another address is still served within about the 0.5 s preemption age, not after 3 s."""
    limits = KeRateLimit(max_sessions=2, max_sessions_per_address=2)
    with our_nts_server(certificate, ke_rate_limit=limits, ke_hello_timeout=3.0) as ours:
        cafile = str(certificate.cert)
        with stalled_hellos(ours, cafile, 2, "127.0.0.70"):
            assert eventually(lambda: ours.ke.sessions == 2)
            began = time.monotonic()
            key_exchange_blocking("127.0.0.1", ours.ke_port, cafile=cafile, timeout=3, source="127.0.0.71")
            assert time.monotonic() - began < 1.5  # one stalled session made room for it:
            assert eventually(lambda: ours.ke.counters.refused.get(PREEMPTED, 0) == 1)
