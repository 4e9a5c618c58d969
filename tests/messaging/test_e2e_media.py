"""WhatsApp's media scheme: round trips, streaming in any chunking, and every tampering rejected."""

from __future__ import annotations

import hashlib
import hmac
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.e2e.errors import MediaError, MediaIntegrityError
from lockstep.e2e.media import (
    MAC_SIZE,
    MediaDecryptor,
    MediaEncryptor,
    MediaKeys,
    MediaKind,
    decrypt_media,
    encrypt_media,
)

KINDS = st.sampled_from(list(MediaKind))
KEYS = st.binary(min_size=32, max_size=32)


def test_the_layout_is_whatsapps() -> None:
    """112 bytes of HKDF: IV, AES key, MAC key; blob = AES-CBC ciphertext || HMAC(iv||ct)[:10]."""
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key, data = bytes(range(32)), b"a picture"
    okm = HKDF(hashes.SHA256(), 112, salt=None, info=b"WhatsApp Image Keys").derive(key)
    keys = MediaKeys.expand(key, MediaKind.IMAGE)
    assert (keys.iv, keys.cipher_key, keys.mac_key) == (okm[:16], okm[16:48], okm[48:80])
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES256(okm[16:48]), modes.CBC(okm[:16])).encryptor()
    ciphertext = encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()
    mac = hmac.new(okm[48:80], okm[:16] + ciphertext, hashlib.sha256).digest()[:10]
    blob, digest = encrypt_media(data, MediaKind.IMAGE, key)
    assert blob == ciphertext + mac
    assert digest.file_sha256 == hashlib.sha256(data).digest()
    assert digest.file_enc_sha256 == hashlib.sha256(blob).digest()


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), kind=KINDS, key=KEYS, cuts=st.lists(st.integers(0, 5100), max_size=6))
def test_round_trip_in_any_chunking(data: bytes, kind: MediaKind, key: bytes, cuts: list[int]) -> None:
    encryptor = MediaEncryptor(key, kind)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    blob = b"".join(encryptor.update(data[a:b]) for a, b in itertools.pairwise(bounds))
    blob += encryptor.finalize()
    digest = encryptor.digest
    assert len(blob) == digest.enc_length and (len(blob) - MAC_SIZE) % 16 == 0
    decryptor = MediaDecryptor(key, kind, digest)
    blob_bounds = [0, *sorted(c for c in cuts if c <= len(blob)), len(blob)]
    out = b"".join(decryptor.update(blob[a:b]) for a, b in itertools.pairwise(blob_bounds))
    assert out + decryptor.finalize() == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=2000), key=KEYS, where=st.integers(0), flip=st.integers(1, 255))
def test_any_flipped_byte_is_rejected(data: bytes, key: bytes, where: int, flip: int) -> None:
    blob, digest = encrypt_media(data, MediaKind.DOCUMENT, key)
    tampered = bytearray(blob)
    tampered[where % len(blob)] ^= flip
    with pytest.raises(MediaIntegrityError):
        decrypt_media(bytes(tampered), MediaKind.DOCUMENT, key, digest)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=1, max_size=2000), key=KEYS, cut=st.integers(1, 40))
def test_truncated_or_extended_blobs_are_rejected(data: bytes, key: bytes, cut: int) -> None:
    blob, digest = encrypt_media(data, MediaKind.VIDEO, key)
    with pytest.raises(MediaIntegrityError):
        decrypt_media(blob[:-cut], MediaKind.VIDEO, key, digest)
    with pytest.raises(MediaIntegrityError):
        decrypt_media(blob + b"\x00" * cut, MediaKind.VIDEO, key, digest)


def test_wrong_key_or_kind_is_rejected() -> None:
    blob, digest = encrypt_media(b"x" * 100, MediaKind.IMAGE, b"k" * 32)
    with pytest.raises(MediaIntegrityError):
        decrypt_media(blob, MediaKind.IMAGE, b"j" * 32, digest)
    with pytest.raises(MediaIntegrityError):
        decrypt_media(blob, MediaKind.AUDIO, b"k" * 32, digest)
    with pytest.raises(MediaError):
        MediaKeys.expand(b"short", MediaKind.IMAGE)
