"""Errors the WebSocket API and media HTTP report to clients (docs/protocol/linking.md §7.5,
messaging.md §7.6 and §9.3)::

ErrorCode                    every code a client can get, one StrEnum; web/src/net/errorCodes.ts lists
                             the same codes (tests/web/test_web_protocol.py checks that they agree)
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
from enum import StrEnum


class ErrorCode(StrEnum):
    """The machine-readable ``code`` of every refusal; clients branch on these, people read the message."""

    # Any request (linking.md §7.5).
    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    NOT_AUTHENTICATED = "not_authenticated"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    STORAGE_FULL = "storage_full"
    INTERNAL_ERROR = "internal_error"
    UNKNOWN_HOST = "unknown_host"
    """HTTP 421 for a Host the server does not serve (hosts.py), before any request is read."""
    # Accounts and devices (linking.md §7.4).
    HANDLE_TAKEN = "handle_taken"
    INVALID_HANDLE = "invalid_handle"
    BAD_SIGNATURE = "bad_signature"
    STALE_DEVICE_LIST = "stale_device_list"
    INVALID_DEVICE_LIST = "invalid_device_list"
    DEVICE_UNKNOWN = "device_unknown"
    # Linking (linking.md §6.3, §7.4).
    REF_UNKNOWN = "ref_unknown"
    REF_EXPIRED = "ref_expired"
    REF_USED = "ref_used"
    TOO_MANY_DEVICES = "too_many_devices"
    COMPANION_GONE = "companion_gone"
    # Messaging (messaging.md §7.6).
    ACCOUNT_UNKNOWN = "account_unknown"
    GROUP_UNKNOWN = "group_unknown"
    DEVICES_CHANGED = "devices_changed"
    STRANGER_LIMIT = "stranger_limit"
    # Media HTTP (messaging.md §9.3).
    TOO_LARGE = "too_large"
    QUOTA_EXCEEDED = "quota_exceeded"
    MEDIA_UNKNOWN = "media_unknown"


class ApiError(Exception):
    """A refusal with a stable machine-readable ``code`` and a message for people."""

    def __init__(self, code: ErrorCode, message: str, *, request_id: int | None = None) -> None:
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
            ErrorCode.STORAGE_FULL,
            "the server's disk is full, so nothing new can be saved now; try again later",
        )
    return 503, ApiError(
        ErrorCode.UNAVAILABLE, "the server cannot reach or write its store now; try again later"
    )
