"""Media uploads still streaming (SECURITY.md "Server, network and disk"): how many one device may have
open at once, what each holds of the device's quota, and how fast each body must keep arriving.

Bookkeeping behind one protocol, :class:`UploadLedger`; media.py does the I/O. An unfinished upload is
a partial file on the shared disk, so without these rules one device could hold many open and
stalled to push every account's writes below the free-space reserve. With one instance the ledger is
this process's (:class:`UploadsInFlight`); with several, Redis holds it
(``redis_backend.RedisUploads``), so the cap and the quota a device's uploads hold count on every
instance together.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

GRACE_S = 30.0
"""Time every upload body gets before it must arrive at :data:`MIN_BYTES_PER_S`."""
MIN_BYTES_PER_S = 8 * 1024
"""Slowest average body rate accepted after the grace time (64 kbit/s, a poor mobile link)."""


class TooManyUploads(Exception):
    """The device already has its cap of uploads in flight."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} uploads in flight per device")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class UploadPace:
    """The slowest body accepted: ``grace_s`` up front, then ``min_bytes_per_s`` on average."""

    grace_s: float = GRACE_S
    min_bytes_per_s: int = MIN_BYTES_PER_S

    def lease_ms(self, received: int) -> int:
        """How long an upload that has ``received`` bytes may go on without news, at most (its next
        deadline is never further ahead): how long another instance keeps counting it."""
        return round((self.grace_s + received / self.min_bytes_per_s) * 1000) + 1000

    def deadline(self, started: float, received: int) -> float:
        """When the next chunk must have arrived, given ``received`` bytes since ``started``: every
        byte earns time at the minimum rate, so a stalled body ends within ``grace_s`` of its pace."""
        return started + self.grace_s + received / self.min_bytes_per_s


class UploadLedger(Protocol):
    """Uploads streaming now, per device, each holding ``max(declared, received)`` bytes of the
    device's quota from its start (the declared Content-Length is reserved up front)."""

    async def start(
        self, device_id: str, declared: int, per_device: int, now_ms: int, lease_ms: int
    ) -> tuple[str, int]:
        """A new upload of ``device_id`` holding ``declared`` bytes, counted for ``lease_ms`` unless it
        grows or finishes: its id, and the bytes the device's other uploads hold.
        :class:`TooManyUploads` if the device already has ``per_device``."""
        ...

    async def grow(self, device_id: str, upload: str, received: int, now_ms: int, lease_ms: int) -> int:
        """The upload has ``received`` bytes so far (it holds at least that much), counted for
        ``lease_ms`` more; gives the bytes the device's other uploads hold."""
        ...

    async def finish(self, device_id: str, upload: str) -> None: ...


@dataclass(slots=True)
class UploadsInFlight:
    """The ledger of one instance: in this process (uploads end with it, so no lease is kept)."""

    _held: dict[str, dict[str, int]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def start(
        self, device_id: str, declared: int, per_device: int, now_ms: int, lease_ms: int
    ) -> tuple[str, int]:
        uploads = self._held.setdefault(device_id, {})
        if len(uploads) >= per_device:
            raise TooManyUploads(per_device)
        upload = str(next(self._ids))
        uploads[upload] = declared
        return upload, self._others(device_id, upload)

    async def grow(self, device_id: str, upload: str, received: int, now_ms: int, lease_ms: int) -> int:
        uploads = self._held[device_id]
        uploads[upload] = max(uploads[upload], received)
        return self._others(device_id, upload)

    def _others(self, device_id: str, upload: str) -> int:
        return sum(size for key, size in self._held.get(device_id, {}).items() if key != upload)

    async def finish(self, device_id: str, upload: str) -> None:
        uploads = self._held.get(device_id, {})
        uploads.pop(upload, None)
        if not uploads:
            self._held.pop(device_id, None)
