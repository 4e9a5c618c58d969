"""``calls.ice_servers``: where a device's calls may find STUN and TURN (messaging.md §14.6).

With ``--turn-url`` and ``--turn-secret`` the answer names that coturn for STUN and for TURN, with a
credential in coturn's shared-secret scheme (:mod:`lockstep.calls.turn`) for this device, valid one
hour; without them it is empty and calls use host candidates only (two devices on one network). The
server keeps nothing: coturn checks the credential itself. Call signalling does not pass through here —
it is end to end encrypted messages (§14.1).
"""

from __future__ import annotations

from typing import Any

from lockstep.server.api_accounts import require_device
from lockstep.server.connection import Connection
from lockstep.server.errors import ApiError, ErrorCode
from lockstep.server.frames import Request
from lockstep.server.services import Services


async def ice_servers(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_device(connection)
    now = services.clock()
    if services.turn is None:
        return {"ice_servers": [], "expires_at": None}
    if not await services.limits.sends.allow(identity.device_id, now):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many requests from this device; wait a minute")
    servers, expires_at = services.turn.ice_servers(identity.device_id, now // 1000)
    return {"ice_servers": servers, "expires_at": expires_at * 1000}
