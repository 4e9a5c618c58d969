"""Storage and key abuse (SECURITY.md "Server, network and disk"): what strangers may queue, media
quotas, the one-time key pool, and sign-in failures that must not lock the device's owner out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers_abuse import auth_fields, connect_from, publish_keys, send_junk
from helpers_linking import primary

from lockstep.client.connection import ServerConnection
from lockstep.client.errors import ConnectionLost, ServerRefused
from lockstep.client.primary import PrimarySession
from lockstep.e2e.keys import OneTimeKey
from lockstep.link.encoding import b64u_encode
from lockstep.server.api_keys import LOW_ONE_TIME_KEYS
from lockstep.server.services import Limits
from lockstep.server.settings import KIB, StorageLimits

pytestmark = pytest.mark.anyio

CIPHERTEXT = 1200
"""Each junk send queues this much ciphertext plus well under 200 bytes of routing JSON."""


@contextlib.asynccontextmanager
async def accounts(url: str, root: Path, *handles: str, keys: int = 5) -> AsyncIterator[list[PrimarySession]]:
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(primary(url, root / h, h)) for h in handles]
        for session in sessions:
            await publish_keys(session, keys)
        yield sessions


async def refused_code(work: object) -> str:
    with pytest.raises(ServerRefused) as caught:
        await work  # type: ignore[misc]
    return caught.value.code


async def test_strangers_queue_a_bounded_amount_and_real_conversations_are_not_limited(
    live_server, tmp_path: Path
) -> None:
    live_server.services.storage_limits = StorageLimits(
        stranger_sender_bytes=4 * KIB, stranger_queue_bytes=6 * KIB
    )
    async with accounts(live_server.url, tmp_path, "bob", "alice", "mallory", "carol", "dave") as sessions:
        bob, alice, mallory, carol, dave = sessions
        await send_junk(bob, alice, 8)  # bob has written to alice: she is a real conversation

        for _ in range(10):  # well past both stranger limits
            await send_junk(alice, bob, CIPHERTEXT)
        for _ in range(3):
            await send_junk(mallory, bob, CIPHERTEXT)
        with pytest.raises(ServerRefused) as caught:
            await send_junk(mallory, bob, CIPHERTEXT)
        assert caught.value.code == "stranger_limit" and "from you" in str(caught.value)
        await send_junk(carol, bob, CIPHERTEXT)  # her own share is untouched...
        with pytest.raises(ServerRefused) as caught:  # ...but strangers together have used theirs
            await send_junk(carol, bob, CIPHERTEXT)
        assert caught.value.code == "stranger_limit" and "never wrote to" in str(caught.value)
        await send_junk(alice, bob, CIPHERTEXT)

        # Receipts do not make a stranger known (clients send them by themselves); a reply does.
        await send_junk(bob, carol, 8, receipt=True)
        assert await refused_code(send_junk(carol, bob, CIPHERTEXT)) == "stranger_limit"
        await send_junk(bob, mallory, 8)
        await send_junk(mallory, bob, CIPHERTEXT)
        await send_junk(carol, bob, CIPHERTEXT)  # mallory's bytes no longer count as a stranger's

        # A group made by a stranger is a stranger; one made by someone bob wrote to is not.
        just_bob = [bob.state.account.account_id]
        strangers_group = await dave.connection.request("groups.create", members=just_bob)
        friends_group = await alice.connection.request("groups.create", members=just_bob)

        async def group_send(session: PrimarySession, group: dict[str, object]) -> None:
            await session.connection.request(
                "messages.send",
                message_id=b64u_encode(secrets.token_bytes(16)),
                group_id=group["group_id"],
                megolm={"session_id": "s", "ciphertext": "A" * CIPHERTEXT},
            )

        await group_send(dave, strangers_group)  # strangers now hold carol's two and dave's two: ~5 KiB
        await group_send(dave, strangers_group)
        assert await refused_code(group_send(dave, strangers_group)) == "stranger_limit"
        for _ in range(8):
            await group_send(alice, friends_group)

        # Nothing from the real conversation was lost; reading frees the strangers' room.
        fetched = await bob.connection.request("messages.fetch", limit=500)
        senders = [m["sender"]["account_id"] for m in fetched["messages"]]
        assert senders.count(alice.state.account.account_id) == 11 + 8
        assert senders.count(mallory.state.account.account_id) == 4
        await bob.connection.request("messages.ack", up_to=fetched["messages"][-1]["seq"])
        await group_send(dave, strangers_group)


def post_media(url: str, token: str, size: int) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url + "/media", data=b"x" * size, method="POST", headers={"authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_media_uploads_are_limited_per_device_per_day_and_stored(live_server, tmp_path: Path) -> None:
    live_server.services.storage_limits = StorageLimits(
        media_daily_bytes=64 * KIB, media_stored_bytes=112 * KIB
    )
    async with primary(live_server.url, tmp_path / "a", "alice") as alice:
        token = (await alice.connection.request("media.token"))["token"]

        async def upload(size: int) -> tuple[int, dict[str, object]]:
            return await asyncio.to_thread(post_media, live_server.url, token, size)

        accepted = 0
        for _ in range(20):  # an upload flood stops at the quota
            status, body = await upload(16 * KIB)
            if status != 201:
                break
            accepted += 1
        assert accepted == 4
        assert status == 429 and body["error"]["code"] == "quota_exceeded"  # type: ignore[index]
        assert "a day" in body["error"]["message"]  # type: ignore[index]
        stored = sorted(p.name for p in live_server.services.media_root.iterdir())
        assert len(stored) == 4  # the refused upload left nothing behind

        live_server.clock.advance(86_400_000 + 1)  # a new day: room again, up to what may be kept
        token = (await alice.connection.request("media.token"))["token"]
        for _ in range(3):
            assert (await upload(16 * KIB))[0] == 201
        status, body = await upload(16 * KIB)
        assert status == 429 and "kept at once" in body["error"]["message"]  # type: ignore[index]

        # Parallel uploads cannot each take the whole quota: what is still streaming counts too.
        live_server.clock.advance(31 * 86_400_000)  # everything expired
        token = (await alice.connection.request("media.token"))["token"]
        results = await asyncio.gather(*(upload(20 * KIB) for _ in range(8)))
        assert sum(1 for status, _ in results if status == 201) <= 3
        assert {status for status, _ in results} <= {201, 429}


async def test_one_claimer_cannot_drain_a_devices_one_time_keys(live_server, tmp_path: Path) -> None:
    share = StorageLimits().key_claims
    async with accounts(live_server.url, tmp_path, "alice", "mallory", "carol", keys=0) as sessions:
        alice, mallory, carol = sessions
        await publish_keys(alice, 2 * share + 5)
        device = alice.state.device_id
        await alice.close()  # alice goes away while her keys are claimed

        async def claim(session: PrimarySession) -> OneTimeKey:
            answer = await session.connection.request("keys.claim", device_ids=[device])
            return OneTimeKey.from_json(answer["devices"][device]["one_time_key"])

        taken = [await claim(mallory) for _ in range(3 * share)]
        assert len({k.key_id for k in taken[:share]}) == share and not any(k.fallback for k in taken[:share])
        assert all(k.fallback for k in taken[share:])  # past its share: the fallback key, still usable
        from_carol = [await claim(carol) for _ in range(share)]
        assert not any(k.fallback for k in from_carol)  # other claimers have their own share

        # Only 5 are left: alice hears so when she next signs in, not only if online at claim time.
        connection = await ServerConnection.open(live_server.url)
        try:
            await connection.request("auth", **auth_fields(alice.state, connection))
            event = await connection.next_event(timeout=5)
            assert LOW_ONE_TIME_KEYS > 5
            assert event == {"event": "keys.low", "one_time_keys_left": 5}
        finally:
            await connection.close()

        live_server.clock.advance(StorageLimits().key_claim_window_s * 1000)
        assert not (await claim(mallory)).fallback  # the share refills with time


async def test_claims_racing_on_several_sockets_take_no_more_than_the_share(
    live_server, tmp_path: Path
) -> None:
    live_server.services.limits = Limits.in_memory(StorageLimits(key_claims=1))
    async with accounts(live_server.url, tmp_path, "alice", "mallory", keys=0) as (alice, mallory):
        await publish_keys(alice, 20)
        device = alice.state.device_id
        sockets = [await ServerConnection.open(live_server.url) for _ in range(4)]
        try:
            for connection in sockets:
                await connection.request("auth", **auth_fields(mallory.state, connection))
            answers = await asyncio.gather(
                *(connection.request("keys.claim", device_ids=[device]) for connection in sockets)
            )
        finally:
            for connection in sockets:
                await connection.close()
        keys = [OneTimeKey.from_json(answer["devices"][device]["one_time_key"]) for answer in answers]
        assert sum(not key.fallback for key in keys) == 1  # the share, however the claims interleave


async def test_a_device_signed_in_on_too_many_sockets_loses_its_oldest(live_server, tmp_path: Path) -> None:
    live_server.services.storage_limits = StorageLimits(sockets_per_device=2)
    async with accounts(live_server.url, tmp_path, "alice", keys=0) as (alice,):
        await alice.close()
        sockets = []
        try:
            for _ in range(3):
                connection = await ServerConnection.open(live_server.url)
                sockets.append(connection)
                await connection.request("auth", **auth_fields(alice.state, connection))
            with pytest.raises(ConnectionLost):  # the oldest is closed, saying why
                for _ in range(10):  # bounded: events queued before the close
                    await sockets[0].next_event(timeout=5)
            assert sockets[0]._socket.close_code == 1013
            assert "more than 2 connections" in (sockets[0]._socket.close_reason or "")
            for connection in sockets[1:]:  # the newer ones work
                await connection.request("devices.list")
        finally:
            for connection in sockets:
                await connection.close()


async def test_failed_sign_ins_never_lock_out_a_valid_signature(live_server, tmp_path: Path) -> None:
    async with accounts(live_server.url, tmp_path, "alice", "bob", keys=0) as (alice, bob):
        await alice.close()
        await bob.close()
        url = live_server.url

        # One address fails 25 times (unknown devices): its failures are then rate_limited...
        attacker = await connect_from(url, "127.0.0.2")
        codes = []
        for _ in range(25):
            with pytest.raises(ServerRefused) as caught:
                await attacker.request("auth", device_id="no-such-device", signature="A" * 86)
            codes.append(caught.value.code)
        assert codes[:20] == ["device_unknown"] * 20 and set(codes[20:]) == {"rate_limited"}
        # ...but a correct signature from that same address still signs in.
        result = await attacker.request("auth", **auth_fields(alice.state, attacker))
        assert result["device_id"] == alice.state.device_id
        await attacker.close()

        # Bad signatures against alice's device from several addresses, each under its own limit:
        # the device's failure count runs out, yet alice signs in, and bob is unaffected.
        for host in range(3, 7):
            connection = await connect_from(url, f"127.0.0.{host}")
            for _ in range(5):
                refusal = connection.request("auth", **auth_fields(alice.state, connection, valid=False))
                assert await refused_code(refusal) == "bad_signature"
            await connection.close()
        connection = await connect_from(url, "127.0.0.7")
        refusal = connection.request("auth", **auth_fields(alice.state, connection, valid=False))
        assert await refused_code(refusal) == "rate_limited"
        refusal = connection.request("auth", **auth_fields(bob.state, connection, valid=False))
        assert await refused_code(refusal) == "bad_signature"
        result = await connection.request("auth", **auth_fields(alice.state, connection))
        assert result["device_id"] == alice.state.device_id
        await connection.close()


def test_storage_limits_come_from_the_environment_and_bad_values_name_the_setting() -> None:
    from lockstep.server.settings import Settings, SettingsError

    settings = Settings.from_env({"LOCKSTEP_STRANGER_QUEUE_BYTES": "8192"}, storage={"key_claims": 3})
    assert settings.storage.stranger_queue_bytes == 8192 and settings.storage.key_claims == 3
    with pytest.raises(SettingsError, match="LOCKSTEP_MEDIA_DAILY_BYTES"):
        Settings.from_env({"LOCKSTEP_MEDIA_DAILY_BYTES": "lots"})
    with pytest.raises(SettingsError, match="LOCKSTEP_KEY_CLAIMS"):
        Settings.from_env({"LOCKSTEP_KEY_CLAIMS": "0"})


async def test_a_device_keeps_a_bounded_number_of_one_time_keys(live_server, tmp_path: Path) -> None:
    from lockstep.e2e.olm import OlmDevice
    from lockstep.server.api_keys import MAX_STORED_ONE_TIME_KEYS

    async with primary(live_server.url, tmp_path / "a", "alice") as alice:
        olm = OlmDevice.create()
        bundle = olm.device_keys(alice.state.account.account_id, alice.state.device_id, 1)
        sealed = bundle.seal(alice.state.device_key()).to_json()

        async def upload(count: int) -> dict[str, object]:
            keys = [key.to_json() for key in olm.new_one_time_keys(count)]
            return await alice.connection.request("keys.upload", bundle=sealed, one_time_keys=keys)

        for _ in range(MAX_STORED_ONE_TIME_KEYS // 50):  # vodozemac makes at most 50 at a time
            await upload(50)
        assert await refused_code(upload(1)) == "bad_request"
        assert (await alice.connection.request("keys.upload", bundle=sealed))["one_time_keys_left"] == (
            MAX_STORED_ONE_TIME_KEYS
        )
