"""The peer process's header checks (RFC 5905 §9.2, A.5.1.1) and the root dispersion (§11.2.3)."""

from __future__ import annotations

import random

from lockstep.ntp.association import Association
from lockstep.ntp.client import NtpClient
from lockstep.ntp.constants import MAXDISP, MAXDIST, MAXSTRAT, MINDISP
from lockstep.ntp.events import PacketDropped
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import ONE_SECOND, from_seconds, short_to_seconds, to_timestamp
from lockstep.ntp.wire import LeapIndicator, Mode, Packet, reference_id_for_address
from ntp.ntp_simulator import Path, SimServer, Simulation, local_server

NOW = 3_973_000_000 << 32


def reply_to(request: bytes, **fields: object) -> bytes:
    """A synchronised stratum-2 server's reply to ``request``, with ``fields`` changed."""
    values: dict[str, object] = {
        "leap": LeapIndicator.NO_WARNING,
        "mode": Mode.SERVER,
        "stratum": 2,
        "precision": -20,
        "reference_id": 0x7F000001,
        "reference_timestamp": to_timestamp(NOW - 60 * ONE_SECOND),
        "origin_timestamp": int.from_bytes(request[40:48], "big"),
        "receive_timestamp": to_timestamp(NOW),
        "transmit_timestamp": to_timestamp(NOW),
    }
    values.update(fields)
    return Packet(**values).encode()  # type: ignore[arg-type]


def test_a_reference_time_later_than_the_transmit_time_is_bad_header_data() -> None:
    association = Association("s", now=NOW, rng=random.Random(1))
    request = association.poll_due(NOW)
    assert request is not None
    future = to_timestamp(NOW + 10 * ONE_SECOND)
    event = association.receive(reply_to(request, reference_timestamp=future), NOW + ONE_SECOND // 1000)
    assert isinstance(event, PacketDropped)
    assert event.reason == "server reference time is later than its transmit time"
    assert association.filter.time is None  # no sample taken from it


def test_a_stratum_0_reply_that_is_no_rate_deny_or_rstr_kiss_is_an_unsynchronised_server() -> None:
    # ntpd answers "INIT" while unsynchronised, chronyd a zero reference id: both stratum 0.
    for reference_id in (int.from_bytes(b"INIT", "big"), 0):
        association = Association("s", now=NOW, rng=random.Random(2))
        request = association.poll_due(NOW)
        assert request is not None
        reply = reply_to(request, leap=LeapIndicator.UNSYNCHRONIZED, stratum=0, reference_id=reference_id)
        event = association.receive(reply, NOW + ONE_SECOND // 1000)
        assert isinstance(event, PacketDropped) and event.reason == "server unsynchronised"
        assert association.reach == 1  # it answered: reachable, not fit
        assert association.server is not None and association.server.stratum == MAXSTRAT


def test_our_unsynchronised_server_reads_as_unsynchronised_to_our_client() -> None:
    association = Association("s", now=NOW, rng=random.Random(3))
    request = association.poll_due(NOW)
    assert request is not None
    reply = NtpServer(ServerState.unsynchronized()).respond(request, "127.0.0.1", NOW)
    assert isinstance(reply, bytes)
    event = association.receive(reply, NOW + ONE_SECOND // 1000)
    assert isinstance(event, PacketDropped) and event.reason == "server unsynchronised"


def test_root_dispersion_grows_by_at_least_mindisp_per_hop() -> None:
    # A stratum-1 source announcing root dispersion 0, 50 µs away with no jitter: the filter
    # dispersion, jitter and offset are all far below MINDISP (they gave 0.00724 s before).
    client = NtpClient(rng=random.Random(4))
    sim = Simulation(client, seed=4)
    sim.add_server(local_server("primary", to_server=Path(0.00005), to_client=Path(0.00005)))
    sim.run(300)
    system = client.system
    assert system is not None and system.stratum == 2
    assert system.root_dispersion >= MINDISP
    # And a server serving these system variables announces at least that much.
    served = NtpServer(
        ServerState(
            system.leap,
            system.stratum,
            -20,
            system.root_delay,
            system.root_dispersion,
            system.reference_id,
            system.reference_time,
        )
    )
    request = bytes([0x23]) + bytes(47)
    reply = served.respond(request, "127.0.0.1", system.reference_time + from_seconds(0.5))
    assert isinstance(reply, bytes)
    assert short_to_seconds(Packet.decode(reply).root_dispersion) >= MINDISP


def far_server(name: str, root_dispersion: float) -> SimServer:
    """A stratum-1 server announcing ``root_dispersion`` seconds, otherwise perfect."""
    state = ServerState(LeapIndicator.NO_WARNING, 1, -20, 0.0, root_dispersion, 0x47505300, 0, True)
    return SimServer(name, NtpServer(state))


def test_a_source_beyond_maxdist_is_sampled_but_never_selected() -> None:
    # A.5.1.1 packet() drops a reply only at root distance MAXDISP (16 s); A.5.5.2 fit() keeps a
    # source beyond MAXDIST out of selection. So its samples are kept (they count the moment its
    # distance falls) while the sources near us are the ones selected (two of three are fit: a
    # majority, which selection asks for).
    client = NtpClient(rng=random.Random(5))
    sim = Simulation(client, seed=5)
    sim.add_server(far_server("far", root_dispersion=3.0))
    sim.add_server(local_server("near"))
    sim.add_server(local_server("nearby"))
    sim.run(120)
    far = client.associations["far"]
    assert far.reach and far.filter.time is not None  # sampled: 3 s is under MAXDISP
    assert far.root_distance(sim.client_clock()) > MAXDIST
    assert client.system_peer in {"near", "nearby"}
    assert "far" not in {candidate.name for candidate in client.candidates(sim.client_clock())}


def test_a_reply_announcing_a_root_distance_of_maxdisp_is_invalid_header_data() -> None:
    association = Association("s", now=NOW, rng=random.Random(6))
    request = association.poll_due(NOW)
    assert request is not None
    reply = reply_to(request, root_dispersion=int(MAXDISP * 65536))
    event = association.receive(reply, NOW + ONE_SECOND // 1000)
    assert isinstance(event, PacketDropped) and event.reason == "server root distance exceeds MAXDISP"
    assert association.filter.time is None


def follower(name: str, reference_id: int) -> SimServer:
    """A stratum-2 server synchronised to the server whose reference id is ``reference_id``."""
    state = ServerState(LeapIndicator.NO_WARNING, 2, -20, 0.001, 0.001, reference_id, 0, True)
    return SimServer(name, NtpServer(state))


def test_a_source_synchronised_to_us_or_to_our_system_peer_is_not_fit() -> None:
    # A.5.5.2 fit(): "a loop error occurs if the remote peer is synchronized to the local peer
    # or the remote peer is synchronized to the current system peer" (refid == dstaddr, refid
    # == s.refid). Selecting either would feed our own time, or our peer's again, back to us.
    client = NtpClient(rng=random.Random(7))
    sim = Simulation(client, seed=7)
    primary = reference_id_for_address("192.0.2.1")
    ours = reference_id_for_address("198.51.100.7")
    sim.add_server(local_server("primary"))
    client.associations["primary"].reference_id = primary
    sim.add_server(follower("follows us", ours))
    client.associations["follows us"].local_reference_id = ours
    sim.add_server(follower("follows our peer", primary))
    sim.add_server(follower("independent", reference_id_for_address("203.0.113.9")))
    sim.add_server(follower("independent too", reference_id_for_address("203.0.113.10")))
    sim.run(200)
    assert client.system_peer == "primary"
    assert client.system is not None and client.system.reference_id == primary
    fit = {candidate.name for candidate in client.candidates(sim.client_clock())}
    assert fit == {"primary", "independent", "independent too"}


def test_a_loopback_reference_id_is_no_loop() -> None:
    # Reference ids carry no port: servers on one host all look like 127.0.0.1 (ntpd exempts
    # it too), so a follower of another local server stays fit.
    client = NtpClient(rng=random.Random(8))
    sim = Simulation(client, seed=8)
    loopback = reference_id_for_address("127.0.0.1")
    for name in ("one", "two", "three"):
        sim.add_server(follower(name, loopback))
        client.associations[name].reference_id = loopback
        client.associations[name].local_reference_id = loopback
    sim.run(200)
    assert client.system_peer is not None
    assert len(client.candidates(sim.client_clock())) == 3
