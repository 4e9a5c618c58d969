"""The linking API end to end over real sockets: Python primary and companion, server with a fake clock."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from helpers_linking import companion, link_one, primary

from lockstep.client.companion import LinkNotCompleted
from lockstep.client.connection import ServerConnection
from lockstep.client.errors import ConnectionLost, ServerRefused
from lockstep.client.session import DeviceUnlinked
from lockstep.link.errors import DeviceListError
from lockstep.server.admission import AdmissionLimits
from lockstep.server.link_sessions import SCHEDULE_MS
from lockstep_servers import stored_bytes

pytestmark = pytest.mark.anyio


async def test_a_companion_links_and_every_device_hears_of_it(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        async with companion(live_server.url, tmp_path / "c") as run:
            code = await run.next_code()
            context = await phone.inspect(code)
            assert context["companion"]["description"].startswith("Lockstep terminal")
            assert context["network"]["same_network"] is True
            assert 0 <= context["age_ms"] < 5000
            await asyncio.wait_for(run.scanned.wait(), 5)
            device_id = await phone.approve(code, "Work laptop")
            linked = await run.result()
        assert linked.state.device_id == device_id
        assert linked.state.account.handle == "alice"
        assert linked.state.device_name == "Work laptop"
        assert {d.device_id for d in phone.state.devices.devices} >= {device_id}
        # A second companion links; the first one is told by a signed devices.changed event.
        second = await link_one(live_server.url, phone, tmp_path / "c2", "Desktop")
        event = await linked.connection.next_event(timeout=5)
        assert event["event"] == "devices.changed"
        assert event["change"] == {"kind": "linked", "device_id": second.state.device_id, "name": "Desktop"}
        linked.accept_device_list(type(linked.state.device_list).from_json(event["device_list"]))
        assert linked.state.devices.version == 3
        await linked.close()
        await second.close()


async def test_the_database_holds_no_secret_and_no_private_key(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        async with companion(live_server.url, tmp_path / "c") as run:
            code = await run.next_code()
            await phone.inspect(code)
            await phone.approve(code, "Laptop")
            linked = await run.result()
        await linked.close()
        secrets_seen = [
            code.link_secret,
            phone.state.account_key().private_bytes_raw(),
            phone.state.device_key().private_bytes_raw(),
            linked.state.device_key().private_bytes_raw(),
        ]
    database = await stored_bytes(live_server.database_url)
    assert phone.state.account.account_key in database  # the public key is there: the scan is real
    for secret in secrets_seen:
        assert secret not in database
        assert secret.hex().encode() not in database


async def test_codes_rotate_60_then_five_times_20_seconds_then_idle(live_server, tmp_path: Path) -> None:
    async with companion(live_server.url, tmp_path / "c") as run:
        shown = [await asyncio.wait_for(run.codes.get(), 5)]
        for lifetime in SCHEDULE_MS:
            assert shown[-1].expires_at - shown[-1].server_time == lifetime
            live_server.clock.advance(lifetime)
            if shown[-1].last:
                break
            shown.append(await asyncio.wait_for(run.codes.get(), 5))
        assert [s.index for s in shown] == [0, 1, 2, 3, 4, 5]
        assert len({s.code.ref for s in shown}) == 6 and len({s.code.link_secret for s in shown}) == 6
        with pytest.raises(Exception, match="no phone scanned the code in time"):
            await run.result()


async def test_expired_used_and_unknown_refs_are_refused(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        async with companion(live_server.url, tmp_path / "c") as run:
            expired = await run.next_code()
            live_server.clock.advance(SCHEDULE_MS[0])
            fresh = await run.next_code()
            with pytest.raises(ServerRefused) as refusal:
                await phone.inspect(expired)
            assert refusal.value.code == "ref_expired"
            await phone.inspect(fresh)
            await phone.approve(fresh, "Laptop")
            linked = await run.result()
            await linked.close()
        with pytest.raises(ServerRefused) as refusal:
            await phone.inspect(fresh)
        assert refusal.value.code == "ref_used"
        unknown = type(fresh)(fresh.origin, secrets.token_bytes(32), *[bytes(32)] * 3)
        with pytest.raises(ServerRefused) as refusal:
            await phone.inspect(unknown)
        assert refusal.value.code == "ref_unknown"


async def test_guessing_refs_is_rate_limited(live_server, tmp_path: Path) -> None:
    async with (
        primary(live_server.url, tmp_path / "p") as phone,
        companion(live_server.url, tmp_path / "c") as run,
    ):
        real = await run.next_code()
        codes = []
        for _ in range(10):
            guess = type(real)(real.origin, secrets.token_bytes(32), *[bytes(32)] * 3)
            with pytest.raises(ServerRefused) as refusal:
                await phone.inspect(guess)
            codes.append(refusal.value.code)
        assert codes == ["ref_unknown"] * 10
        with pytest.raises(ServerRefused) as refusal:
            await phone.inspect(real)  # even the right ref waits out the minute
        assert refusal.value.code == "rate_limited"
        live_server.clock.advance(60_000)
        await phone.inspect(await run.next_code())


async def test_declining_tells_the_companion_and_links_nothing(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        async with companion(live_server.url, tmp_path / "c") as run:
            code = await run.next_code()
            await phone.inspect(code)
            await phone.decline(code)
            with pytest.raises(Exception, match="declined"):
                await run.result()
        await phone.refresh()
        assert len(phone.state.devices.devices) == 1
        assert not (tmp_path / "c" / "device.key").exists()


async def test_a_fifth_companion_is_refused(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        for i in range(4):
            await (await link_one(live_server.url, phone, tmp_path / f"c{i}", f"C{i}")).close()
        async with companion(live_server.url, tmp_path / "c5") as run:
            code = await run.next_code()
            # The server refuses at the scan, and the fifth companion hears why instead of waiting on.
            with pytest.raises(ServerRefused, match="already has 4 linked devices") as refused:
                await phone.inspect(code)
            assert refused.value.code == "too_many_devices"
            with pytest.raises(LinkNotCompleted, match="already has 4 linked devices"):
                await run.result()
            assert not run.scanned.is_set()
            with pytest.raises(DeviceListError, match="already has 4 linked devices"):
                await phone.approve(code, "Fifth")  # the primary refuses on its own too


async def test_unlink_logs_the_companion_out_and_it_wipes_its_keys(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        laptop = await link_one(live_server.url, phone, tmp_path / "c", "Laptop")
        await phone.rename(laptop.state.device_id, "Old laptop")
        renamed = await laptop.connection.next_event(timeout=5)
        assert renamed["change"] == {
            "kind": "renamed",
            "device_id": laptop.state.device_id,
            "name": "Old laptop",
        }
        await phone.unlink(laptop.state.device_id)
        event = await laptop.connection.next_event(timeout=5)
        assert event == {"event": "device.unlinked", "device_id": laptop.state.device_id}
        with pytest.raises(DeviceUnlinked):
            laptop.accept_device_list(phone.state.device_list)
        assert not (tmp_path / "c" / "device.key").exists()
        from lockstep.client.state import DeviceState

        assert phone.state.devices.find(laptop.state.device_id) is None
        with pytest.raises(Exception):  # noqa: B017 - state is gone: the device cannot sign in again
            DeviceState.load(tmp_path / "c", "companion")


async def test_a_companion_cannot_use_primary_operations(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        laptop = await link_one(live_server.url, phone, tmp_path / "c")
        with pytest.raises(ServerRefused) as refusal:
            await laptop.connection.request("link.inspect", ref="A" * 43)
        assert refusal.value.code == "forbidden"
        await laptop.close()


async def test_a_socket_whose_link_session_ended_is_back_on_the_unauthenticated_deadline(live_server) -> None:
    connection = await ServerConnection.open(live_server.url)
    try:
        await connection.request("link.start", client="terminal")
        events = []
        for _ in range(2 * len(SCHEDULE_MS)):  # bounded: each ref, then link.idle
            events.append((await connection.next_event(timeout=5))["event"])
            if events[-1] == "link.idle":
                break
            live_server.clock.advance(max(SCHEDULE_MS))
        assert events[-1] == "link.idle"
        live_server.clock.advance(int(AdmissionLimits().deadline_s * 1000))  # session over: the deadline runs
        with pytest.raises(ConnectionLost):
            await connection.next_event(timeout=5)
        assert connection._socket.close_code == 1008
    finally:
        await connection.close()
