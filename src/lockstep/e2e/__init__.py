"""End-to-end encryption core: device identities and Olm sessions, Megolm groups, media, envelopes.

Pure: no sockets, clocks, event loops or storage (a test enforces it). Olm and Megolm are vodozemac's
(Matrix's audited Rust implementation); media encryption is WhatsApp's scheme on ``cryptography``.
See docs/protocol/messaging.md.
"""
