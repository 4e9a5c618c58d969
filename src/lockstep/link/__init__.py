"""The linking protocol's pure core (docs/protocol/linking.md): no sockets, no clocks, no storage.

- :mod:`.qr` encodes and decodes the QR code text (§3);
- :mod:`.hpke` is RFC 9180 HPKE for the one suite we use (§5);
- :mod:`.envelope` signs and verifies domain-separated Ed25519 envelopes (§4.1);
- :mod:`.devices` holds device certificates and signed device lists (§4.2, §4.3);
- :mod:`.grant` seals and opens the link grant the primary sends the companion (§5);
- :mod:`.handshake` has the companion and primary state machines as transition tables (§8).
"""
