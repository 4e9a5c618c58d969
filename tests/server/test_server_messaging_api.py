"""The messaging operations as a (possibly hostile) client sees them: raw requests over a real socket."""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers_frames import json_values, socketless_connection
from helpers_linking import primary
from helpers_messaging import load, make_account, messengers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep.client.connection import ServerConnection
from lockstep.client.errors import ServerRefused
from lockstep.e2e.errors import KeyBundleError
from lockstep.e2e.keys import OneTimeKey
from lockstep.e2e.olm import OlmDevice
from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import key_id
from lockstep.link.grant import AccountInfo
from lockstep.server.api_keys import LOW_ONE_TIME_KEYS
from lockstep.server.connection import DeviceIdentity
from lockstep.server.gateway import OPERATIONS, handle_frame
from lockstep.server.services import Limits, Services
from lockstep.server.settings import StorageLimits
from lockstep.server.store import Store

pytestmark = pytest.mark.anyio


async def refused(code: str, connection: ServerConnection, op: str, **fields: object) -> None:
    with pytest.raises(ServerRefused) as caught:
        await connection.request(op, **fields)
    assert caught.value.code == code, caught.value


async def test_messaging_needs_an_authenticated_socket(live_server) -> None:
    connection = await ServerConnection.open(live_server.url)
    try:
        for op in (
            "keys.upload",
            "keys.claim",
            "accounts.lookup",
            "messages.send",
            "messages.fetch",
            "messages.ack",
            "groups.create",
            "groups.list",
            "media.token",
        ):
            await refused("not_authenticated", connection, op)
    finally:
        await connection.close()


async def test_key_uploads_are_checked_and_claims_consume_then_fall_back(live_server, tmp_path: Path) -> None:
    # This test empties one device's pool from one claimer; the per-claimer share has its own test.
    live_server.services.limits = Limits.in_memory(StorageLimits(key_claims=100))
    async with (
        primary(live_server.url, tmp_path / "a", "alice") as alice,
        primary(live_server.url, tmp_path / "b", "bob") as bob,
    ):
        olm = OlmDevice.create()
        bundle = olm.device_keys(alice.state.account.account_id, alice.state.device_id, 1)
        good = bundle.seal(alice.state.device_key()).to_json()
        await refused("bad_signature", alice.connection, "keys.upload", bundle=bob_bundle(bob))
        stranger = OlmDevice.create()
        (foreign,) = stranger.new_one_time_keys(1)
        await refused(
            "bad_signature", alice.connection, "keys.upload", bundle=good, one_time_keys=[foreign.to_json()]
        )
        keys = olm.new_one_time_keys(LOW_ONE_TIME_KEYS + 1)
        fallback = olm.new_fallback_key()
        result = await alice.connection.request(
            "keys.upload",
            bundle=good,
            one_time_keys=[k.to_json() for k in keys],
            fallback_key=fallback.to_json(),
        )
        assert result == {"one_time_keys_left": LOW_ONE_TIME_KEYS + 1}
        device = alice.state.device_id
        claimed = []
        for _ in range(len(keys) + 1):
            answer = await bob.connection.request("keys.claim", device_ids=[device])
            claimed.append(OneTimeKey.from_json(answer["devices"][device]["one_time_key"]))
        assert {k.key_id for k in claimed[:-1]} == {k.key_id for k in keys}  # each handed out once
        assert claimed[-1].fallback and claimed[-1].key == fallback.key
        low = await alice.connection.next_event(timeout=5)
        assert low == {"event": "keys.low", "one_time_keys_left": LOW_ONE_TIME_KEYS - 1}
        unknown = await bob.connection.request("keys.claim", device_ids=["no-such-device"])
        assert unknown["devices"]["no-such-device"] == {"bundle": None, "one_time_key": None}
        await refused("account_unknown", bob.connection, "accounts.lookup", handle="nobody")
        found = await bob.connection.request("accounts.lookup", handle="alice")
        assert found["device_keys"] == {device: good}


async def test_accounts_are_looked_up_many_at_once_for_large_groups(live_server, tmp_path: Path) -> None:
    """``accounts.lookup`` with ``account_ids`` (or ``handles``) answers each known account as a single
    look-up does, leaves unknown ones out, and refuses a list that is empty, too long or not ids
    (messaging.md §7.1)."""
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        connection = a.session.connection
        ids = [a.account_id, b.account_id, "no-such-account"]
        found = (await connection.request("accounts.lookup", account_ids=ids))["accounts"]
        assert sorted(found) == sorted(ids[:2])
        for account_id in ids[:2]:
            assert found[account_id] == await connection.request("accounts.lookup", account_id=account_id)
        assert set(found[b.account_id]["device_keys"]) == {
            load(bob.primary_dir).device_id,
            load(bob.companion_dir).device_id,
        }
        for wrong in ([], [b.account_id] * 129, [7], "bob"):
            await refused("bad_request", connection, "accounts.lookup", account_ids=wrong)
        # By handle too (a group created from a list of handles), keyed by the handle asked.
        by_handle = await connection.request(
            "accounts.lookup", handles=["alice", "BOB", "nobody", "not a handle!"]
        )
        assert by_handle["accounts"] == {"alice": found[a.account_id], "bob": found[b.account_id]}
        for wrong in ([], ["bob"] * 129, [7], "bob"):
            await refused("bad_request", connection, "accounts.lookup", handles=wrong)


def bob_bundle(bob) -> dict[str, str]:
    """A bundle naming alice's device but signed by bob's key."""
    olm = OlmDevice.create()
    return (
        olm.device_keys(bob.state.account.account_id, bob.state.device_id, 1)
        .seal(bob.state.device_key())
        .to_json()
    )


async def test_sends_must_reach_every_device_and_queues_number_and_forget(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        connection = a.session.connection
        bob_id = b.account_id
        payload = {"type": "olm", "olm_type": 0, "sender_key": "A" * 43, "ciphertext": "AAAA"}
        # Only bob's phone: his laptop and alice's laptop are missing.
        await refused(
            "devices_changed",
            connection,
            "messages.send",
            message_id="x" * 22,
            to=bob_id,
            payloads=[{**payload, "device_id": b.device_id}],
        )
        await refused(
            "account_unknown", connection, "messages.send", message_id="x" * 22, to="nobody", payloads=[]
        )
        await refused("bad_request", connection, "messages.send", message_id="short", to=bob_id, payloads=[])
        await refused(
            "bad_request",
            connection,
            "messages.send",
            message_id="x" * 22,
            to=bob_id,
            megolm={"session_id": "s", "ciphertext": "AAAA"},
        )
        await refused(
            "group_unknown",
            connection,
            "messages.send",
            message_id="x" * 22,
            group_id="nope",
            megolm={"session_id": "s", "ciphertext": "AAAA"},
        )
        sent = [await a.send("bob", f"n{i}") for i in range(3)]
        store = live_server.services.store
        queued = await store.fetch_messages(b.device_id, 0, 10)
        assert [m.message_id for m in queued] == [s.message_id for s in sent]
        first = [m.seq for m in queued]
        assert first == sorted(first) and len(set(first)) == 3
        # A retried send is not queued twice.
        assert len(await store.fetch_messages(b.device_id, 0, 10)) == 3
        assert (await b.session.connection.request("messages.ack", up_to=first[1]))["deleted"] == 2
        await b.receive()
        assert await store.fetch_messages(b.device_id, 0, 10) == []
        later = await a.send("bob", "later")
        (next_message,) = await store.fetch_messages(b.device_id, 0, 10)
        assert (
            next_message.message_id == later.message_id and next_message.seq == first[-1] + 1
        )  # never reused
        page = await b.session.connection.request("messages.fetch", after=0, limit=1)
        assert page["more"] is False and page["messages"][0]["seq"] == next_message.seq


async def test_group_routing_is_for_members_only(live_server, tmp_path: Path) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    carol = await make_account(live_server.url, tmp_path, "carol")
    async with messengers(alice.primary_dir, bob.primary_dir, carol.primary_dir) as (a, b, c):
        group = await a.session.connection.request("groups.create", members=[b.account_id])
        group_id = group["group_id"]
        await refused("group_unknown", c.session.connection, "groups.get", group_id=group_id)
        await refused(
            "forbidden",
            c.session.connection,
            "messages.send",
            message_id="y" * 22,
            group_id=group_id,
            megolm={"session_id": "s", "ciphertext": "AAAA"},
        )
        await refused(
            "forbidden", b.session.connection, "groups.add", group_id=group_id, account_id=c.account_id
        )
        await refused("account_unknown", a.session.connection, "groups.create", members=["nobody"])
        changed = await a.session.connection.request("groups.add", group_id=group_id, account_id=c.account_id)
        assert changed["version"] == 2 and {m["account_id"] for m in changed["members"]} == {
            a.account_id,
            b.account_id,
            c.account_id,
        }
        events = []
        while not events or events[-1].get("event") != "groups.changed" or events[-1]["version"] != 2:
            events.append(await c.session.connection.next_event(timeout=5))
        assert events[-1]["change"]["kind"] == "added"
        left = await b.session.connection.request("groups.remove", group_id=group_id, account_id=b.account_id)
        assert b.account_id not in {m["account_id"] for m in left["members"]}
        await refused(
            "forbidden", c.session.connection, "groups.remove", group_id=group_id, account_id=a.account_id
        )


async def test_media_needs_a_token_and_respects_the_size_limit(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "a", "alice") as alice:
        token = await alice.connection.request("media.token")
        assert token["max_bytes"] == 100 * 1024 * 1024
        live_server.services.media_max_bytes = 2048

        def post(data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
            request = urllib.request.Request(
                live_server.url + "/media", data=data, method="POST", headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        bearer = {"authorization": f"Bearer {token['token']}"}
        # The server runs in this event loop: blocking HTTP goes to a thread.
        assert (await asyncio.to_thread(post, b"x" * 100, {}))[0] == 401
        assert (await asyncio.to_thread(post, b"x" * 100, {"authorization": "Bearer nope"}))[0] == 401
        status, body = await asyncio.to_thread(post, b"x" * 4096, bearer)
        assert status == 413 and body["error"]["code"] == "too_large"
        status, body = await asyncio.to_thread(post, b"x" * 100, bearer)
        assert status == 201 and body["size"] == 100
        assert not list(live_server.services.media_root.glob("*.part"))

        def get(media_id: str, headers: dict[str, str]) -> int:
            request = urllib.request.Request(f"{live_server.url}/media/{media_id}", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.read() == b"x" * 100
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return error.code

        assert await asyncio.to_thread(get, str(body["media_id"]), bearer) == 200
        assert await asyncio.to_thread(get, str(body["media_id"]), {}) == 401
        assert await asyncio.to_thread(get, "A" * 43, bearer) == 404
        assert await asyncio.to_thread(get, "..%2F..%2Flockstep.sqlite3", bearer) == 404
        live_server.clock.advance(11 * 60_000)
        assert await asyncio.to_thread(get, str(body["media_id"]), bearer) == 401  # tokens expire

        # Blobs are deleted 30 days after upload (the next upload sweeps).
        live_server.clock.advance(30 * 86_400_000)
        bearer = {"authorization": f"Bearer {(await alice.connection.request('media.token'))['token']}"}
        status, fresh = await asyncio.to_thread(post, b"y" * 10, bearer)
        assert status == 201
        assert await asyncio.to_thread(get, str(body["media_id"]), bearer) == 404
        assert sorted(p.name for p in live_server.services.media_root.iterdir()) == [fresh["media_id"]]


async def test_clients_refuse_a_device_the_account_did_not_sign(live_server, tmp_path: Path) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a, b):
        result = await a.session.connection.request("accounts.lookup", handle="bob")
        # The server slips in its own device's keys for bob (signed by a key not in bob's list) ...
        intruder = OlmDevice.create().device_keys(b.account_id, b.device_id, 9)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        result["device_keys"][b.device_id] = intruder.seal(Ed25519PrivateKey.generate()).to_json()
        with pytest.raises(KeyBundleError):
            a.contacts.verify(result)
        # ... or answers a look-up for one handle with another account.
        honest = await a.session.connection.request("accounts.lookup", handle="bob")
        with pytest.raises(KeyBundleError):
            a.contacts.verify(honest, handle="carol")
        # ... or bob's list with a device added (the account key did not sign it).
        forged = dict(result)
        forged["device_list"] = (await b.session.connection.request("devices.list"))["device_list"]
        forged["account"] = {**result["account"], "key": result["account"]["key"][:-2] + "AA"}
        with pytest.raises(KeyBundleError):
            a.contacts.verify(forged)


_json = json_values(text_size=40, children=3, leaves=12)
_fields = [
    "message_id",
    "to",
    "group_id",
    "payloads",
    "megolm",
    "after",
    "limit",
    "up_to",
    "members",
    "account_id",
    "device_ids",
    "bundle",
    "one_time_keys",
    "fallback_key",
    "handle",
]
_messaging_ops = sorted(
    op for op in OPERATIONS if op.split(".")[0] in {"keys", "accounts", "messages", "groups", "media"}
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    op=st.sampled_from(_messaging_ops),
    fields=st.dictionaries(
        st.sampled_from(_fields), _json | st.just("A" * 22) | st.just([{"device_id": "x"}])
    ),
)
def test_random_messaging_requests_from_a_signed_in_device_never_cause_an_internal_error(
    module_database_url, tmp_path_factory, op: str, fields: dict[str, object]
) -> None:
    async def run() -> dict[str, object]:
        store = Store.for_url(module_database_url)  # one database per engine; a new account each time
        await store.open()
        services = Services(origin="http://127.0.0.1:1", store=store, media_dir=tmp_path_factory.mktemp("m"))
        account, device = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        entry = DeviceEntry.new(device.public_key().public_bytes_raw(), Role.PRIMARY, "Phone", 1)
        account_public = account.public_key().public_bytes_raw()
        devices = DeviceList(key_id(account_public), 1, 1, (entry,))
        handle = "fuzz" + secrets.token_hex(6)
        info = AccountInfo(key_id(account_public), handle, "Fuzz", account_public)
        await store.create_account(info, devices.sign(account), devices, 1)
        connection = socketless_connection()
        connection.identity = DeviceIdentity(info.account_id, entry.device_id, Role.PRIMARY)
        try:
            return await handle_frame(services, connection, json.dumps({**fields, "id": 1, "op": op}))
        finally:
            await store.close()

    reply = asyncio.run(run())
    assert reply.get("ok") is True or reply["error"]["code"] != "internal_error", reply  # type: ignore[index]


def test_the_media_limit_is_a_setting_checked_up_front() -> None:
    from lockstep.server.settings import Settings, SettingsError

    assert Settings().media_max_bytes == 100 * 1024 * 1024
    assert Settings.from_env({"LOCKSTEP_MEDIA_MAX_BYTES": "2048"}).media_max_bytes == 2048
    flag = Settings.from_env({"LOCKSTEP_MEDIA_MAX_BYTES": "2048"}, media_max_bytes=4096)
    assert flag.media_max_bytes == 4096
    for bad in ("lots", "12"):
        with pytest.raises(SettingsError, match=r"(?i)media_max_bytes"):
            Settings.from_env({"LOCKSTEP_MEDIA_MAX_BYTES": bad})
