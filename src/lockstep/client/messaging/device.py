"""What every part of the messenger shares: this device's session and E2E store, and the one way
requests go to the server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from lockstep.client import e2estate
from lockstep.client.e2estate import E2EStore
from lockstep.client.errors import ClientError
from lockstep.client.session import DeviceSession, DeviceUnlinked
from lockstep.e2e.envelope import Kind, MessageEnvelope

MAX_FRAME = 60_000
"""The longest request this client sends, in characters of JSON (the server takes 64 KiB frames)."""
TOO_LARGE = "this message is too large for one request to all devices; send it as a file"


@dataclass(slots=True)
class Device:
    session: DeviceSession
    store: E2EStore
    ca_file: str | None = None

    @property
    def account_id(self) -> str:
        return self.session.state.account.account_id

    @property
    def device_id(self) -> str:
        return self.session.state.device_id

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if len(json.dumps(fields)) > MAX_FRAME:
            raise ClientError(TOO_LARGE)
        return await self.session.connection.request(op, **fields)

    def envelope(
        self, kind: Kind, conversation: str, body: dict[str, Any], message_id: str
    ) -> MessageEnvelope:
        """A message from this device, its id marked seen: the server never brings back what this
        device sent, and a copy under this id is dropped unopened."""
        self.store.seen.add(message_id)
        return MessageEnvelope(
            kind, message_id, conversation, self.account_id, self.device_id, self.session.clock.now_ms(), body
        )

    def unlinked(self) -> NoReturn:
        """The server said this device was unlinked: forget everything it kept, and say so."""
        self.store.close()
        self.session.state.wipe()
        e2estate.wipe(self.session.state.directory)
        raise DeviceUnlinked("this device was unlinked from its account; its keys are wiped")
