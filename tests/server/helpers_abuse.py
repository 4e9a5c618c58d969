"""Raw clients for abuse tests: sockets from chosen loopback addresses, keys published, junk sends."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from websockets.asyncio.client import connect

from lockstep.client.connection import ServerConnection, websocket_url
from lockstep.client.primary import PrimarySession
from lockstep.client.state import DeviceState
from lockstep.e2e.olm import OlmDevice
from lockstep.link.encoding import b64u_encode
from lockstep.link.envelope import Context, auth_message, sign


async def connect_from(url: str, address: str) -> ServerConnection:
    """A socket whose source address is ``address`` (any of 127.0.0.0/8 works on Linux loopback)."""
    socket = await connect(websocket_url(url), local_addr=(address, 0), open_timeout=10)
    hello = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
    return ServerConnection(socket, hello)


def auth_fields(state: DeviceState, connection: ServerConnection, *, valid: bool = True) -> dict[str, str]:
    """``auth`` request fields for ``state``'s device: a correct signature, or one over other bytes."""
    challenge = connection.challenge if valid else secrets.token_bytes(32)
    signature = sign(state.device_key(), Context.AUTH, auth_message(challenge, state.origin))
    return {"device_id": state.device_id, "signature": b64u_encode(signature)}


async def publish_keys(session: PrimarySession, one_time_keys: int = 5) -> None:
    """Publish a device key bundle with ``one_time_keys`` one-time keys and a fallback key."""
    olm = OlmDevice.create()
    bundle = olm.device_keys(session.state.account.account_id, session.state.device_id, 1)
    await session.connection.request(
        "keys.upload",
        bundle=bundle.seal(session.state.device_key()).to_json(),
        one_time_keys=[key.to_json() for key in olm.new_one_time_keys(one_time_keys)],
        fallback_key=olm.new_fallback_key().to_json(),
    )


def junk_payload(device_id: str, ciphertext_bytes: int) -> dict[str, Any]:
    """An Olm payload the server accepts (it cannot tell junk from ciphertext)."""
    return {
        "device_id": device_id,
        "type": "olm",
        "olm_type": 1,
        "sender_key": "A" * 43,
        "ciphertext": "A" * ciphertext_bytes,
    }


async def send_junk(
    sender: PrimarySession, recipient: PrimarySession, ciphertext_bytes: int, **fields: Any
) -> dict[str, Any]:
    """A direct send from one primary-only account to another (no other devices to reach)."""
    return await sender.connection.request(
        "messages.send",
        message_id=b64u_encode(secrets.token_bytes(16)),
        to=recipient.state.account.account_id,
        payloads=[junk_payload(recipient.state.device_id, ciphertext_bytes)],
        **fields,
    )
