"""A scripted stand-in for `lockstep serve` on a page's /ws, through Playwright's route_web_socket.

The page talks to it exactly as to the real server (linking.md §7); the test decides every reply and
event, so rotation, idle, declines, dropped sockets and unlinking can be driven precisely.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from typing import Any


class FakeConnection:
    """One page-side WebSocket answered by the test (Playwright's route_web_socket; no real server)."""

    def __init__(self, route: Any, server: FakeServer) -> None:
        self.route = route
        self.server = server
        self.requests: list[dict[str, Any]] = []
        self.challenge = os.urandom(32)
        self.closed = False
        route.on_message(self._on_message)
        route.on_close(lambda *_: setattr(self, "closed", True))
        self.send(
            {
                "event": "hello",
                "server": {"origin": server.origin, "name": "Lockstep", "version": "0.1.0"},
                "challenge": _b64u(self.challenge),
                "server_time": server.now(),
            }
        )

    def send(self, frame: dict[str, Any]) -> None:
        self.route.send(json.dumps(frame))

    def close(self, code: int = 1001) -> None:
        self.closed = True
        self.route.close(code=code, reason="")

    def _on_message(self, message: str | bytes) -> None:
        frame = json.loads(message)
        self.requests.append(frame)
        reply = self.server.replies.get(frame["op"])
        if reply is None:
            return
        outcome = reply(self, frame)
        if isinstance(outcome, tuple):  # (code, message): an error reply
            self.send({"id": frame["id"], "ok": False, "error": {"code": outcome[0], "message": outcome[1]}})
        else:
            self.send({"id": frame["id"], "ok": True, "result": outcome})

    def ops(self, *, with_time_sync: bool = False) -> list[str]:
        """The ops requested so far, in order (time.sync, which runs beside everything, left out)."""
        return [r["op"] for r in self.requests if with_time_sync or r["op"] != "time.sync"]


class FakeServer:
    """Stands in for `lockstep serve` on the page's /ws: sends hello, records requests, answers by op.

    `replies[op](connection, request)` returns a result dict or a (code, message) error tuple; ops without
    a reply get none. Events are sent with `connection.send`.
    """

    def __init__(self, page: Any, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.connections: list[FakeConnection] = []
        self.clock_offset_ms = 0
        self.replies: dict[str, Any] = {"time.sync": self._time_sync}
        page.route_web_socket(
            re.compile(r".*/ws$"), lambda route: self.connections.append(FakeConnection(route, self))
        )

    def now(self) -> int:
        """The scripted server's clock: ours plus `clock_offset_ms`."""
        return now_ms() + self.clock_offset_ms

    def _time_sync(self, conn: FakeConnection, request: dict[str, Any]) -> dict[str, Any]:
        now = now_ms() + self.clock_offset_ms
        return {"t1": request["t1"], "t2": now, "t3": now}

    @property
    def last(self) -> FakeConnection:
        return self.connections[-1]

    def wait_until(self, condition: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.page.wait_for_timeout(25)  # lets Playwright deliver the socket callbacks


def now_ms() -> int:
    return int(time.time() * 1000)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
