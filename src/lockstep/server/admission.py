"""Which WebSockets may stay before they authenticate: caps against connection floods.

A socket that has not authenticated costs the server a descriptor and memory and proves nothing, so:

- one client address (an IPv6 /64 counts as one) holds at most ``per_address`` of them; the next is
  refused;
- all addresses together hold at most ``total``; past that the oldest is evicted, preferring one that
  has not started linking, so a device that connects and authenticates at once always gets in;
- each must authenticate or start a link session within ``deadline_s`` (the gateway's timer), and
  again within ``deadline_s`` of its link session ending.

Authenticated sockets are never counted. Pure bookkeeping: the gateway does the closing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from lockstep.server.client_address import address_key

Socket = TypeVar("Socket")
"""A connection; used as a dict key, so hashable."""

PER_ADDRESS = 16
TOTAL_CEILING = 4096
DEADLINE_S = 60.0


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    per_address: int = PER_ADDRESS
    """Unauthenticated sockets one client address may hold (LOCKSTEP_UNAUTHENTICATED_PER_ADDRESS)."""
    total: int = TOTAL_CEILING
    """Unauthenticated sockets in all before the oldest is evicted (LOCKSTEP_UNAUTHENTICATED_TOTAL;
    by default a quarter of the open-file limit, at most 4096)."""
    deadline_s: float = DEADLINE_S
    """Seconds a socket may stay without authenticating or starting to link
    (LOCKSTEP_UNAUTHENTICATED_DEADLINE)."""

    def __post_init__(self) -> None:
        if self.per_address < 1 or self.total < 1 or not 0 < self.deadline_s <= 86_400:
            raise ValueError("caps must be at least 1 and the deadline 0 to 86400 seconds")

    @staticmethod
    def total_for(open_files: int) -> int:
        """The default total for a process that may open ``open_files`` descriptors."""
        return max(16, min(TOTAL_CEILING, open_files // 4))


@dataclass(frozen=True, slots=True)
class Admitted(Generic[Socket]):
    evicted: Socket | None
    """The oldest waiting socket, to close to make room (None: there was room)."""


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(slots=True)
class _Waiting:
    key: str
    linking: bool = False


@dataclass(slots=True)
class Admission(Generic[Socket]):
    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    _waiting: OrderedDict[Socket, _Waiting] = field(default_factory=OrderedDict)
    _per_key: dict[str, int] = field(default_factory=dict)

    def admit(self, socket: Socket, address: str) -> Admitted[Socket] | Refused:
        """A new socket from ``address``: count it, or say why not."""
        key = address_key(address)
        if self._per_key.get(key, 0) >= self.limits.per_address:
            return Refused(
                f"too many unauthenticated connections from this address ({self.limits.per_address})"
            )
        evicted = self._oldest() if len(self._waiting) >= self.limits.total else None
        if evicted is not None:
            self.settle(evicted)
        self._waiting[socket] = _Waiting(key)
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return Admitted(evicted)

    def linking(self, socket: Socket) -> None:
        """The socket started a link session: it may wait (no deadline) and is evicted last."""
        if socket in self._waiting:
            self._waiting[socket].linking = True

    def linking_over(self, socket: Socket) -> None:
        """The socket's link session ended without it authenticating: it waits again like any other
        (the gateway restarts its deadline) and is no longer spared from eviction."""
        if socket in self._waiting:
            self._waiting[socket].linking = False

    def settle(self, socket: Socket) -> None:
        """The socket authenticated, or closed: it no longer counts."""
        waiting = self._waiting.pop(socket, None)
        if waiting is None:
            return
        left = self._per_key[waiting.key] - 1
        if left:
            self._per_key[waiting.key] = left
        else:
            del self._per_key[waiting.key]

    def waiting(self, socket: Socket) -> bool:
        """Whether the socket still has neither authenticated nor started to link."""
        entry = self._waiting.get(socket)
        return entry is not None and not entry.linking

    def count(self, address: str | None = None) -> int:
        if address is None:
            return len(self._waiting)
        return self._per_key.get(address_key(address), 0)

    def _oldest(self) -> Socket | None:
        """The oldest socket that is not linking, else the oldest of all."""
        for socket, entry in self._waiting.items():
            if not entry.linking:
                return socket
        return next(iter(self._waiting), None)
