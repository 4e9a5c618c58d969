"""Errors of the end-to-end core. One root, split by who is to blame (like h11)::

E2EError
├── LocalE2EError              our caller misused the API (no session and no one-time key, unknown group)
├── KeyBundleError             a device's published keys are malformed, unsigned, or not in its account's
│                              primary-signed device list
├── EnvelopeError              a decrypted plaintext is not a valid message envelope, or disagrees with
│   │                          how the server routed it (sender, message id)
│   └── ActionError            a reply, reaction, edit, delete, typing or presence body that is malformed
├── DecryptionError            a ciphertext did not decrypt
│   ├── NoSession              no Olm or Megolm session can open it (the key has not arrived, or was
│   │                          never shared with this device: removed member, unlinked device)
│   └── ReplayedMessage        a Megolm message index seen before
└── MediaError                 an encrypted blob that is not well formed
    └── MediaIntegrityError    its SHA-256, its MAC, or the plaintext's SHA-256 does not match
"""

from __future__ import annotations


class E2EError(Exception):
    """Root of every error raised by :mod:`lockstep.e2e`."""


class LocalE2EError(E2EError):
    """The caller asked for something impossible in the current state."""


class KeyBundleError(E2EError):
    """A device key bundle or one-time key that must not be used."""


class EnvelopeError(E2EError):
    """A decrypted message envelope that is malformed or inconsistent with its routing."""


class ActionError(EnvelopeError):
    """A message action's body (§15) that is malformed: the message is refused like any bad envelope."""


class DecryptionError(E2EError):
    """A ciphertext that does not decrypt."""


class NoSession(DecryptionError):
    """No session of this device can decrypt the message."""


class ReplayedMessage(DecryptionError):
    """A Megolm message (session, index) this device already decrypted."""


class MediaError(E2EError):
    """An encrypted media blob that is not well formed."""


class MediaIntegrityError(MediaError):
    """A media blob whose hash or MAC does not match what the E2E message promised."""
