"""Media encryption, WhatsApp's scheme (as documented in the WhatsApp Encryption Overview, "Transmitting
Media and Other Attachments", and implemented by its clients):

1. ``media_key``: 32 random bytes per file.
2. ``HKDF-SHA256(ikm=media_key, salt=none, info=<type's info string>, L=112)`` gives
   ``iv`` (16) ‖ ``cipher_key`` (32) ‖ ``mac_key`` (32) ‖ ``ref_key`` (32, unused).
3. ``ciphertext = AES-256-CBC(cipher_key, iv, PKCS#7(plaintext))``.
4. ``mac = HMAC-SHA256(mac_key, iv ‖ ciphertext)[0:10]``; the uploaded blob is ``ciphertext ‖ mac``.
5. ``file_sha256 = SHA-256(plaintext)``, ``file_enc_sha256 = SHA-256(blob)``.

The media key and both hashes travel inside the end-to-end encrypted message; the server only ever
holds the blob. Both directions stream (100 MB files never sit in memory). A decryptor's output is
*unverified* until :meth:`MediaDecryptor.finalize` returns: callers write it somewhere private and
keep it only then.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lockstep.e2e.errors import MediaError, MediaIntegrityError
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.errors import EncodingError

MEDIA_KEY_SIZE = 32
MAC_SIZE = 10
BLOCK_SIZE = 16
EXPANDED_SIZE = 112
MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class MediaKind(enum.StrEnum):
    """The media type, which selects the HKDF info string (WhatsApp's own strings)."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"

    @property
    def info(self) -> bytes:
        return _INFO[self]


_INFO = {
    MediaKind.IMAGE: b"WhatsApp Image Keys",
    MediaKind.VIDEO: b"WhatsApp Video Keys",
    MediaKind.AUDIO: b"WhatsApp Audio Keys",
    MediaKind.DOCUMENT: b"WhatsApp Document Keys",
}


@dataclass(frozen=True, slots=True)
class MediaKeys:
    iv: bytes
    cipher_key: bytes
    mac_key: bytes
    ref_key: bytes

    @classmethod
    def expand(cls, media_key: bytes, kind: MediaKind) -> MediaKeys:
        if len(media_key) != MEDIA_KEY_SIZE:
            raise MediaError(f"a media key is {MEDIA_KEY_SIZE} bytes, got {len(media_key)}")
        okm = HKDF(hashes.SHA256(), EXPANDED_SIZE, salt=None, info=kind.info).derive(media_key)
        return cls(okm[:16], okm[16:48], okm[48:80], okm[80:112])


def new_media_key() -> bytes:
    return secrets.token_bytes(MEDIA_KEY_SIZE)


def human_size(size: int) -> str:
    """A size as every Lockstep app shows it (the browser's ``formatBytes``): MB and KB of 1024,
    rounded half up."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{(size + scale // 2) // scale} {unit}"
    return f"{size} bytes"


def kind_for_mimetype(mimetype: str) -> MediaKind:
    major = mimetype.split("/", 1)[0]
    return {"image": MediaKind.IMAGE, "video": MediaKind.VIDEO, "audio": MediaKind.AUDIO}.get(
        major, MediaKind.DOCUMENT
    )


@dataclass(frozen=True, slots=True)
class MediaDigest:
    """What the E2E message says about a blob, besides the key."""

    file_sha256: bytes
    file_enc_sha256: bytes
    file_length: int
    enc_length: int


@dataclass(frozen=True, slots=True)
class MediaRef:
    """Where a blob is and how to open it: the ``media`` object of a media message (messaging.md §9.2),
    without its display fields (``mimetype``, ``name``)."""

    media_id: str
    kind: MediaKind
    media_key: bytes
    digest: MediaDigest

    @classmethod
    def from_json(cls, value: object) -> MediaRef:
        """Parse a received ``media`` object; anything unusable raises :class:`MediaError`."""
        if not isinstance(value, dict):
            raise MediaError("a media message without a media object")
        try:
            lengths = value["file_length"], value["enc_length"]
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths):
                raise ValueError("lengths are non-negative integers")
            media_id = value["media_id"]
            if not isinstance(media_id, str) or not MEDIA_ID.fullmatch(media_id):
                raise ValueError("a media id is base64url")  # it goes into a URL path
            return cls(
                media_id,
                MediaKind(value["type"]),
                b64u_decode(value["media_key"], length=MEDIA_KEY_SIZE),
                MediaDigest(
                    b64u_decode(value["file_sha256"], length=32),
                    b64u_decode(value["file_enc_sha256"], length=32),
                    *lengths,
                ),
            )
        except (KeyError, ValueError, TypeError, EncodingError) as error:
            raise MediaError("a media message without a usable key or hashes") from error

    def to_json(self) -> dict[str, object]:
        return {
            "media_id": self.media_id,
            "type": self.kind.value,
            "media_key": b64u_encode(self.media_key),
            "file_sha256": b64u_encode(self.digest.file_sha256),
            "file_enc_sha256": b64u_encode(self.digest.file_enc_sha256),
            "file_length": self.digest.file_length,
            "enc_length": self.digest.enc_length,
        }


class MediaEncryptor:
    """Stream a file in: ``update`` returns blob bytes, ``finalize`` the last block and the MAC."""

    def __init__(self, media_key: bytes, kind: MediaKind) -> None:
        keys = MediaKeys.expand(media_key, kind)
        self._padder = padding.PKCS7(BLOCK_SIZE * 8).padder()
        self._cipher = Cipher(algorithms.AES256(keys.cipher_key), modes.CBC(keys.iv)).encryptor()
        self._mac = hmac.new(keys.mac_key, keys.iv, hashlib.sha256)
        self._file_hash = hashlib.sha256()
        self._blob_hash = hashlib.sha256()
        self._file_length = 0
        self._enc_length = 0
        self._digest: MediaDigest | None = None

    def _out(self, data: bytes) -> bytes:
        self._blob_hash.update(data)
        self._enc_length += len(data)
        return data

    def update(self, chunk: bytes) -> bytes:
        if self._digest is not None:
            raise MediaError("the encryptor is finalized")
        self._file_hash.update(chunk)
        self._file_length += len(chunk)
        ciphertext = self._cipher.update(self._padder.update(chunk))
        self._mac.update(ciphertext)
        return self._out(ciphertext)

    def finalize(self) -> bytes:
        if self._digest is not None:
            raise MediaError("the encryptor is finalized")
        ciphertext = self._cipher.update(self._padder.finalize()) + self._cipher.finalize()
        self._mac.update(ciphertext)
        tail = self._out(ciphertext + self._mac.digest()[:MAC_SIZE])
        self._digest = MediaDigest(
            self._file_hash.digest(), self._blob_hash.digest(), self._file_length, self._enc_length
        )
        return tail

    @property
    def digest(self) -> MediaDigest:
        if self._digest is None:
            raise MediaError("finalize the encryptor first")
        return self._digest


class MediaDecryptor:
    """Stream a blob in; plaintext comes out unverified until :meth:`finalize` checks hashes and MAC."""

    def __init__(self, media_key: bytes, kind: MediaKind, expected: MediaDigest) -> None:
        keys = MediaKeys.expand(media_key, kind)
        self._expected = expected
        self._cipher = Cipher(algorithms.AES256(keys.cipher_key), modes.CBC(keys.iv)).decryptor()
        self._unpadder = padding.PKCS7(BLOCK_SIZE * 8).unpadder()
        self._mac = hmac.new(keys.mac_key, keys.iv, hashlib.sha256)
        self._blob_hash = hashlib.sha256()
        self._file_hash = hashlib.sha256()
        self._held = b""  # the last MAC_SIZE bytes seen, which may be the MAC
        self._enc_length = 0

    def update(self, chunk: bytes) -> bytes:
        self._blob_hash.update(chunk)
        self._enc_length += len(chunk)
        if self._enc_length > self._expected.enc_length:
            raise MediaIntegrityError("the blob is longer than the message said")
        data = self._held + chunk
        ciphertext, self._held = data[: len(data) - MAC_SIZE], data[len(data) - MAC_SIZE :]
        if len(data) < MAC_SIZE:
            ciphertext, self._held = b"", data
        self._mac.update(ciphertext)
        plaintext = self._unpadder.update(self._cipher.update(ciphertext))
        self._file_hash.update(plaintext)
        return plaintext

    def finalize(self) -> bytes:
        """The last plaintext bytes, once the blob's SHA-256, the MAC and the file's SHA-256 all match."""
        if self._enc_length != self._expected.enc_length:
            raise MediaIntegrityError("the blob is shorter than the message said")
        if not hmac.compare_digest(self._blob_hash.digest(), self._expected.file_enc_sha256):
            raise MediaIntegrityError("the blob's SHA-256 does not match")
        if not hmac.compare_digest(self._mac.digest()[:MAC_SIZE], self._held):
            raise MediaIntegrityError("the blob's MAC does not match")
        if (self._enc_length - MAC_SIZE) % BLOCK_SIZE or self._enc_length < MAC_SIZE + BLOCK_SIZE:
            raise MediaError("the ciphertext is not whole AES blocks")
        try:
            tail = self._unpadder.update(self._cipher.finalize()) + self._unpadder.finalize()
        except ValueError as error:
            raise MediaError("bad PKCS#7 padding") from error
        self._file_hash.update(tail)
        if not hmac.compare_digest(self._file_hash.digest(), self._expected.file_sha256):
            raise MediaIntegrityError("the decrypted file's SHA-256 does not match")
        return tail


def encrypt_media(plaintext: bytes, kind: MediaKind, media_key: bytes) -> tuple[bytes, MediaDigest]:
    encryptor = MediaEncryptor(media_key, kind)
    blob = encryptor.update(plaintext) + encryptor.finalize()
    return blob, encryptor.digest


def decrypt_media(blob: bytes, kind: MediaKind, media_key: bytes, expected: MediaDigest) -> bytes:
    decryptor = MediaDecryptor(media_key, kind, expected)
    return decryptor.update(blob) + decryptor.finalize()
