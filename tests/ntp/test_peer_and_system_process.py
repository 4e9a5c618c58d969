"""The peer process's header checks (RFC 5905 §9.2, A.5.1.1) and the root dispersion (§11.2.3)."""

from __future__ import annotations

import random

from lockstep.ntp.association import Association
from lockstep.ntp.client import NtpClient
from lockstep.ntp.constants import MAXSTRAT, MINDISP
from lockstep.ntp.events import PacketDropped
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import ONE_SECOND, from_seconds, short_to_seconds, to_timestamp
from lockstep.ntp.wire import LeapIndicator, Mode, Packet
from ntp.ntp_simulator import Path, Simulation, local_server

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
