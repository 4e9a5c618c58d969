"""``calls.ice_servers`` against a real coturn: the credentials a device gets allocate a relay, and coturn
refuses wrong and expired ones (messaging.md §14.6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from helpers_linking import primary
from helpers_messaging import make_account, messengers

from lockstep.calls.machine import Outcome
from lockstep.calls.turn import TurnServer, credential
from lockstep.client.calls import CallOptions, Phone
from lockstep.server.settings import Settings, SettingsError
from tone import dominant_frequency, write_tone
from turn_server import Coturn, coturn

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def turn() -> Iterator[Coturn]:
    with coturn() as server:
        yield server


async def allocate(turn: Coturn, username: str, password: str) -> tuple[str, int]:
    """A TURN allocation (RFC 8656 §7) with this long-term credential; returns the relayed address."""
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", turn.port), username, password
    )
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


async def test_a_signed_in_device_gets_stun_and_a_turn_credential_coturn_accepts(
    live_server, tmp_path: Path, turn: Coturn
) -> None:
    live_server.services.turn = turn.server()
    live_server.clock.tick_with_real_time()  # coturn compares the expiry with its own clock
    async with primary(live_server.url, tmp_path / "phone") as phone:
        result = await phone.connection.request("calls.ice_servers")
        stun, relay = result["ice_servers"]
        assert stun == {"urls": [f"stun:127.0.0.1:{turn.port}"]}
        assert relay["urls"] == [turn.url]
        expiry, device = relay["username"].split(":")
        assert device == phone.state.device_id
        assert int(expiry) * 1000 == result["expires_at"]
        assert 3500 <= int(expiry) - time.time() <= 3700
        address, _ = await allocate(turn, relay["username"], relay["credential"])
        assert address == "127.0.0.1"
    assert turn.secret.encode() not in (tmp_path / "phone" / "state.json").read_bytes()


async def test_without_a_turn_server_there_is_nothing_to_relay_through(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "phone") as phone:
        assert await phone.connection.request("calls.ice_servers") == {"ice_servers": [], "expires_at": None}


@pytest.mark.parametrize(
    ("case", "secret", "age_s"),
    # Expired a minute ago: coturn compares with a clock it caches, which can lag a second behind.
    [("wrong secret", b"not the secret coturn was given", 0), ("expired", None, 3660)],
)
async def test_coturn_refuses_wrong_and_expired_credentials(
    turn: Coturn, case: str, secret: bytes | None, age_s: int
) -> None:
    made = credential(secret or turn.secret.encode(), (turn.url,), "device", int(time.time()) - age_s)
    with pytest.raises(TransactionFailed, match="401"):
        await allocate(turn, made.username, made.credential)


def test_turn_settings_are_checked_before_the_server_starts(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-secret-of-enough-characters\n")
    assert Settings(turn_url="turn:127.0.0.1:3478", turn_secret_file=secret).turn_server() == TurnServer(
        "turn:127.0.0.1:3478", b"a-secret-of-enough-characters"
    )
    env = {"LOCKSTEP_TURN_URL": "turn:turn.example:3478", "LOCKSTEP_TURN_SECRET_FILE": str(secret)}
    assert Settings.from_env(env).turn_url == "turn:turn.example:3478"
    short = tmp_path / "short"
    short.write_text("tiny")
    for kwargs, message in [
        ({"turn_url": "turn:127.0.0.1:3478"}, "go together"),
        ({"turn_url": "http://x", "turn_secret_file": secret}, "not a TURN URL"),
        ({"turn_url": "turn:h:3478", "turn_secret_file": tmp_path / "missing"}, "cannot read"),
        ({"turn_url": "turn:h:3478", "turn_secret_file": short}, "16 characters"),
    ]:
        with pytest.raises(SettingsError, match=message):
            Settings(**kwargs)  # type: ignore[arg-type]


def nominated_pair(connection: Any) -> tuple[str, str]:
    """(local, remote) candidate types of the pair ICE nominated; aiortc has no public getter for it, so
    this reads aioice's connection behind the first transceiver (a test-only peek)."""
    ice = connection.getTransceivers()[0].sender.transport.transport._connection
    pair = ice._nominated[1]
    return pair.local_candidate.type, pair.remote_candidate.type


async def test_a_relay_only_call_flows_through_coturn(live_server, tmp_path: Path, turn: Coturn) -> None:
    live_server.services.turn = turn.server()
    live_server.clock.tick_with_real_time()
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    low, high = write_tone(tmp_path / "440.wav", 440), write_tone(tmp_path / "660.wav", 660)
    pairs: list[tuple[str, str]] = []
    async with messengers(alice.primary_dir, bob.primary_dir) as (a_phone, b_phone):
        options = {"host_addresses": ("127.0.0.1",), "relay_only": True}
        caller = Phone(a_phone, CallOptions(play=low, record=tmp_path / "alice.wav", **options))
        callee = Phone(b_phone, CallOptions(play=high, record=tmp_path / "bob.wav", **options))
        for phone in (caller, callee):
            phone.on_connected = lambda connection: pairs.append(nominated_pair(connection))
        answering = asyncio.create_task(callee.answer_next(wait=20))
        dialled = await caller.dial("bob", seconds=2)
        answered = await answering
    assert dialled.record.outcome is Outcome.COMPLETED and answered is not None
    assert pairs == [("relay", "relay"), ("relay", "relay")]
    assert dominant_frequency(tmp_path / "bob.wav")[0] == pytest.approx(440, abs=5)
    assert dominant_frequency(tmp_path / "alice.wav")[0] == pytest.approx(660, abs=5)
