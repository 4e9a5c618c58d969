"""Errors of the call core. One root, split by who is to blame (like h11)::

CallError
├── SignalError        a decrypted call signal is malformed: bad shape, SDP or ICE candidate
│                      (the peer's fault; the adapter drops it and logs the reason)
└── CallStateError     our caller asked for something the call's state does not allow
                       (answering a call that is not ringing, hanging up twice)
"""

from __future__ import annotations


class CallError(Exception):
    """Root of every error raised by :mod:`lockstep.calls`."""


class SignalError(CallError):
    """A call signal (docs/protocol/messaging.md §14.2) that must be dropped."""


class CallStateError(CallError):
    """The local side misused a call: the operation does not fit the call's state."""
