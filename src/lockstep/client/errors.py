"""Client errors::

ClientError
├── ServerRefused        the server answered a request with an error code
├── ConnectionLost       the socket closed before the answer came
├── RequestTimedOut      no answer in time (also a TimeoutError)
└── StateError           the local device state is missing, damaged, or of the other role
"""

from __future__ import annotations


class ClientError(Exception):
    """Root of client errors; the message is fit to show a person."""


class ServerRefused(ClientError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLost(ClientError):
    pass


class RequestTimedOut(ClientError, TimeoutError):
    """A request got no answer in time; callers that wait with ``except TimeoutError`` still catch it."""


class StateError(ClientError):
    pass
