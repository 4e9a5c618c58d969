"""The server half of interleaved client/server mode (RFC 9769 §2, was draft-ietf-ntp-interleaved-modes).

In basic mode a reply's transmit timestamp T3 is read before the reply is handed to the kernel,
so it misses everything between that reading and the datagram leaving. The kernel knows when the
reply really left (a software transmit timestamp, reported on the socket's error queue), but only
after sending it. Interleaved mode gets that time to the client one exchange later:

* A client in interleaved mode puts, as the origin timestamp of its next request, the receive
  timestamp of our last reply to it (and, in the request's receive field, when it received that
  reply).
* We answer such a request with: origin = the request's receive field (so the client can match
  it), receive = this request's arrival, transmit = the time our *previous* reply really left.
* Anything else gets a basic reply (origin = the request's transmit timestamp), which is also what
  a client gets the first time, or when we no longer hold the time it asks for.

As chronyd does, so that a chronyd client with ``xleave`` and our server understand each other:
every reply's receive timestamp has its lowest bit set and its transmit timestamp has it clear,
so only a request whose origin is odd can name one of our receive timestamps (a basic client
sends zero, random data or our transmit timestamp there). A version-4 request of 48 bytes with
an odd origin and receive ≠ transmit is *interleaved-capable*: we remember, per client and per
receive timestamp we wrote, when that reply left — first the clock reading written into it, then
the kernel's transmit timestamp when the adapter reports one. Each remembered time answers one
request. A client key is part of the lookup, so one client cannot use up another's entries.

:class:`TransmitTimes` holds that state; :class:`lockstep.ntp.server.NtpServer` uses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import Final

from lockstep.ntp.timestamps import ONE_SECOND
from lockstep.ntp.wire import HEADER_LENGTH, Datagram

#: The latest a kernel transmit timestamp may come after the clock reading it replaces (chronyd
#: uses the same bound, MAX_TX_DELAY): anything later is not the send time of that reply.
MAX_TRANSMIT_DELAY: Final = ONE_SECOND


def interleave_capable(data: Datagram) -> bool:
    """Whether a request may be in interleaved mode: NTPv4, 48 bytes, an odd origin timestamp
    (one of our receive timestamps) and a receive field different from its transmit field."""
    return (
        len(data) == HEADER_LENGTH
        and data[0] & 0x38 == 0x20
        and data[31] & 1 == 1
        and data[32:40] != data[40:48]
    )


class TransmitTimes:
    """When our replies to interleaved-capable requests left, by (client, receive timestamp).

    Times are full NTP times of served time. At most ``capacity`` entries are kept; the oldest
    go first (a client polling less often than the table turns over just gets basic replies).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._sent: dict[tuple[Hashable, int], int] = {}

    def __len__(self) -> int:
        return len(self._sent)

    def remember(self, client: Hashable, receive_timestamp: int, transmit_time: int) -> None:
        """Our reply to ``client`` carried ``receive_timestamp`` (the wire value) and the clock
        read ``transmit_time`` just before it was sent."""
        sent = self._sent
        if len(sent) >= self.capacity:
            for key in list(itertools.islice(sent, len(sent) - self.capacity + 1)):
                del sent[key]
        sent[client, receive_timestamp] = transmit_time

    def transmitted(self, client: Hashable, receive_timestamp: int, transmit_time: int) -> bool:
        """The kernel says that reply left at ``transmit_time``: keep that instead of the clock
        reading, if it is plausible (not before it, at most MAX_TRANSMIT_DELAY after)."""
        key = (client, receive_timestamp)
        read = self._sent.get(key)
        if read is None or not 0 <= transmit_time - read <= MAX_TRANSMIT_DELAY:
            return False
        self._sent[key] = transmit_time
        return True

    def take(self, client: Hashable, origin_timestamp: int) -> int | None:
        """When the reply whose receive timestamp ``client`` now sends as its origin left, or
        None; each time is given out once."""
        return self._sent.pop((client, origin_timestamp), None)
