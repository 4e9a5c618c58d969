"""The one error root of :mod:`lockstep.ntp` (NTP, NTS and their asyncio adapters).

Hierarchy::

    NtpError                      anything this package raises on purpose
    ├── LocalProtocolError        our caller misused the API (bad field value, wrong state)
    ├── RemoteProtocolError       the peer sent something we cannot accept
    │   ├── MalformedPacket       a datagram that is not a well-formed NTP packet (RFC 5905 §7.3,
    │   │                         RFC 7822 §3-7)
    │   ├── MalformedRecord       NTS-KE records that do not parse (nts.records; RFC 8915 §4)
    │   ├── KeFailed              an NTS-KE response we refuse (nts.ke; §4.1)
    │   ├── CookieRejected        a cookie we cannot open (nts.cookies; §6)
    │   ├── AuthenticationFailed  an NTS authenticator malformed or not verifying (nts.fields; §5.6)
    │   └── NtsReplyRejected      a reply that fails an NTS check (nts.client; §5.7)
    ├── QueryFailed               a one-shot query got no usable answer (aio.client)
    ├── NtsKeError                NTS-KE over TLS failed: connection, TLS, certificate or protocol
    │                             (aio.nts_ke)
    └── ClockAdjustError          the system clock could not be stepped or slewed (aio.adjust)

Datagram paths (server and client cores) never let these escape into an event loop: they turn a
bad datagram into a ``PacketDropped(reason)`` event and count it. The codec raises them, so a caller
decoding bytes by hand gets a precise reason. The last three are the adapters' failures, raised to
the caller (the CLI prints their message).
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
