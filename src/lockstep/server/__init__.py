"""The Lockstep server: an ASGI app (HTTP pages + one WebSocket API) over pluggable storage.

It relays and stores public keys, signatures and ciphertext; it never sees a QR secret, a private key
or message content, and it cannot add a device to an account (device lists are signed by the primary).
"""
