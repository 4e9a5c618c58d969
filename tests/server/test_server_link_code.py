"""Link with a typed code (linking.md §10) end to end over real sockets: Python primary and companion,
server with a fake clock. CPace runs through the server, which burns a code on its first offer."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from helpers_linking import companion, primary

from lockstep.client.companion import LinkNotCompleted
from lockstep.client.connection import ServerConnection
from lockstep.client.errors import ServerRefused
from lockstep.link import bycode, cpace
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.wording import companion_notice
from lockstep.server.link_sessions import CODE_SCHEDULE_MS

pytestmark = pytest.mark.anyio


def mistyped(code: str) -> str:
    """The same code id (so the offer reaches the companion) with the last character changed."""
    return code[:-1] + ("0" if code[-1] != "0" else "1")


async def test_a_typed_code_links_a_companion_after_context_and_consent(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        async with companion(live_server.url, tmp_path / "c", typed_code=True) as run:
            shown = await asyncio.wait_for(run.codes.get(), 5)
            assert shown.typed is not None and len(shown.typed) == bycode.CODE_LENGTH
            assert shown.expires_at - shown.server_time == CODE_SCHEDULE_MS[0] == 180_000
            typed_on_phone = bycode.parse_code(bycode.format_code(shown.typed).lower())
            code = await phone.offer_code(typed_on_phone)
            assert code == shown.code  # the QR payload, carried under the CPace key
            context = await phone.inspect(code)
            await asyncio.wait_for(run.scanned.wait(), 5)  # "confirm on your phone"
            assert context["companion"]["description"].startswith("Lockstep terminal")
            device_id = await phone.approve(code, "Laptop")
            linked = await run.result()
        assert linked.state.device_id == device_id
        assert linked.state.account.handle == "alice"
        await linked.close()


async def test_a_wrong_code_burns_the_code_and_links_nothing(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as phone:
        async with companion(live_server.url, tmp_path / "c", typed_code=True) as run:
            shown = await asyncio.wait_for(run.codes.get(), 5)
            assert shown.typed is not None
            with pytest.raises(bycode.WrongCode):
                await phone.offer_code(mistyped(shown.typed))
            with pytest.raises(LinkNotCompleted, match=companion_notice("wrong_code")):
                await run.result()
            with pytest.raises(ServerRefused) as second:
                await phone.offer_code(shown.typed)  # the right code, too late: one attempt per code
            assert second.value.code == "ref_used"
        assert len(phone.state.devices.devices) == 1
        await phone.refresh()
        assert len(phone.state.devices.devices) == 1


async def test_an_expired_code_is_refused(live_server, tmp_path: Path) -> None:
    async with (
        primary(live_server.url, tmp_path / "p") as phone,
        companion(live_server.url, tmp_path / "c", typed_code=True) as run,
    ):
        shown = await asyncio.wait_for(run.codes.get(), 5)
        assert shown.typed is not None
        live_server.clock.advance(CODE_SCHEDULE_MS[0] + 1)
        with pytest.raises(ServerRefused) as late:
            await phone.offer_code(shown.typed)
        assert late.value.code in ("ref_expired", "ref_unknown")


async def test_offers_are_limited_per_account(live_server, tmp_path: Path) -> None:
    async with primary(live_server.url, tmp_path / "p") as guesser:
        refusals = []
        for attempt in range(6):
            with pytest.raises(ServerRefused) as refused:
                await guesser.offer_code(f"ZZ{attempt}00000")
            refusals.append(refused.value.code)
        assert refusals == ["ref_unknown"] * 5 + ["rate_limited"]
        async with primary(live_server.url, tmp_path / "q", "bob") as other:  # same address, own budget
            with pytest.raises(ServerRefused) as refused:
                await other.offer_code("ZZ000000")
            assert refused.value.code == "ref_unknown"


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every request, result and event the clients exchanged with the server: the server's view."""
    seen: list[dict[str, Any]] = []
    request, next_event = ServerConnection.request, ServerConnection.next_event

    async def recording_request(self: ServerConnection, op: str, **fields: Any) -> dict[str, Any]:
        seen.append({"op": op, **fields})
        result = await request(self, op, **fields)
        seen.append(result)
        return result

    async def recording_next_event(self: ServerConnection, timeout: float | None = None) -> dict[str, Any]:
        event = await next_event(self, timeout)
        seen.append(event)
        return event

    monkeypatch.setattr(ServerConnection, "request", recording_request)
    monkeypatch.setattr(ServerConnection, "next_event", recording_next_event)
    yield seen


async def test_the_servers_view_gives_nothing_to_test_a_guess_against(
    live_server, tmp_path: Path, frames: list[dict[str, Any]]
) -> None:
    """What the server relays: the code id, CPace shares and a sealed payload. Neither the code's
    secret characters nor the link secret are in it, and even the right guess opens nothing without
    a CPace scalar: every key a guesser can compute from the frames and the code fails."""
    async with (
        primary(live_server.url, tmp_path / "p") as phone,
        companion(live_server.url, tmp_path / "c", typed_code=True) as run,
    ):
        shown = await asyncio.wait_for(run.codes.get(), 5)
        assert shown.typed is not None
        code = await phone.offer_code(shown.typed)
        await phone.decline(code)
        with pytest.raises(LinkNotCompleted):
            await run.result()
    wire = json.dumps(frames)
    assert shown.typed[bycode.CODE_ID_LENGTH :] not in wire.upper()
    offer = next(frame for frame in frames if frame.get("op") == "link.code.offer")
    answer = next(frame for frame in frames if frame.get("event") == "link.code.answer")
    sid, ya = b64u_decode(offer["sid"]), b64u_decode(offer["share"])
    yb, sealed = b64u_decode(answer["share"]), b64u_decode(answer["sealed"])
    for secret in (code.link_secret, code.ephemeral_key):  # in the QR path the QR alone has them
        assert b64u_encode(secret) not in wire and secret.hex() not in wire
    guess = shown.typed.encode()  # the right code: the strongest guess there is
    g = cpace.calculate_generator(guess, bycode.channel_identifier(phone.state.origin), sid)
    transcript = cpace.transcript_ir(ya, b"", yb, b"")
    candidates = [hashlib.sha512(guess).digest()] + [
        cpace.isk(sid, k, transcript) for k in (g, ya, yb, bytes(32))
    ]
    for isk in candidates:
        key, nonce = bycode._seal_key(isk, sid)
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(nonce, sealed, None)
