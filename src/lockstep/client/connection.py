"""A WebSocket connection to a Lockstep server: requests matched to replies by id, events queued."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import platform
import ssl
from socket import gaierror
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from lockstep import __version__
from lockstep.client.errors import ClientError, ConnectionLost, RequestTimedOut, ServerRefused
from lockstep.link.encoding import b64u_decode

USER_AGENT = f"lockstep-cli/{__version__} ({platform.system()})"

REQUEST_TIMEOUT_S = 30.0
"""How long a small request may wait for its answer."""
SECONDS_PER_KB = 1.0
"""More time per 1,000 characters of request: the server's work grows with a request's size (a
messages.send of 60,000 characters carries copies for about 2,000 devices, which a loaded server took
past 30 s to queue; issue 15), so a large request gets up to a minute and a half, a small one stays
at 30 s."""


def request_timeout(frame_chars: int, base: float = REQUEST_TIMEOUT_S) -> float:
    """Seconds to wait for the answer to a request of ``frame_chars`` characters."""
    return base + SECONDS_PER_KB * frame_chars / 1000


def server_base(server_url: str) -> str:
    """``scheme://host[:port]`` of a server URL: Lockstep serves its API at the root of its address, so
    a page's address (``…/app``, ``…/link``) names the same server."""
    parts = urlsplit(server_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"the server URL must start with http:// or https://, got {server_url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def websocket_url(server_url: str) -> str:
    return server_base(server_url).replace("http", "ws", 1) + "/ws"  # https: -> wss:, http: -> ws:


def why_unreachable(error: BaseException) -> str:
    """One line a person can act on, for a failed connection (never a raw errno)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({error.verify_message})"
    if isinstance(error, ConnectionRefusedError):
        return "nothing is listening there (is `lockstep serve` running on that address?)"
    if isinstance(error, gaierror):
        return "that host name does not resolve"
    if isinstance(error, TimeoutError):
        return "no answer within 10 s"
    if isinstance(error, InvalidStatus):
        return f"it answered HTTP {error.response.status_code}, so it is not a Lockstep server's address"
    if isinstance(error, (InvalidHandshake, ConnectionClosed)):
        return "it does not speak Lockstep's WebSocket protocol"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[:1].lower() + error.strerror[1:]
    return type(error).__name__


class ServerConnection:
    def __init__(
        self, socket: ClientConnection, hello: dict[str, Any], request_timeout: float = REQUEST_TIMEOUT_S
    ) -> None:
        self.request_timeout = request_timeout
        """Seconds a small request waits for its answer (larger ones get more, :func:`request_timeout`)."""
        self._socket = socket
        self.hello = hello
        self.origin: str = hello["server"]["origin"]
        self.challenge = b64u_decode(hello["challenge"], length=32, what="challenge")
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="lockstep-reader")

    @classmethod
    async def open(
        cls,
        server_url: str,
        *,
        ca_file: str | None = None,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> ServerConnection:
        url = websocket_url(server_url)
        context = ssl.create_default_context(cafile=ca_file) if url.startswith("wss://") else None
        try:
            socket = await connect(url, user_agent_header=USER_AGENT, ssl=context, open_timeout=10)
            hello = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError, ConnectionClosed) as error:
            raise ConnectionLost(
                f"cannot connect to {server_base(server_url)}: {why_unreachable(error)}"
            ) from error
        if not isinstance(hello, dict) or hello.get("event") != "hello":
            await socket.close()
            raise ClientError(f"{server_url} is not a Lockstep server")
        return cls(socket, hello, request_timeout)

    async def _read(self) -> None:
        try:
            async for frame in self._socket:
                message = json.loads(frame)
                if "id" in message and message.get("id") in self._pending:
                    self._pending.pop(message["id"]).set_result(message)
                elif "event" in message:
                    await self._events.put(message)
        except (ConnectionClosed, json.JSONDecodeError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionLost("the server closed the connection"))
            self._pending.clear()
            await self._events.put(None)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; raises :class:`ServerRefused` on an error reply and
        :class:`RequestTimedOut` when none comes in time (:func:`request_timeout`)."""
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame = json.dumps({"id": request_id, "op": op, **fields})
        timeout = request_timeout(len(frame), self.request_timeout)
        try:
            try:
                await self._socket.send(frame)
            except ConnectionClosed as error:
                raise ConnectionLost("the server closed the connection") from error
            try:
                reply = await asyncio.wait_for(future, timeout)
            except TimeoutError as error:
                raise RequestTimedOut(f"the server did not answer {op} within {timeout:.0f} s") from error
        finally:
            # Timed out, lost or cancelled too: a late answer is dropped, not matched to another.
            self._pending.pop(request_id, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # the reader may have failed it: seen, the caller has our own error
        if not reply.get("ok"):
            refusal = reply.get("error", {})
            raise ServerRefused(str(refusal.get("code")), str(refusal.get("message")))
        result: dict[str, Any] = reply["result"]
        return result

    async def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        """The next pushed event; :class:`ConnectionLost` once the socket is closed."""
        event = await asyncio.wait_for(self._events.get(), timeout=timeout)
        if event is None:
            await self._events.put(None)  # stay closed for later callers
            raise ConnectionLost("the server closed the connection")
        return event

    def drain_events(self) -> list[dict[str, Any]]:
        """The events already queued, without waiting (a closed socket's end marker stays queued)."""
        events: list[dict[str, Any]] = []
        while not self._events.empty():
            event = self._events.get_nowait()
            if event is None:
                self._events.put_nowait(None)
                break
            events.append(event)
        return events

    async def close(self) -> None:
        await self._socket.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
