"""Probation (linking.md §4.6) over a live server with a fake clock, Python devices on every side.

A companion on probation changes no group: an honest server refuses it, and when a server lets it through
anyway (here: one whose clock runs a day ahead, so it thinks probation is over), the other members'
devices refuse the change themselves — the account it added gets no group key from them. Its history
requests are refused; a server cannot strip probation_until from the list it relays; probation ends by
itself 24 hours after the link, on the devices' own judgement of time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_linking import link_one, primary
from helpers_messaging import load, messengers, shown

from lockstep.client.errors import ClientError, ServerRefused
from lockstep.client.primary import PrimarySession
from lockstep.client.session import DeviceSession
from lockstep.client.state import DeviceState
from lockstep.link import probation
from lockstep.link.devices import Role
from lockstep.link.encoding import b64u_encode, json_bytes
from lockstep.link.envelope import Envelope
from lockstep.link.errors import DeviceListError

pytestmark = pytest.mark.anyio
OTHER_NETWORK = "127.0.0.2"
HOUR = probation.HOUR_MS


async def accounts(url: str, root: Path) -> None:
    """Alice with her phone and a laptop linked from another network; bob and eve with a phone each."""
    async with primary(url, root / "alice", "alice") as phone:
        laptop = await link_one(url, phone, root / "laptop", "Laptop", other_network=OTHER_NETWORK)
        await laptop.close()
    for handle in ("bob", "eve"):
        async with primary(url, root / handle, handle):
            pass
    async with messengers(*(root / name for name in ("alice", "laptop", "bob", "eve"))):
        pass  # every device publishes its keys


async def test_an_honest_server_refuses_group_changes_and_the_primary_refuses_history(
    live_server, tmp_path: Path
) -> None:
    await accounts(live_server.url, tmp_path)
    async with messengers(*(tmp_path / name for name in ("alice", "laptop"))) as (phone, laptop):
        assert probation.on_probation_in(
            laptop.session.state.devices, laptop.device_id, phone.session.probation_now()
        )
        group_id = await phone.create_group("Climbing", ["bob"])
        with pytest.raises(ServerRefused, match="linked from another network"):
            await laptop.add_member(group_id, "eve")
        with pytest.raises(ServerRefused, match="linked from another network"):
            await laptop.create_group("Mine", ["eve"])
        # History: none in the first sync, and a request for older messages is refused.
        assert await phone.sync_history() == []
        await laptop.request_older_history()
        await phone.receive(wait=2, until=lambda got: bool(got))
        assert not [m for m in await laptop.receive(wait=1) if m.kind == "history"]


async def test_members_refuse_a_change_a_lying_server_let_through(live_server, tmp_path: Path) -> None:
    await accounts(live_server.url, tmp_path)
    names = ("alice", "laptop", "bob", "eve")
    async with messengers(*(tmp_path / name for name in names)) as (phone, laptop, bob, eve):
        group_id = await phone.create_group("Climbing", ["bob"])
        await bob.receive(wait=5, until=shown)
        live_server.clock.tick_with_real_time(ahead_ms=25 * HOUR)  # the server now thinks probation is over
        await laptop.add_member(group_id, "eve")  # so it lets the change through
        for member in (bob, phone):  # they judge on the earlier clock: their own
            await member.receive(wait=2, until=lambda got: False)
            assert member.store.refused_members == {group_id: [eve.account_id]}
        await bob.send(group_id, "only for the climbers bob knows")
        got = [m for m in await eve.receive(wait=3, until=shown) if m.kind in ("text", "undecryptable")]
        assert got and all(m.kind == "undecryptable" for m in got)  # no group key from bob
        texts = [m.text for m in await phone.receive(wait=5, until=shown) if m.kind == "text"]
        assert texts == ["only for the climbers bob knows"]
        # A group a device on probation made is refused as a whole by its members.
        made = await laptop.create_group("Made on probation", ["bob"])
        await bob.receive(wait=2, until=lambda got: False)
        with pytest.raises(ClientError, match="probation"):
            await bob.send(made, "no")


async def test_a_list_without_probation_from_the_server_is_refused(live_server, tmp_path: Path) -> None:
    await accounts(live_server.url, tmp_path)
    laptop = DeviceState.load(tmp_path / "laptop", Role.COMPANION)
    signed = laptop.device_list
    payload = json.loads(signed.payload)
    for entry in payload["devices"]:
        entry.pop("probation_until", None)
    payload["version"] += 1  # newer, as an honest end of probation would be
    stripped = Envelope(json_bytes(payload), signed.signature)
    session = await DeviceSession.open(load(tmp_path / "bob"))
    try:
        with pytest.raises(DeviceListError, match="signature"):
            session.accept_device_list(stripped)
        result = await session.connection.request("accounts.lookup", account_id=laptop.account.account_id)
        assert result["device_list"] == signed.to_json()  # what the server holds is the signed one
        assert b64u_encode(stripped.payload) != result["device_list"]["payload"]
    finally:
        await session.close()
    phone = await PrimarySession.open(load(tmp_path / "alice"))
    try:
        with pytest.raises(DeviceListError, match="signature"):
            phone.accept_device_list(stripped)
    finally:
        await phone.close()


async def test_probation_ends_by_itself_after_24_hours_and_history_follows(
    live_server, tmp_path: Path
) -> None:
    live_server.clock.now -= 3 * 24 * HOUR  # a server clock behind: the devices judge on it (the earlier)
    await accounts(live_server.url, tmp_path)
    for hours, served in ((0, False), (23, False), (2, True)):
        live_server.clock.advance(hours * HOUR)  # each session measures the server's clock when it opens
        async with messengers(tmp_path / "alice", tmp_path / "laptop") as (phone, laptop):
            assert await phone.sync_history() == ([laptop.device_id] if served else [])
    async with messengers(tmp_path / "laptop") as (laptop,):
        got = await laptop.receive(wait=5, until=lambda r: any(m.kind == "history" for m in r))
        assert [m.kind for m in got if m.kind == "history"] == ["history"]
        await laptop.create_group("After probation", ["bob"])  # group changes are allowed again
