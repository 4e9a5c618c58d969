"""Lockstep's side of the messaging benchmark: accounts set up through the real flows, then load from
worker processes speaking the wire protocol.

Set-up (in the orchestrator, :func:`prepare`) uses the project's own clients: every recipient account
gets a primary and a companion linked by scanning (two devices), every sender account one device,
every device publishes its end-to-end keys through a ``Messenger``, as a real client does, and each
recipient writes once to its senders (so the conversations are known to both sides).

The workers (this file run as a script) then play those devices with the wire protocol only: a
sender signs in with its device key and sends ``messages.send`` with one Olm payload per receiving
device, each a ciphertext-sized body (the size of a real Olm message carrying a 60-character text,
see :func:`typical_ciphertext_bytes`); a receiving device takes each ``message`` event, records it
and acknowledges the batch (``messages.ack``), which is when the server deletes it: every message is
stored until each device acknowledged it. No Olm work happens in the workers, as no OMEMO work
happens in the XMPP clients: the figures are the servers', not the clients' cryptography (Olm and
Megolm are microseconds in vodozemac, see bench/olm_forgery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loadgen import LoadClient, Sender, Tally, b64u_decode, b64u_encode, run_worker

from lockstep.client.connection import ServerConnection
from lockstep.client.state import DeviceState
from lockstep.link.envelope import Context, auth_message, sign

TEXT_CHARACTERS = 60


def typical_ciphertext_bytes() -> int:
    """Bytes of one Olm normal message carrying a text of TEXT_CHARACTERS, as Messenger sends it."""
    from lockstep.e2e.envelope import Kind, MessageEnvelope, direct_conversation
    from lockstep.e2e.olm import OlmCiphertext, OlmDevice

    alice, bob = OlmDevice.create(), OlmDevice.create()
    (one_time,) = bob.new_one_time_keys(1)
    account, device = "A" * 22, "D" * 22
    plaintext = MessageEnvelope(
        Kind.TEXT,
        "M" * 22,
        direct_conversation(account, "B" * 22),
        account,
        device,
        1_800_000_000_000,
        {"text": "x" * TEXT_CHARACTERS},
    ).encode()
    first = alice.encrypt(bob.identity_key, plaintext, one_time.key)
    bob.decrypt(alice.identity_key, first)
    alice.decrypt(bob.identity_key, bob.encrypt(alice.identity_key, b"reply"))
    normal: OlmCiphertext = alice.encrypt(bob.identity_key, plaintext)  # what a conversation sends
    return len(normal.body)


async def prepare(urls: list[str], senders: int, recipients: int, root: Path) -> list[dict[str, Any]]:
    """Accounts and devices through the real flows; returns one entry per device for the workers.

    Devices are spread over ``urls`` (instances sharing one database): a recipient's companion is
    linked on another instance than its primary, and senders alternate.
    """
    from lockstep.client.companion import ShownCode, link
    from lockstep.client.messenger import Messenger
    from lockstep.client.primary import PrimarySession, create_account

    devices: list[dict[str, Any]] = []

    async def recipient(index: int) -> None:
        url, other = urls[index % len(urls)], urls[(index + 1) % len(urls)]
        state = await create_account(url, f"rcpt{index}", f"Recipient {index}", "Phone", root / f"r{index}")
        primary = await PrimarySession.open(state)
        shown: asyncio.Queue[ShownCode] = asyncio.Queue()
        task = asyncio.create_task(link(other, root / f"r{index}-laptop", shown.put_nowait))
        code = (await shown.get()).code
        await primary.inspect(code)
        await primary.approve(code, "Laptop")
        companion = await task
        await companion.close()
        await primary.close()
        account = state.account.account_id
        devices.append({"account": account, "state": str(state.directory), "role": "primary", "url": url})
        devices.append(
            {"account": account, "state": str(companion.state.directory), "role": "companion", "url": other}
        )

    async def sender(index: int) -> None:
        url = urls[index % len(urls)]
        state = await create_account(url, f"sndr{index}", f"Sender {index}", "Phone", root / f"s{index}")
        devices.append({"state": str(state.directory), "role": "primary", "url": url, "number": index})

    gate = asyncio.Semaphore(8)

    async def gated(job: Any) -> None:
        async with gate:
            await job

    await asyncio.gather(*(gated(recipient(i)) for i in range(recipients)))
    await asyncio.gather(*(gated(sender(i)) for i in range(senders)))

    async def publish(entry: dict[str, Any]) -> None:
        async with gate:
            state = DeviceState.load(Path(entry["state"]), entry["role"])
            async with Messenger.open(state):
                pass  # opening publishes the device's end-to-end keys

    await asyncio.gather(*(publish(entry) for entry in devices))

    async def reply(index: int) -> None:
        # Each recipient writes to its senders once: a conversation both sides wrote into, as chats
        # are, rather than a stranger's one-way stream (which the server meters per message).
        async with gate:
            primary = DeviceState.load(root / f"r{index}", "primary")
            async with Messenger.open(primary) as messenger:
                for sender_index in range(index, senders, recipients):
                    await messenger.send(f"@sndr{sender_index}", "hello")

    await asyncio.gather(*(reply(i) for i in range(recipients)))
    receiving = [d for d in devices if "account" in d]
    by_account: dict[str, list[str]] = {}
    for entry in receiving:
        state = DeviceState.load(Path(entry["state"]), entry["role"])
        by_account.setdefault(entry["account"], []).append(state.device_id)
    accounts = sorted(by_account)
    for entry in devices:
        if "number" in entry:
            entry["to"] = accounts[entry["number"] % len(accounts)]
            entry["targets"] = sorted(by_account[entry["to"]])
    return devices


# --- the worker ------------------------------------------------------------------------------------


async def sign_in(entry: dict[str, Any]) -> tuple[ServerConnection, DeviceState]:
    state = DeviceState.load(Path(entry["state"]), entry["role"])
    connection = await ServerConnection.open(entry["url"])
    signature = sign(state.device_key(), Context.AUTH, auth_message(connection.challenge, state.origin))
    await connection.request("auth", device_id=state.device_id, signature=b64u_encode(signature))
    return connection, state


class LockstepClient(LoadClient):
    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, spec: dict[str, Any], tally: Tally) -> list[Sender]:
        gate = asyncio.Semaphore(16)

        async def open_one(entry: dict[str, Any]) -> tuple[ServerConnection, DeviceState]:
            async with gate:
                return await sign_in(entry)

        receiving = await asyncio.gather(*(open_one(e) for e in spec["receivers"]))
        for connection, state in receiving:
            self.connections.append(connection)
            self.tasks.append(asyncio.create_task(self._receive(connection, state.device_id, tally)))
        sending = await asyncio.gather(*(open_one(e) for e in spec["senders"]))
        senders = []
        for (connection, _state), entry in zip(sending, spec["senders"], strict=True):
            self.connections.append(connection)
            senders.append(Sender(int(entry["number"]), entry["to"], self._sender(connection, entry)))
        return senders

    @staticmethod
    def _sender(connection: ServerConnection, entry: dict[str, Any]) -> Any:
        sender_key = b64u_encode(os.urandom(32))  # the server stores it; only receiving clients read it
        count = [0]

        async def send(body: bytes) -> None:
            count[0] += 1
            await connection.request(
                "messages.send",
                message_id=f"bench{int(entry['number']):05d}x{count[0]:010d}",
                to=entry["to"],
                payloads=[
                    {
                        "device_id": device_id,
                        "type": "olm",
                        "olm_type": 1,
                        "sender_key": sender_key,
                        "ciphertext": b64u_encode(body),
                    }
                    for device_id in entry["targets"]
                ],
            )

        return send

    @staticmethod
    async def _receive(connection: ServerConnection, device_id: str, tally: Tally) -> None:
        with contextlib.suppress(Exception):
            while True:
                events = [await connection.next_event(), *connection.drain_events()]
                last = 0
                for event in events:
                    if event.get("event") == "message":
                        tally.delivered(device_id, b64u_decode(event["payload"]["ciphertext"]))
                        last = max(last, int(event["seq"]))
                if last:  # the server keeps each message until its device acknowledges it
                    await connection.request("messages.ack", up_to=last)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(c.close() for c in self.connections), return_exceptions=True)


if __name__ == "__main__":
    run_worker(LockstepClient())
