"""Errors the WebSocket API reports to clients (docs/protocol/linking.md §7.5)::

ApiError(code, message)      a request refused; the client gets {"ok": false, "error": {...}}
StorageError                 the store refused a write
├── HandleTaken
└── StaleDeviceList          a concurrent update won the race for the next version
Unavailable                  the database or Redis cannot be reached (clients see `unavailable`)
"""

from __future__ import annotations


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
