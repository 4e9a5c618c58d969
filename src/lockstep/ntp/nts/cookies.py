"""Stateless server cookies under rotating keys (RFC 8915 §6).

A cookie carries everything the server needs to serve a client, encrypted and authenticated
under a server key only the server knows::

    key id (4) | nonce (16) | AES-SIV-CMAC-256(key[key id], [key id], nonce) of
                              AEAD id (2) | reserved (2) | C2S key (32) | S2C key (32)

104 bytes in all. Server keys rotate every ``rotation`` seconds: the key id is the number of the
rotation period (``now // rotation``, modulo 2**32), and each period's key is derived from a
master secret with HKDF-SHA256 (RFC 5869), so several worker processes (or a restart that keeps
the master secret) agree on every key without talking to each other. Cookies made under the last
``keep`` periods' keys are still accepted, so a client polling at up to ``keep * rotation``
seconds keeps working; older keys are expired and refused (the NTP server answers NTSN, §5.7).
This follows §6's recommendations (a key id in the clear, AEAD over the keys, regular rotation).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lockstep.ntp.errors import LocalProtocolError, RemoteProtocolError
from lockstep.ntp.nts.fields import KEY_LENGTH
from lockstep.ntp.nts.records import AeadAlgorithm
from lockstep.ntp.timestamps import ONE_SECOND

COOKIE_NONCE_LENGTH: Final = 16
COOKIE_LENGTH: Final = 4 + COOKIE_NONCE_LENGTH + 16 + 4 + 2 * KEY_LENGTH  # 104
_PLAIN: Final = struct.Struct(">HH")
_SIV_PLAIN_PREFIX: Final = _PLAIN.pack(AeadAlgorithm.AES_SIV_CMAC_256, 0)


class CookieRejected(RemoteProtocolError):
    """A cookie this server cannot open: unknown or expired key, wrong length, or forged."""


@dataclass(frozen=True, slots=True)
class CookieContents:
    """What a cookie holds: the AEAD and the two keys exported at NTS-KE (§5.1)."""

    aead: int
    c2s: bytes
    s2c: bytes


class CookieKeys:
    """The server's cookie keys: rotation, derivation, sealing and opening. Time is a parameter
    (full NTP time, as everywhere in :mod:`lockstep.ntp`)."""

    def __init__(
        self,
        master: bytes,
        *,
        rotation: int = 3600,
        keep: int = 24,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(master) < 32:
            raise LocalProtocolError("the cookie master secret needs at least 32 bytes")
        if rotation < 1 or keep < 0:
            raise LocalProtocolError("rotation must be >= 1 s and keep >= 0 periods")
        self._master = master
        self.rotation = rotation
        self._period = ONE_SECOND * rotation  # a key id's span in NTP time units
        self.keep = keep
        self._random_bytes = random_bytes
        self._keys: dict[int, AESSIV] = {}

    def key_id(self, now: int) -> int:
        """The current key id: the rotation period ``now`` falls in."""
        return (now // self._period) & 0xFFFFFFFF

    def key_material(self, key_id: int) -> bytes:
        """The AEAD_AES_SIV_CMAC_256 key of ``key_id`` (for the compiled server path)."""
        return HKDF(
            algorithm=hashes.SHA256(),
            length=KEY_LENGTH,
            salt=None,
            info=b"lockstep nts cookie key " + key_id.to_bytes(4, "big"),
        ).derive(self._master)

    def _key(self, key_id: int) -> AESSIV:
        key = self._keys.get(key_id)
        if key is None:
            key = AESSIV(self.key_material(key_id))
            if len(self._keys) > 4 * (self.keep + 2):
                self._keys.clear()  # keep the cache bounded; keys are re-derived on demand
            self._keys[key_id] = key
        return key

    def make(self, contents: CookieContents, now: int) -> bytes:
        """A fresh cookie under the current key (§6)."""
        if len(contents.c2s) != KEY_LENGTH or len(contents.s2c) != KEY_LENGTH:
            raise LocalProtocolError("cookie keys must be 32 bytes (AEAD_AES_SIV_CMAC_256)")
        plaintext = _PLAIN.pack(contents.aead, 0) + contents.c2s + contents.s2c
        return self.seal(plaintext, now, self._random_bytes(COOKIE_NONCE_LENGTH))

    def seal(self, plaintext: bytes, now: int, nonce: bytes) -> bytes:
        """A cookie holding ``plaintext`` (what :meth:`open_plaintext` returned) under the
        current key with a fresh ``nonce`` of COOKIE_NONCE_LENGTH random bytes. Servers reissue
        a client's cookie this way without taking the plaintext apart (§5.7: same keys)."""
        key_id = (now // self._period) & 0xFFFFFFFF
        key_id_bytes = key_id.to_bytes(4, "big")
        key = self._keys.get(key_id) or self._key(key_id)
        return key_id_bytes + nonce + key.encrypt(plaintext, [key_id_bytes, nonce])

    def open(self, cookie: bytes, now: int) -> CookieContents:
        """The keys inside ``cookie``; raise :class:`CookieRejected` with the reason."""
        plaintext = self.open_plaintext(cookie, now)
        aead, _ = _PLAIN.unpack_from(plaintext)
        return CookieContents(aead, plaintext[4 : 4 + KEY_LENGTH], plaintext[4 + KEY_LENGTH :])

    def open_plaintext(self, cookie: bytes, now: int) -> bytes:
        """``cookie``'s plaintext, AEAD id (2) | reserved (2) | C2S key | S2C key, checked to
        name AEAD_AES_SIV_CMAC_256; raise :class:`CookieRejected` with the reason."""
        if len(cookie) != COOKIE_LENGTH:
            raise CookieRejected(f"cookie of {len(cookie)} bytes is not one of ours")
        key_id = int.from_bytes(cookie[:4], "big")
        age = ((now // self._period) - key_id) & 0xFFFFFFFF
        if age > self.keep:
            if age > 0x7FFFFFFF:
                raise CookieRejected("cookie key id is from the future")
            raise CookieRejected("cookie key expired")
        key = self._keys.get(key_id) or self._key(key_id)
        try:
            plaintext = key.decrypt(cookie[20:], [cookie[:4], cookie[4:20]])
        except InvalidTag:
            raise CookieRejected("cookie does not verify under our key") from None
        if plaintext[:4] != _SIV_PLAIN_PREFIX:  # only AES-SIV-CMAC-256 cookies are ever made
            raise CookieRejected(f"cookie for unsupported AEAD {_PLAIN.unpack_from(plaintext)[0]}")
        return plaintext
