"""Media uploads still streaming (SECURITY.md "Server, network and disk"): how many one device may have
open at once, what each holds of the device's quota, and how fast each body must keep arriving.

Pure bookkeeping; media.py does the I/O. An unfinished upload is a partial file on the shared disk, so
without these rules one device could hold many open and stalled to push every account's writes below
the free-space reserve.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

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

    def deadline(self, started: float, received: int) -> float:
        """When the next chunk must have arrived, given ``received`` bytes since ``started``: every
        byte earns time at the minimum rate, so a stalled body ends within ``grace_s`` of its pace."""
        return started + self.grace_s + received / self.min_bytes_per_s


@dataclass(slots=True)
class UploadsInFlight:
    """Uploads streaming in this process, per device, each holding ``max(declared, received)`` bytes
    of the device's quota from its start (the declared Content-Length is reserved up front)."""

    _held: dict[str, dict[int, int]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def start(self, device_id: str, declared: int, per_device: int) -> int:
        """A new upload of ``device_id`` holding ``declared`` bytes; :class:`TooManyUploads` if the
        device already has ``per_device`` in flight."""
        uploads = self._held.setdefault(device_id, {})
        if len(uploads) >= per_device:
            raise TooManyUploads(per_device)
        upload = next(self._ids)
        uploads[upload] = declared
        return upload

    def grow(self, device_id: str, upload: int, received: int) -> None:
        """The upload has ``received`` bytes so far; it holds at least that much."""
        uploads = self._held[device_id]
        uploads[upload] = max(uploads[upload], received)

    def others(self, device_id: str, upload: int) -> int:
        """Bytes the device's other uploads in flight hold (they count against its quota too)."""
        return sum(size for key, size in self._held.get(device_id, {}).items() if key != upload)

    def finish(self, device_id: str, upload: int) -> None:
        uploads = self._held.get(device_id, {})
        uploads.pop(upload, None)
        if not uploads:
            self._held.pop(device_id, None)
