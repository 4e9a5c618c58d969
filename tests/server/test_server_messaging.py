"""End-to-end messaging over a live server: Python primaries and companions of two accounts.

Fan-out to every device, offline delivery in order exactly once, groups with removal, media with
tamper checks, receipts, unlinking, and a database that never holds plaintext.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_messaging import make_account, messengers, shown

pytestmark = pytest.mark.anyio


async def test_a_message_from_a_companion_reaches_every_other_device_and_receipts_flow_back(
    live_server, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    async with messengers(alice.companion_dir, alice.primary_dir, bob.primary_dir, bob.companion_dir) as (
        a_laptop,
        a_phone,
        b_phone,
        b_laptop,
    ):
        sent = await a_laptop.send("bob", "hello from the laptop")
        assert sent.devices == 3  # bob's two devices and alice's phone
        for device in (a_phone, b_phone, b_laptop):
            got = [m for m in await device.receive(wait=5, until=shown) if m.kind == "text"]
            assert [m.text for m in got] == ["hello from the laptop"]
            assert got[0].message_id == sent.message_id
            assert got[0].sender_handle == "alice"
        assert a_laptop.status(sent.message_id) == "sent"
        receipts = [
            m
            for m in await a_laptop.receive(wait=5, until=lambda r: any(m.kind == "receipt" for m in r))
            if m.kind == "receipt"
        ]
        assert receipts and a_laptop.status(sent.message_id) == "delivered"
        # Bob answers from his phone: alice's two devices and bob's laptop get it.
        reply = await b_phone.send("@alice", "hi alice")
        for device in (a_laptop, a_phone, b_laptop):
            texts = [m.text for m in await device.receive(wait=5, until=shown) if m.kind == "text"]
            assert texts == ["hi alice"]
        assert reply.devices == 3
