"""Calls between two accounts' Python devices over a live server, with real media (aiortc on loopback):
the tone each side plays is the tone the other records, every device of the callee rings, and the
call's outcome reaches every device (messaging.md §14)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers_messaging import load, make_account, messengers

from calls_samples import flip_a_byte, sdp
from lockstep.calls.machine import CallState, Outcome
from lockstep.calls.signals import Media, Offer, to_body
from lockstep.client.calls import CallOptions, Phone, UnknownHandle
from lockstep.client.primary import PrimarySession
from lockstep.e2e.envelope import Kind
from lockstep.server import gateway
from lockstep.server.frames import Request
from tone import dominant_frequency, write_tone

pytestmark = pytest.mark.anyio
LOOPBACK = ("127.0.0.1",)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lockstep.sqlite3'}"  # media, not storage, is under test here


async def test_a_voice_call_carries_each_sides_tone_to_the_other(live_server, tmp_path: Path) -> None:
    live_server.clock.tick_with_real_time()
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    low, high = write_tone(tmp_path / "440.wav", 440), write_tone(tmp_path / "880.wav", 880)
    async with messengers(alice.companion_dir, bob.primary_dir, bob.companion_dir) as (
        a_laptop,
        b_phone,
        b_laptop,
    ):
        caller = Phone(
            a_laptop, CallOptions(play=low, record=tmp_path / "heard-by-alice.wav", host_addresses=LOOPBACK)
        )
        callee = Phone(
            b_phone, CallOptions(play=high, record=tmp_path / "heard-by-bob.wav", host_addresses=LOOPBACK)
        )
        other = Phone(b_laptop, CallOptions(host_addresses=LOOPBACK))
        rang: list[CallState] = []
        other.on_state = lambda call: rang.append(call.state)
        answering = asyncio.create_task(callee.answer_next(wait=20))
        watching = asyncio.create_task(other.follow(wait=30))
        dialled = await caller.dial("bob", Media.AUDIO, seconds=3)
        answered = await answering
        (seen_elsewhere,) = await watching
    assert dialled.record.outcome is Outcome.COMPLETED, dialled
    assert answered is not None and answered.record.outcome is Outcome.COMPLETED
    assert dialled.connected_after_ms is not None and dialled.first_audio_after_ms is not None
    assert dominant_frequency(tmp_path / "heard-by-bob.wav")[0] == pytest.approx(440, abs=5)
    assert dominant_frequency(tmp_path / "heard-by-alice.wav")[0] == pytest.approx(880, abs=5)
    assert rang[:2] == [CallState.RINGING_IN, CallState.ELSEWHERE]  # the laptop rang, then stopped
    assert seen_elsewhere.outcome is Outcome.COMPLETED and not seen_elsewhere.here
    assert seen_elsewhere.summary().startswith("voice call, ")


async def test_two_terminals_dialling_each_other_at_once_end_up_in_one_call(
    live_server, tmp_path: Path
) -> None:
    """Glare (messaging.md §14.9) through aiortc: both offers leave before either arrives; the dialler
    whose call has the higher id gives way and answers the other, so both end in the same call."""
    live_server.clock.tick_with_real_time()
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a_phone, b_phone):
        states: dict[str, list[tuple[str, CallState]]] = {"alice": [], "bob": []}
        alices, bobs = (Phone(p, CallOptions(host_addresses=LOOPBACK)) for p in (a_phone, b_phone))
        alices.on_state = lambda call: states["alice"].append((call.call_id, call.state))
        bobs.on_state = lambda call: states["bob"].append((call.call_id, call.state))
        from_alice, from_bob = await asyncio.wait_for(
            asyncio.gather(alices.dial("bob", seconds=1), bobs.dial("alice", seconds=1)), timeout=40
        )
    assert from_alice.record.outcome is from_bob.record.outcome is Outcome.COMPLETED
    assert from_alice.record.call_id == from_bob.record.call_id  # one call
    dialled = {call_id for who in states.values() for call_id, state in who if state is CallState.RINGING_OUT}
    assert len(dialled) == 2 and from_alice.record.call_id == min(dialled)  # true glare, the lower id won
    assert from_alice.connected_after_ms is not None and from_bob.connected_after_ms is not None


async def test_calling_a_handle_nobody_has(live_server, tmp_path: Path) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    async with messengers(alice.primary_dir) as (phone,):
        with pytest.raises(UnknownHandle, match="no account @nobody"):
            await Phone(phone).dial("nobody")


async def test_a_server_that_changes_call_signalling_makes_the_call_fail_with_the_reason(
    live_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay flips one bit of every ciphertext the callee sends: its answer cannot be decrypted, so
    the caller ends the call and says why; nothing connects."""
    live_server.clock.tick_with_real_time()
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.primary_dir, bob.primary_dir) as (a_phone, b_phone):
        honest_send = gateway.OPERATIONS["messages.send"]

        async def tampering_send(services: Any, connection: Any, request: Request) -> dict[str, Any]:
            if connection.identity is not None and connection.identity.device_id == b_phone.device_id:
                for payload in request.fields.get("payloads", []):
                    payload["ciphertext"] = flip_a_byte(payload["ciphertext"])
            return await honest_send(services, connection, request)

        monkeypatch.setitem(gateway.OPERATIONS, "messages.send", tampering_send)
        caller, callee = (
            Phone(a_phone, CallOptions(host_addresses=LOOPBACK)),
            Phone(b_phone, CallOptions(host_addresses=LOOPBACK)),
        )
        answering = asyncio.create_task(callee.answer_next(wait=20))
        dialled = await asyncio.wait_for(caller.dial("bob"), timeout=20)
        answered = await asyncio.wait_for(answering, timeout=20)
    assert dialled.record.outcome is Outcome.FAILED and dialled.connected_after_ms is None
    assert dialled.reason is not None and "@bob could not be decrypted" in dialled.reason
    assert answered is not None and answered.record.outcome is Outcome.FAILED
    assert answered.connected_after_ms is None


async def test_malformed_signals_are_dropped_with_the_reason_and_the_next_call_still_rings(
    live_server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live_server.clock.tick_with_real_time()
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    bad_offer = to_body(Offer("m" * 22, Media.AUDIO, sdp())) | {"sdp": sdp().replace("a=fingerprint", "a=x")}
    bad_candidate = {
        "call_id": "n" * 22,
        "type": "candidates",
        "candidates": [{"candidate": "candidate:x", "mid": "0"}],
    }
    async with messengers(alice.primary_dir, bob.primary_dir) as (a_phone, b_phone):
        await a_phone.send_direct("bob", Kind.CALL, bad_offer)
        await a_phone.send_direct("bob", Kind.CALL, bad_candidate)
        callee = Phone(b_phone, CallOptions(host_addresses=LOOPBACK))
        with caplog.at_level(logging.WARNING, logger="lockstep.client.calls"):
            assert await callee.answer_next(wait=2) is None
        reasons = [r.getMessage() for r in caplog.records]
        assert any("without a DTLS fingerprint" in reason for reason in reasons), reasons
        assert any("needs foundation" in reason for reason in reasons), reasons
        assert not any("v=0" in reason for reason in reasons)  # reasons, never the description
        answering = asyncio.create_task(callee.answer_next(wait=20))
        dialled = await Phone(a_phone, CallOptions(host_addresses=LOOPBACK)).dial("bob", seconds=0.5)
        assert (await answering) is not None
    assert dialled.record.outcome is Outcome.COMPLETED


async def test_an_unlinked_device_gets_no_offer_and_the_linked_ones_still_ring(
    live_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_server.clock.tick_with_real_time()
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    laptop_id = load(bob.companion_dir).device_id
    phone = await PrimarySession.open(load(bob.primary_dir))
    await phone.unlink(laptop_id)
    await phone.close()
    addressed: list[str] = []
    honest_send = gateway.OPERATIONS["messages.send"]

    async def recording_send(services: Any, connection: Any, request: Request) -> dict[str, Any]:
        addressed.extend(str(p.get("device_id")) for p in request.fields.get("payloads", []))
        return await honest_send(services, connection, request)

    monkeypatch.setitem(gateway.OPERATIONS, "messages.send", recording_send)
    async with messengers(alice.companion_dir, bob.primary_dir) as (a_laptop, b_phone):
        answering = asyncio.create_task(
            Phone(b_phone, CallOptions(host_addresses=LOOPBACK)).answer_next(wait=20)
        )
        dialled = await Phone(a_laptop, CallOptions(host_addresses=LOOPBACK)).dial("bob", seconds=0.5)
        assert (await answering) is not None
    assert dialled.record.outcome is Outcome.COMPLETED
    assert laptop_id not in addressed and load(bob.primary_dir).device_id in addressed
    assert await live_server.services.store.fetch_messages(laptop_id, 0, 100) == []
