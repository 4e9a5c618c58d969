"""A deterministic in-memory network for the NTP cores: fake clocks, delay, jitter, loss, asymmetry.

True time ``t`` is a float of seconds since the start; every node reads its own clock as a full NTP
time ``base + t + its offset``. Datagrams are events on a heap, so a run is exact and repeatable
for a given seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from lockstep.ntp.client import NtpClient
from lockstep.ntp.events import ClockSlewed, ClockStepped
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import ONE_SECOND, from_seconds, to_seconds

BASE_2026 = (3_973_000_000) << 32  # a full NTP time in 2025-2026, era 0


@dataclass
class Path:
    """One direction of a link: fixed delay, uniform jitter, loss probability."""

    delay: float = 0.010
    jitter: float = 0.0
    loss: float = 0.0


@dataclass
class SimServer:
    name: str
    core: NtpServer
    clock_error: float = 0.0  # seconds this server's clock is ahead of true time
    to_server: Path = field(default_factory=Path)
    to_client: Path = field(default_factory=Path)
    requests: list[float] = field(default_factory=list)  # true times requests arrived


class Simulation:
    def __init__(
        self,
        client: NtpClient,
        *,
        seed: int = 1,
        base: int = BASE_2026,
        client_offset: float = 0.0,
        client_frequency_error: float = 0.0,
    ) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.base = base
        self.now = 0.0  # true time
        self.servers: dict[str, SimServer] = {}
        self.client_error = client_offset  # seconds the client clock is ahead of true time
        self.frequency_error = client_frequency_error
        self.frequency_correction = 0.0
        self._last = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.events: list[object] = []
        self.errors: list[tuple[float, float]] = []  # (true time, client clock error)

    # clocks -------------------------------------------------------------------------------------

    def _advance_client_clock(self) -> None:
        self.client_error += (self.frequency_error + self.frequency_correction) * (self.now - self._last)
        self._last = self.now

    def client_clock(self) -> int:
        self._advance_client_clock()
        return self.base + from_seconds(self.now + self.client_error)

    def server_clock(self, server: SimServer) -> int:
        return self.base + from_seconds(self.now + server.clock_error)

    def add_server(self, server: SimServer) -> None:
        self.servers[server.name] = server
        self.client.add_source(server.name, now=self.client_clock(), minpoll=4, maxpoll=6)

    # scheduling ---------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, action))

    def _transmit(self, path: Path, action: Callable[[], None]) -> None:
        if self.rng.random() < path.loss:
            return
        self.at(self.now + path.delay + self.rng.uniform(0, path.jitter), action)

    def _send(self, source: str, data: bytes) -> None:
        server = self.servers[source]

        def arrive_at_server() -> None:
            server.requests.append(self.now)
            reply = server.core.respond(data, "127.0.0.2", self.server_clock(server))
            if isinstance(reply, bytes):
                self._transmit(server.to_client, lambda: self._deliver(source, reply))

        self._transmit(server.to_server, arrive_at_server)

    def _deliver(self, source: str, data: bytes) -> None:
        for event in self.client.receive(source, data, self.client_clock()):
            self.events.append(event)
            if isinstance(event, ClockStepped):
                self._advance_client_clock()
                self.client_error += event.offset
            elif isinstance(event, ClockSlewed):
                self._advance_client_clock()
                self.client_error += event.offset
                self.frequency_correction = event.frequency
        self.errors.append((self.now, self.client_error))

    def run(self, duration: float) -> None:
        end = self.now + duration
        while True:
            timer = self.client.next_timer()
            timer_at = None if timer is None else self.now + to_seconds(timer - self.client_clock())
            queued = self._queue[0][0] if self._queue else None
            candidates = [t for t in (timer_at, queued) if t is not None]
            if not candidates or min(candidates) > end:
                self.now = end
                return
            if queued is not None and (timer_at is None or queued <= timer_at):
                when, _, action = heapq.heappop(self._queue)
                self.now = max(self.now, when)
                action()
            else:
                assert timer_at is not None
                self.now = max(self.now, timer_at)
                for transmit in self.client.handle_timer(self.client_clock() + ONE_SECOND // 10**6):
                    self._send(transmit.source, transmit.data)


def local_server(name: str, clock_error: float = 0.0, **paths: Path) -> SimServer:
    core = NtpServer(ServerState.local(stratum=1, now=0))
    return SimServer(name, core, clock_error, **paths)
