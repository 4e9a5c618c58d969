"""Errors the WebSocket API reports to clients (docs/protocol/linking.md §7.5)::

ApiError(code, message)      a request refused; the client gets {"ok": false, "error": {...}}
StorageError                 the store refused a write
├── HandleTaken
├── StaleDeviceList          a concurrent update won the race for the next version
├── StorageFull              the disk (or the database's quota) has no room: writes wait for space
├── StrangerLimit            a recipient's queue holds all it accepts from accounts it never wrote to
└── MediaQuotaExceeded       a device uploaded all the media it may (today, or kept at once)
Unavailable                  the database or Redis cannot be reached, or the data folder cannot be
                             written (read-only, I/O error); clients see `unavailable`
"""

from __future__ import annotations

from dataclasses import dataclass


class ApiError(Exception):
    """A refusal with a stable machine-readable ``code`` and a message for people."""

    def __init__(self, code: str, message: str, *, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        """The id of the refused request, when the refusal came before the caller could know it."""


class StorageError(Exception):
    """Root of storage refusals."""


class HandleTaken(StorageError):
    pass


class StaleDeviceList(StorageError):
    pass


class Unavailable(Exception):
    """A service the server depends on (the database, Redis) cannot be reached just now; the
    request may be retried (clients see ``unavailable``)."""


class StorageFull(StorageError):
    """No space left for a write; nothing stored before is affected, and writes work again once there is."""


@dataclass(frozen=True, slots=True)
class StrangerLimitDetails:
    recipient: str
    """The account whose devices would take the message."""
    sender_share: bool
    """True if this sender's own share is used up; False if all strangers' together is."""
    limit_bytes: int


class StrangerLimit(StorageError):
    def __init__(self, details: StrangerLimitDetails) -> None:
        super().__init__(f"stranger queue limit for {details.recipient}")
        self.details = details


class MediaQuotaExceeded(StorageError):
    def __init__(self, *, daily: bool, limit_bytes: int) -> None:
        super().__init__("daily media quota" if daily else "stored media quota")
        self.daily = daily
        self.limit_bytes = limit_bytes


def storage_refusal(error: StorageFull | Unavailable) -> tuple[int, ApiError]:
    """The API's answer to a write the disk refused: HTTP status and error (messaging.md §7.6)."""
    if isinstance(error, StorageFull):
        return 507, ApiError(
            "storage_full", "the server's disk is full, so nothing new can be saved now; try again later"
        )
    return 503, ApiError("unavailable", "the server cannot reach or write its store now; try again later")
