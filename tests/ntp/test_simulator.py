"""The whole client (filter, selection, cluster, combine, discipline) in a simulated network."""

from __future__ import annotations

import ipaddress
import itertools
import random

from lockstep.ntp.client import NtpClient, SourceMark
from lockstep.ntp.events import (
    ClockStepped,
    KissReceived,
    SourceDemobilized,
    SystemPeerChanged,
)
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from ntp.ntp_simulator import Path, SimServer, Simulation, local_server


def jittery(delay: float, jitter: float, loss: float = 0.0) -> dict[str, Path]:
    return {
        "to_server": Path(delay, jitter, loss),
        "to_client": Path(delay, jitter, loss),
    }


def test_falseticker_among_four_is_never_selected_and_offset_converges() -> None:
    client = NtpClient(rng=random.Random(7))
    sim = Simulation(client, seed=7, client_offset=-0.040)  # client 40 ms behind
    for name in ("a", "b", "c"):
        sim.add_server(local_server(name, 0.0, **jittery(0.010, 0.002, loss=0.05)))
    sim.add_server(local_server("liar", 0.250, **jittery(0.010, 0.002)))
    sim.run(1800)
    peers = {e.source for e in sim.events if isinstance(e, SystemPeerChanged)}
    assert "liar" not in peers
    assert peers & {"a", "b", "c"}
    marks = {row.name: row.mark for row in client.sources(sim.client_clock())}
    assert marks["liar"] is SourceMark.FALSETICKER
    assert client.system is not None
    # The truth is +40 ms (servers are right, client is behind); jitter is 2 ms per leg.
    assert abs(client.system.offset - 0.040) < 0.002


def test_discipline_converges_despite_jitter_loss_and_frequency_error() -> None:
    client = NtpClient(discipline=True, rng=random.Random(3))
    sim = Simulation(client, seed=3, client_offset=0.080, client_frequency_error=20e-6)
    for name in ("a", "b", "c", "d"):
        sim.add_server(local_server(name, 0.0, **jittery(0.005, 0.001, loss=0.1)))
    sim.run(4 * 3600)
    assert client.steps == 0  # 80 ms is under the 128 ms step threshold: slewed
    late_errors = [abs(err) for t, err in sim.errors if t > 3 * 3600]
    assert late_errors and max(late_errors) < 0.003
    assert abs(client.frequency + 20e-6) < 5e-6  # it learned the frequency error


def test_large_initial_offset_is_stepped_once() -> None:
    client = NtpClient(discipline=True, rng=random.Random(5))
    sim = Simulation(client, seed=5, client_offset=-3.5)
    for name in ("a", "b", "c"):
        sim.add_server(local_server(name, 0.0, **jittery(0.004, 0.001)))
    sim.run(600)
    steps = [e for e in sim.events if isinstance(e, ClockStepped)]
    assert len(steps) == 1
    assert abs(steps[0].offset - 3.5) < 0.005
    assert abs(sim.client_error) < 0.002


def test_asymmetry_biases_offset_by_half_the_difference() -> None:
    client = NtpClient(rng=random.Random(9))
    sim = Simulation(client, seed=9)
    sim.add_server(
        local_server("a", 0.0, to_server=Path(0.012), to_client=Path(0.004))  # 8 ms asymmetry
    )
    sim.run(120)
    assert client.system is not None
    # theta = ((T2 - T1) + (T3 - T4)) / 2 = (12 ms - 4 ms) / 2: the error the RFC warns about.
    assert abs(client.system.offset - 0.004) < 1e-5


def test_kiss_rate_is_honoured() -> None:
    client = NtpClient(rng=random.Random(11))
    sim = Simulation(client, seed=11)
    strict = NtpServer(
        ServerState.local(stratum=2, now=0),
        rate_limit=RateLimit(average_rate=1 / 32, burst=3, kod_interval=0.0),
    )
    server = SimServer("strict", strict)
    sim.add_server(server)
    sim.run(1200)
    kisses = [e for e in sim.events if isinstance(e, KissReceived)]
    assert kisses and kisses[0].code == "RATE"
    after = [t for t in server.requests if t > 60]
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert gaps and min(gaps) >= 32 * 0.9  # never faster than the server asked (jittered poll)
    assert strict.dropped.get("rate limited", 0) <= 2  # the client stopped provoking it


def test_kiss_deny_demobilizes_the_source() -> None:
    client = NtpClient(rng=random.Random(13))
    sim = Simulation(client, seed=13)
    denying = NtpServer(ServerState.local(stratum=2, now=0), deny=[ipaddress.ip_network("0.0.0.0/0")])
    server = SimServer("denying", denying)
    sim.add_server(server)
    sim.add_server(local_server("good"))
    sim.run(300)
    assert len(server.requests) == 1  # one request, one kiss, silence afterwards
    assert any(isinstance(e, SourceDemobilized) for e in sim.events)


def test_selection_works_across_the_2036_era_rollover() -> None:
    client = NtpClient(rng=random.Random(17))
    base = (1 << 64) - (300 << 32)  # five minutes before 2036-02-07 06:28:16 UTC
    sim = Simulation(client, seed=17, base=base, client_offset=-0.020)
    for name in ("a", "b", "c"):
        sim.add_server(local_server(name, 0.0, **jittery(0.003, 0.001)))
    sim.run(900)  # crosses into era 1
    assert client.system is not None
    assert abs(client.system.offset - 0.020) < 0.002
