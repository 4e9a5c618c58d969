"""The WebSocket endpoint: accept, greet, read requests in order, dispatch, clean up (linking.md §7)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from lockstep import __version__
from lockstep.link.encoding import b64u_encode
from lockstep.server import (
    api_accounts,
    api_calls,
    api_groups,
    api_keys,
    api_linking,
    api_messages,
    api_time,
    media,
)
from lockstep.server.admission import Refused
from lockstep.server.clock import precise_ms
from lockstep.server.connection import CLOSE_TRY_LATER, Connection
from lockstep.server.errors import ApiError, ErrorCode, StorageFull, Unavailable, storage_refusal
from lockstep.server.events import Hello, ServerInfo
from lockstep.server.frames import Request, error_reply, reply
from lockstep.server.services import Services

log = logging.getLogger(__name__)

Handler = Callable[[Services, Connection, Request], Awaitable[dict[str, Any]]]

OPERATIONS: dict[str, Handler] = {
    "account.register": api_accounts.register,
    "auth": api_accounts.auth,
    "devices.list": api_accounts.list_devices,
    "devices.update": api_accounts.update_devices,
    "link.start": api_linking.start,
    "link.inspect": api_linking.inspect,
    "link.approve": api_linking.approve,
    "link.decline": api_linking.decline,
    "link.code.offer": api_linking.code_offer,
    "link.code.answer": api_linking.code_answer,
    "time.sync": api_time.sync,
    "keys.upload": api_keys.upload,
    "keys.claim": api_keys.claim,
    "accounts.lookup": api_keys.lookup,
    "messages.send": api_messages.send,
    "messages.fetch": api_messages.fetch,
    "messages.ack": api_messages.ack,
    "groups.create": api_groups.create,
    "groups.add": api_groups.add,
    "groups.remove": api_groups.remove,
    "groups.get": api_groups.get,
    "groups.list": api_groups.list_groups,
    "media.token": media.token,
    "calls.ice_servers": api_calls.ice_servers,
}

ADDS_DATA = frozenset({"account.register", "link.approve", "messages.send", "groups.create", "groups.add"})
"""Operations refused with ``storage_full`` while the disk is below its reserve (disk.DiskGuard); the
rest use the reserve and keep working: signing in, reading, acknowledging, unlinking, and
``keys.upload`` (bounded per device, and clients publish keys before they fetch)."""

TOUCH_EVERY_MS = 30_000


async def handle_frame(services: Services, connection: Connection, frame: str) -> dict[str, Any]:
    request_id: int | None = None
    started, op = time.perf_counter(), "invalid"
    try:
        request = Request.parse(frame, received_ms=precise_ms(services.clock))
        request_id = request.id
        handler = OPERATIONS.get(request.op)
        if handler is None:
            op = "unknown"
            raise ApiError(ErrorCode.UNKNOWN_OP, f"unknown op '{request.op[:40]}'")
        op = request.op
        if request.op in ADDS_DATA and services.disk is not None:
            services.disk.check()
        result = await handler(services, connection, request)
        await _touch(services, connection)
        return reply(request.id, result)
    except ApiError as error:
        return error_reply(request_id if request_id is not None else error.request_id, error)
    except Unavailable as error:  # the database or Redis is down: retry later, nothing half-done
        log.warning("request refused, a backing service is unavailable: %s", error)
        return error_reply(
            request_id, ApiError(ErrorCode.UNAVAILABLE, "the server cannot reach its store; retry")
        )
    except StorageFull as error:  # nothing was written; reads and sign-ins keep working
        log.warning("a write failed: %s", error)
        return error_reply(request_id, storage_refusal(error)[1])
    except Exception:  # a bug: the client gets a clear error, the log gets the traceback
        log.exception("request failed")
        return error_reply(
            request_id, ApiError(ErrorCode.INTERNAL_ERROR, "the server failed on this request")
        )
    finally:
        services.metrics.request_seconds.labels(op).observe(time.perf_counter() - started)


async def _touch(services: Services, connection: Connection) -> None:
    if connection.identity is None:
        return
    now = services.clock()
    if now - connection.last_touched >= TOUCH_EVERY_MS:
        connection.last_touched = now
        await api_accounts.touch_device(services, connection.identity.device_id, now)


async def _admit(services: Services, connection: Connection) -> bool:
    """Count a new socket against the unauthenticated caps (admission.py); close it if over."""
    decision = services.admission.admit(connection, connection.address)
    if isinstance(decision, Refused):
        await connection.websocket.close(CLOSE_TRY_LATER, decision.reason)
        return False
    if decision.evicted is not None:
        decision.evicted.close_soon(CLOSE_TRY_LATER, "server busy: too many unauthenticated connections")
    return True


def _settle(services: Services, connection: Connection) -> None:
    """After a request: an authenticated socket leaves the caps, a linking one may wait."""
    if connection.identity is not None:
        services.admission.settle(connection)
        if connection.deadline_task is not None:  # signed in for good: an idle device keeps no timer
            connection.deadline_task.cancel()
            connection.deadline_task = None
    elif connection.link_session_id is not None:
        services.admission.linking(connection)


async def serve_websocket(services: Services, websocket: WebSocket) -> None:
    await websocket.accept()
    services.metrics.websockets.inc()
    address = services.client_address(websocket).address
    connection = Connection(websocket, address, websocket.headers.get("user-agent", ""))
    if not await _admit(services, connection):
        return
    api_linking.watch_deadline(services, connection)
    writer = asyncio.create_task(connection.write_outbox(), name="ws-writer")
    server = ServerInfo(services.origin, "Lockstep", __version__)
    connection.push(Hello(server, b64u_encode(connection.challenge), services.clock()).to_json())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                connection.close_soon(1003, "binary frames are not part of this protocol")
                break
            signed_in = connection.identity is not None
            connection.push(await handle_frame(services, connection, text))
            _settle(services, connection)
            if not signed_in and connection.identity is not None:
                with contextlib.suppress(Unavailable):  # only a hint
                    await api_keys.warn_if_low(services, connection, connection.identity.device_id)
    except WebSocketDisconnect:
        pass
    finally:
        if connection.deadline_task is not None:
            connection.deadline_task.cancel()
        services.admission.settle(connection)
        await api_linking.end_link_session(services, connection)
        if connection.identity is not None:
            await services.hub.detach(connection.identity.device_id, connection)
        connection.close_soon(1000, "")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(writer, timeout=2)
        writer.cancel()
        services.metrics.websockets.dec()
