"""Network Time Security for NTPv4 (RFC 8915): the pure core, no sockets, no TLS, no clocks.

* :mod:`~lockstep.ntp.nts.records` — NTS-KE record codec (§4)
* :mod:`~lockstep.ntp.nts.ke` — NTS-KE client and server state machines (§4, §5.1)
* :mod:`~lockstep.ntp.nts.fields` — NTS extension fields and AEAD_AES_SIV_CMAC_256 (§5.3-5.6)
* :mod:`~lockstep.ntp.nts.cookies` — stateless server cookies under rotating keys (§6)
* :mod:`~lockstep.ntp.nts.client` — cookies, unique identifiers and reply checks (§5.7)
* :mod:`~lockstep.ntp.nts.server` — protected replies and NTS NAKs (§5.7)

TLS 1.3, ALPN ``ntske/1`` and the RFC 5705 exporter live in :mod:`lockstep.ntp.aio.nts_ke`.
"""
