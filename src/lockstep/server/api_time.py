"""time.sync: the NTP on-wire exchange (RFC 5905 §8) over the app's WebSocket.

The client sends its transmit time t1; the server answers with t1 echoed, its receive time t2 and its
transmit time t3, all in milliseconds since the Unix epoch. The client notes its receive time t4 and
computes offset = ((t2 - t1) + (t3 - t4)) / 2 and delay = (t4 - t1) - (t3 - t2). Both server times
come from ``services.clock``, the clock every other server time comes from.
"""

from __future__ import annotations

from typing import Any

from lockstep.server.clock import precise_ms
from lockstep.server.connection import Connection
from lockstep.server.frames import Request
from lockstep.server.services import Services


async def sync(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    received = request.received_ms if request.received_ms is not None else precise_ms(services.clock)
    t1 = request.number("t1")
    return {"t1": t1, "t2": received, "t3": precise_ms(services.clock)}
