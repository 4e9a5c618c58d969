"""Idle logout (linking.md §4.5) with the server's fake clock: companions live on the primary's signed
list. Fourteen days without the primary unlink every companion, which wipes its keys by its own check of
the list's age; an online primary re-signs its list and keeps them; fewer than 3 days before, a
companion counts down."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_linking import link_one, primary

from lockstep.client.primary import PrimarySession
from lockstep.client.session import DeviceSession, DeviceUnlinked
from lockstep.client.state import DeviceState
from lockstep.link.devices import Role
from lockstep.link.idle import DAY_MS
from lockstep.link.wording import idle_text

pytestmark = pytest.mark.anyio
HOUR_MS = 3_600_000


async def reopen(directory: Path) -> DeviceSession:
    return await DeviceSession.open(DeviceState.load(directory, Role.COMPANION))


async def test_fourteen_days_of_primary_silence_log_every_companion_out(live_server, tmp_path: Path) -> None:
    companions = [tmp_path / "laptop", tmp_path / "desk"]
    async with primary(live_server.url, tmp_path / "p") as phone:
        for directory in companions:
            await (await link_one(live_server.url, phone, directory, directory.name)).close()
    live_server.clock.advance(11 * DAY_MS + HOUR_MS)  # the phone stays away
    session = await reopen(companions[0])
    assert session.idle_countdown() == 3
    await session.close()
    live_server.clock.advance(DAY_MS)
    session = await reopen(companions[0])
    assert session.idle_countdown() == 2
    assert (
        idle_text("countdown", days=2)
        == "Open Lockstep on your phone within 2 days, or this device will be logged out."
    )
    await session.close()
    live_server.clock.advance(2 * DAY_MS)  # 14 days and an hour
    for directory in companions:
        with pytest.raises(DeviceUnlinked, match="14 days"):
            await reopen(directory)
        assert not (directory / "device.key").exists()
    # Back online, the phone signs a list without the companions that logged themselves out.
    phone = await PrimarySession.open(DeviceState.load(tmp_path / "p", Role.PRIMARY))
    assert phone.state.devices.companions == ()
    listed = await phone.refresh()
    assert [d["device_id"] for d in listed["devices"]] == [phone.state.device_id]
    await phone.close()


async def test_an_online_primary_keeps_its_companions_linked(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        laptop = await link_one(live_server.url, phone, tmp_path / "laptop")
    version = laptop.state.devices.version
    live_server.clock.advance(10 * DAY_MS)
    early = await reopen(tmp_path / "laptop")
    assert early.idle_countdown() is None  # 4 days left: no countdown yet
    await early.close()
    phone = await PrimarySession.open(DeviceState.load(tmp_path / "p", Role.PRIMARY))  # re-signs
    assert phone.state.devices.version == version + 1
    event = await laptop.connection.next_event(timeout=5)  # a connected companion hears of it
    assert event["event"] == "devices.changed" and event["change"]["kind"] == "refreshed"
    await phone.close()
    await laptop.close()
    live_server.clock.advance(10 * DAY_MS)  # 20 days after linking, 10 after the phone was last seen
    session = await reopen(tmp_path / "laptop")
    assert session.state.devices.version == version + 1
    assert session.idle_countdown() is None
    await session.close()
