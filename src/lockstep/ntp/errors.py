"""The one error root of :mod:`lockstep.ntp`.

Hierarchy::

    NtpError                      anything this package raises on purpose
    ├── LocalProtocolError        our caller misused the API (bad field value, wrong state)
    └── RemoteProtocolError       the peer sent something we cannot accept
        └── MalformedPacket       a datagram that is not a well-formed NTP packet (RFC 5905 §7.3,
                                  RFC 7822 §3-7)

Datagram paths (server and client cores) never let these escape into an event loop: they turn a
bad datagram into a ``PacketDropped(reason)`` event and count it. The codec raises them, so a caller
decoding bytes by hand gets a precise reason.
"""

from __future__ import annotations


class NtpError(Exception):
    """Root of every error raised on purpose by :mod:`lockstep.ntp`."""


class LocalProtocolError(NtpError):
    """The caller asked for something impossible (a field out of range, an unknown association)."""


class RemoteProtocolError(NtpError):
    """The peer sent something that breaks the protocol."""


class MalformedPacket(RemoteProtocolError):
    """Bytes that do not decode as an NTP packet: too short, bad extension field, bad length."""
