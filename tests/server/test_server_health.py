"""Health, readiness and Prometheus metrics, as a load balancer and a monitoring system see them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from helpers_linking import companion, link_one, primary
from helpers_messaging import make_account, messengers, shown

from lockstep.client.companion import LinkNotCompleted

pytestmark = pytest.mark.anyio


async def test_healthz_checks_the_database_and_readyz_turns_away_while_draining(live_server) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "database": "ok"}  # no Redis configured: not checked
        assert (await http.get("/readyz")).status_code == 200
        live_server.services.draining = True  # what SIGTERM does, for drain_seconds
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "draining"}
        assert (await http.get("/healthz")).status_code == 200


def _sample(metrics: str, name: str) -> float:
    """The value of one sample line (``name`` includes its labels)."""
    values = [line.split()[-1] for line in metrics.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} not in /metrics"
    return float(values[0])


async def test_metrics_count_devices_messages_link_flows_and_latency(live_server, tmp_path: Path) -> None:
    async with (
        httpx.AsyncClient(base_url=live_server.url) as http,
        primary(live_server.url, tmp_path / "p") as phone,
    ):
        laptop = await link_one(live_server.url, phone, tmp_path / "c")
        async with companion(live_server.url, tmp_path / "c2") as run:
            code = await run.next_code()
            await phone.inspect(code)
            await phone.decline(code)
            with pytest.raises(LinkNotCompleted):
                await run.result()
        async with companion(live_server.url, tmp_path / "c3") as run:
            await run.next_code()  # shown, then the page closes
        await asyncio.sleep(0.2)
        await http.get("/healthz")
        metrics = (await http.get("/metrics")).text
        assert _sample(metrics, "lockstep_connected_devices") == 2
        assert _sample(metrics, "lockstep_link_flows_started_total") == 3
        assert _sample(metrics, 'lockstep_link_flows_total{outcome="granted"}') == 1
        assert _sample(metrics, 'lockstep_link_flows_total{outcome="declined"}') == 1
        assert _sample(metrics, 'lockstep_link_flows_total{outcome="abandoned"}') == 1
        assert _sample(metrics, 'lockstep_link_flows_total{outcome="idle"}') == 0
        assert _sample(metrics, 'lockstep_request_seconds_count{op="link.approve"}') == 1
        assert _sample(metrics, 'lockstep_http_request_seconds_count{route="/healthz"}') == 1
        await laptop.close()
        await asyncio.sleep(0.2)
        metrics = (await http.get("/metrics")).text
        assert _sample(metrics, "lockstep_connected_devices") == 1


async def test_metrics_count_messages_queued_and_delivered(live_server, tmp_path: Path) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir, bob.companion_dir) as (a, b, b2):
        await a.send("bob", "hello")  # one copy each for bob's two devices and alice's laptop
        await b.receive(until=shown, wait=5)
        await b2.receive(until=shown, wait=5)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        metrics = (await http.get("/metrics")).text
    assert _sample(metrics, "lockstep_messages_queued_total") >= 3
    assert _sample(metrics, "lockstep_messages_delivered_total") >= 2
