"""asyncio adapters for the NTP core: the only part of :mod:`lockstep.ntp` that does I/O.

* :mod:`~lockstep.ntp.aio.clock` — reading the system clock as a full NTP time
* :mod:`~lockstep.ntp.aio.client` — one-shot :func:`query` and the continuous :class:`Monitor`
* :mod:`~lockstep.ntp.aio.server` — the UDP server (a draining reader, optional SO_REUSEPORT
  worker processes)
"""
