"""One WebSocket client: its identity once authenticated, its link session, and an ordered outbox.

Events for a socket can come from any task (another device's request, a rotation timer), so nothing
writes to the socket directly: everything goes through the outbox, drained by one writer task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from lockstep.link.devices import Role
from lockstep.server.client_address import address_key
from lockstep.server.fanout import FanoutTimer
from lockstep.server.frames import Outgoing, encode

log = logging.getLogger(__name__)

OUTBOX_SIZE = 256
CLOSE_POLICY = 1008
CLOSE_TOO_SLOW = CLOSE_POLICY
CLOSE_TRY_LATER = 1013
"""RFC 6455 §7.4.1 (IANA registry): over a connection cap, try again later."""
CLOSE_UNLINKED = 4001


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    account_id: str
    device_id: str
    role: Role

    @property
    def is_primary(self) -> bool:
        return self.role is Role.PRIMARY


class Connection:
    def __init__(self, websocket: WebSocket, address: str, user_agent: str) -> None:
        self.websocket = websocket
        self.address = address
        self.limit_key = address_key(address)
        """What per-address limits count: the address, or its IPv6 /64."""
        self.user_agent = user_agent
        self.challenge = secrets.token_bytes(32)
        self.identity: DeviceIdentity | None = None
        self.link_session_id: str | None = None
        self.link_task: asyncio.Task[None] | None = None
        self.deadline_task: asyncio.Task[None] | None = None
        """Closes the socket unless it authenticates or links in time (api_linking.watch_deadline)."""
        self.last_touched = 0
        self._outbox: asyncio.Queue[tuple[Outgoing, FanoutTimer | None] | None] = asyncio.Queue(
            maxsize=OUTBOX_SIZE
        )
        self._close: tuple[int, str] | None = None

    def push(self, frame: Outgoing, timer: FanoutTimer | None = None) -> None:
        """Queue a frame; ``timer`` is told once it is written (a send's copy, fanout.py)."""
        try:
            self._outbox.put_nowait((frame, timer))
        except asyncio.QueueFull:
            log.warning("closing a client that does not read its events (%s)", self.address)
            self.close_soon(CLOSE_TOO_SLOW, "client too slow")
            return
        if timer is not None:
            timer.expect()

    def close_soon(self, code: int, reason: str) -> None:
        """Close after what is queued; the first reason given is the one the client sees."""
        self._close = self._close or (code, reason)
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)

    async def write_outbox(self) -> None:
        """Send queued frames in order until a close is asked for or the socket goes away."""
        try:
            while (queued := await self._outbox.get()) is not None:
                frame, timer = queued
                await self.websocket.send_text(frame if isinstance(frame, str) else encode(frame))
                if timer is not None:
                    timer.written()
            code, reason = self._close or (1000, "")
            await self.websocket.close(code, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the peer is gone; the reader notices too
