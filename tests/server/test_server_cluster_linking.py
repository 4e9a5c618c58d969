"""Linking when the companion and the primary are connected to different instances (issue 10):
real ``lockstep serve`` processes sharing one database and one Redis, plus two in-process instances on
one fake clock for what only time shows (codes rotating while a primary elsewhere holds a claim)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from helpers_linking import companion, link_one, primary

from lockstep.client.connection import ServerConnection
from lockstep.client.errors import ServerRefused
from lockstep.client.session import DeviceSession
from lockstep.client.state import DeviceState
from lockstep.link.encoding import b64u_encode
from lockstep.server.link_sessions import SCHEDULE_MS
from lockstep_cluster import cluster
from pg_server import PostgresServer
from redis_server import RedisServer

pytestmark = pytest.mark.anyio


async def test_codes_rotate_on_the_companions_instance_while_a_primary_on_another_holds_a_claim(
    redis_pair, tmp_path: Path
) -> None:
    a, b = redis_pair
    async with primary(b.url, tmp_path / "phone") as phone, companion(a.url, tmp_path / "laptop") as run:
        first = await run.next_code()
        a.clock.advance(SCHEDULE_MS[0])  # the first code expires: instance A shows the second
        second = await run.next_code()
        with pytest.raises(ServerRefused) as refused:
            await phone.inspect(first)
        assert refused.value.code == "ref_expired"
        await phone.inspect(second)  # claimed through instance B: A's rotation pauses
        await asyncio.wait_for(run.scanned.wait(), 5)
        a.clock.advance(SCHEDULE_MS[1] + 10_000)  # past the second code's own expiry
        await asyncio.sleep(0.3)
        assert run.codes.empty(), "a claimed code must not be replaced while the person decides"
        device_id = await phone.approve(second, "Laptop")
        linked = await run.result()
        assert linked.state.device_id == device_id
        await linked.close()


async def test_a_companion_on_one_instance_links_through_a_primary_on_another(
    tmp_path: Path, redis: RedisServer, postgres: PostgresServer
) -> None:
    with cluster(tmp_path, redis, postgres, 3) as servers:
        async with primary(servers.url(1), tmp_path / "phone") as phone:
            first = await link_one(servers.url(0), phone, tmp_path / "laptop", "Laptop")
            assert first.state.origin == servers.origin
            # A second companion on the third instance: the first hears of it through Redis.
            second = await link_one(servers.url(2), phone, tmp_path / "desktop", "Desktop")
            event = await first.connection.next_event(timeout=5)
            assert event["event"] == "devices.changed"
            assert event["change"]["device_id"] == second.state.device_id
            listed = await phone.refresh()
            online = {d["device_id"]: d["online"] for d in listed["devices"]}
            assert online == {
                phone.state.device_id: True,
                first.state.device_id: True,
                second.state.device_id: True,
            }

            # Unlinking on instance B closes the laptop's socket on instance A at once.
            await phone.unlink(first.state.device_id)
            event = await first.connection.next_event(timeout=3)
            assert event == {"event": "device.unlinked", "device_id": first.state.device_id}
            with pytest.raises(Exception, match="closed"):
                await first.connection.next_event(timeout=3)
            await second.close()


async def test_a_rate_limit_holds_across_instances(
    tmp_path: Path, redis: RedisServer, postgres: PostgresServer
) -> None:
    with cluster(tmp_path, redis, postgres, 2) as servers:
        # link.start: 20 a minute per address. 30 sockets, 15 on each instance (under the cap on
        # unauthenticated sockets per address), ask at once: one bucket per instance would allow all
        # 30; the shared one allows 20, plus what refills meanwhile.
        connections = [await ServerConnection.open(servers.url(n % 2)) for n in range(30)]

        async def start(connection: ServerConnection) -> str:
            try:
                await connection.request("link.start", client="terminal")
                return "ok"
            except ServerRefused as error:
                return error.code

        started = time.monotonic()
        answers = await asyncio.gather(*(start(connection) for connection in connections))
        refilled = (time.monotonic() - started) / 3  # one token every 3 s
        for connection in connections:
            await connection.close()
        assert set(answers) == {"ok", "rate_limited"}
        assert 20 <= answers.count("ok") <= 20 + refilled + 1


async def test_media_uploaded_through_one_instance_downloads_through_another(
    tmp_path: Path, redis: RedisServer, postgres: PostgresServer
) -> None:
    with cluster(tmp_path, redis, postgres, 2) as servers:
        async with primary(servers.url(0), tmp_path / "phone") as phone:
            token = (await phone.connection.request("media.token"))["token"]
        blob = b"\x01encrypted bytes" * 100
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient() as http:
            uploaded = await http.post(servers.url(0) + "/media", content=blob, headers=headers)
            assert uploaded.status_code == 201
            media_id = uploaded.json()["media_id"]
            downloaded = await http.get(f"{servers.url(1)}/media/{media_id}", headers=headers)
            assert downloaded.status_code == 200
            assert downloaded.content == blob
            bogus = {"authorization": "Bearer " + b64u_encode(bytes(32))}
            assert (await http.get(f"{servers.url(1)}/media/{media_id}", headers=bogus)).status_code == 401


async def test_health_reports_redis_and_recovers_with_it(
    tmp_path: Path, private_redis: RedisServer, postgres: PostgresServer
) -> None:
    with cluster(tmp_path, private_redis, postgres, 1) as servers:
        async with httpx.AsyncClient(base_url=servers.url(0)) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok", "database": "ok", "redis": "ok"}
            private_redis.kill()
            down = await http.get("/healthz")
            assert down.status_code == 503
            assert down.json()["redis"].startswith("unavailable")
            assert (await http.get("/readyz")).status_code == 503
            private_redis.start()
            for _ in range(100):
                if (await http.get("/healthz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get("/readyz")).status_code == 200


def _state(directory: Path) -> DeviceState:
    role = json.loads((directory / "state.json").read_text())["role"]
    return DeviceState.load(directory, role)


async def test_a_linked_companion_signs_in_on_any_instance(
    tmp_path: Path, redis: RedisServer, postgres: PostgresServer
) -> None:
    with cluster(tmp_path, redis, postgres, 2) as servers:
        async with primary(servers.url(0), tmp_path / "phone") as phone:
            laptop = await link_one(servers.url(0), phone, tmp_path / "laptop")
            await laptop.close()
        elsewhere = await DeviceSession.open(replace(_state(tmp_path / "laptop"), server_url=servers.url(1)))
        assert elsewhere.state.device_id == laptop.state.device_id
        await elsewhere.close()
