"""NTS extension fields for NTPv4 (RFC 8915 §5) and the AEAD that protects them (§5.6).

* Unique Identifier (0x0104, §5.3): ≥ 32 random bytes a server echoes; binds reply to request.
* NTS Cookie (0x0204, §5.4): one opaque cookie from NTS-KE or a previous reply.
* NTS Cookie Placeholder (0x0304, §5.5): asks for one more cookie; body as long as the cookie's.
* NTS Authenticator and Encrypted Extension Fields (0x0404, §5.6)::

      Nonce Length (16) | Ciphertext Length (16) | Nonce, padded to 4 | Ciphertext, padded to 4
      | Additional Padding

  The associated data is the packet from its first byte up to this field; the plaintext is a
  sequence of extension fields (a server puts its new cookies there). With
  AEAD_AES_SIV_CMAC_256 the ciphertext is the 16-byte synthetic IV followed by the encrypted
  plaintext, and the nonce is the last component of the associated-data vector (RFC 5297 §3),
  which is how ``cryptography``'s ``AESSIV`` is called: ``[associated_data, nonce]``.

:func:`locate` walks a datagram's extension fields with their offsets, using
:meth:`lockstep.ntp.wire.Packet.decode` for the parsing itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from lockstep.ntp.errors import LocalProtocolError, MalformedPacket, RemoteProtocolError
from lockstep.ntp.wire import HEADER_LENGTH, ExtensionField, Packet

#: Key length of AEAD_AES_SIV_CMAC_256 (RFC 5297 §6.1): two AES-128 keys.
KEY_LENGTH: Final = 32
TAG_LENGTH: Final = 16
#: We send 16-byte nonces; RFC 8915 §5.6 wants nonce plus additional padding of at least 16.
NONCE_LENGTH: Final = 16
MIN_NONCE_AND_PADDING: Final = 16
UNIQUE_ID_LENGTH: Final = 32
_AUTHENTICATOR_HEADER: Final = struct.Struct(">HHHH")  # field type, length; nonce, ciphertext lengths


class FieldType(IntEnum):
    """NTS extension field types (§5.3-5.6, IANA "NTP Extension Field Types")."""

    UNIQUE_IDENTIFIER = 0x0104
    NTS_COOKIE = 0x0204
    NTS_COOKIE_PLACEHOLDER = 0x0304
    NTS_AUTHENTICATOR = 0x0404


class AuthenticationFailed(RemoteProtocolError):
    """An NTS authenticator is malformed or does not verify (§5.6)."""


@dataclass(frozen=True, slots=True)
class LocatedField:
    """An extension field and the offset of its first byte in the datagram."""

    offset: int
    field: ExtensionField

    @property
    def field_type(self) -> int:
        return self.field.field_type

    @property
    def value(self) -> bytes:
        return self.field.value


def locate(packet: Packet) -> list[LocatedField]:
    """The packet's extension fields with their offsets (the codec gives them in order)."""
    out = []
    offset = HEADER_LENGTH
    for field in packet.extensions:
        out.append(LocatedField(offset, field))
        offset += 4 + len(field.value)
    return out


def _pad(length: int) -> int:
    return -length % 4


def padded(body: bytes, minimum: int = 12) -> bytes:
    """``body`` zero-padded to a multiple of 4 and to at least ``minimum`` bytes."""
    body = body + bytes(_pad(len(body)))
    return body + bytes(max(0, minimum - len(body)))


def unique_identifier(value: bytes) -> ExtensionField:
    return ExtensionField(FieldType.UNIQUE_IDENTIFIER, value)


def cookie_field(cookie: bytes) -> ExtensionField:
    return ExtensionField(FieldType.NTS_COOKIE, padded(cookie))


def placeholder_field(length: int) -> ExtensionField:
    return ExtensionField(FieldType.NTS_COOKIE_PLACEHOLDER, bytes(length + _pad(length)))


def seal(key: bytes | AESSIV, nonce: bytes, associated_data: bytes, plaintext: bytes = b"") -> ExtensionField:
    """The Authenticator and Encrypted Extension Fields field over ``associated_data`` (§5.6).

    ``key`` is the raw key or an ``AESSIV`` already set up with it (servers cache those)."""
    cipher = key if isinstance(key, AESSIV) else AESSIV(key)
    encoded = authenticator(cipher, nonce, associated_data, plaintext)
    return ExtensionField(FieldType.NTS_AUTHENTICATOR, encoded[4:])


def authenticator(cipher: AESSIV, nonce: bytes, associated_data: bytes, plaintext: bytes = b"") -> bytes:
    """:func:`seal`'s field, encoded (type and length first): what a server appends to its reply."""
    ciphertext = cipher.encrypt(plaintext, [associated_data, nonce])
    if len(nonce) >= MIN_NONCE_AND_PADDING and not (len(nonce) | len(ciphertext)) & 3:
        # No padding needed: a server's reply (16-byte nonce, 16-byte tag, 108-byte cookies).
        length = 8 + len(nonce) + len(ciphertext)
        if length <= 0xFFFF:
            header = _AUTHENTICATOR_HEADER.pack(
                FieldType.NTS_AUTHENTICATOR, length, len(nonce), len(ciphertext)
            )
            return header + nonce + ciphertext
    nonce_padding = _pad(len(nonce))
    # Nonce plus additional padding of at least 16 bytes (§5.6).
    padding = _pad(len(ciphertext)) + max(0, MIN_NONCE_AND_PADDING - len(nonce) - nonce_padding)
    length = 8 + len(nonce) + nonce_padding + len(ciphertext) + padding
    if length > 0xFFFF:
        raise LocalProtocolError(f"authenticator field of {length} bytes is too long (RFC 7822 §3)")
    return (
        _AUTHENTICATOR_HEADER.pack(FieldType.NTS_AUTHENTICATOR, length, len(nonce), len(ciphertext))
        + nonce
        + bytes(nonce_padding)
        + ciphertext
        + bytes(padding)
    )


def open_sealed(key: bytes | AESSIV, value: bytes, associated_data: bytes) -> bytes:
    """Check an authenticator field's body and return its plaintext; raise AuthenticationFailed."""
    if len(value) < 4:
        raise AuthenticationFailed("authenticator shorter than its length fields")
    nonce_length, ciphertext_length = struct.unpack_from(">HH", value)
    nonce_end = 4 + nonce_length + _pad(nonce_length)
    ciphertext_end = nonce_end + ciphertext_length + _pad(ciphertext_length)
    if ciphertext_end > len(value):
        raise AuthenticationFailed("authenticator lengths overrun the field")
    if nonce_length < 1 or ciphertext_length < TAG_LENGTH:
        raise AuthenticationFailed("authenticator nonce or ciphertext too short")
    if len(value) - ciphertext_end + nonce_end - 4 < MIN_NONCE_AND_PADDING:
        raise AuthenticationFailed("authenticator nonce plus padding shorter than 16 bytes")
    nonce = value[4 : 4 + nonce_length]
    ciphertext = value[nonce_end : nonce_end + ciphertext_length]
    try:
        cipher = key if isinstance(key, AESSIV) else AESSIV(key)
        return cipher.decrypt(ciphertext, [associated_data, nonce])
    except InvalidTag:
        raise AuthenticationFailed("authenticator does not verify (tampered or forged)") from None


def decode_fields(data: bytes) -> tuple[ExtensionField, ...]:
    """Extension fields packed back to back (the plaintext of an authenticator, §5.6).

    Unlike a datagram's trailer there is no MAC here, so every 4-byte-aligned field of 16+
    bytes is read; raise :class:`MalformedPacket` otherwise.
    """
    out = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise MalformedPacket("truncated encrypted extension field")
        field_type, length = struct.unpack_from(">HH", data, offset)
        if length < 4 or length % 4 or offset + length > len(data):
            raise MalformedPacket(f"encrypted extension field length {length} is not valid")
        out.append(ExtensionField(field_type, data[offset + 4 : offset + length]))
        offset += length
    return tuple(out)


def encode_fields(fields: list[ExtensionField]) -> bytes:
    return b"".join(field.encode() for field in fields)
