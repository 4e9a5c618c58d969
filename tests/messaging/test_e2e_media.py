"""WhatsApp's media scheme: round trips, streaming in any chunking, and every tampering rejected."""

from __future__ import annotations

import contextlib
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
    MediaDigest,
    MediaEncryptor,
    MediaKeys,
    MediaKind,
    MediaRef,
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


DIGESTS = st.builds(
    MediaDigest,
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
)
REF_FIELDS = ["media_id", "type", "media_key", "file_sha256", "file_enc_sha256", "file_length", "enc_length"]
REFS = st.builds(MediaRef, st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True), KINDS, KEYS, DIGESTS)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=12,
)


@given(ref=REFS)
def test_a_media_reference_round_trips(ref: MediaRef) -> None:
    assert sorted(ref.to_json()) == sorted(REF_FIELDS)
    assert MediaRef.from_json(ref.to_json()) == ref
    assert MediaRef.from_json({**ref.to_json(), "mimetype": "image/png", "name": "a.png"}) == ref


@given(ref=REFS, field=st.sampled_from(REF_FIELDS), value=JSON)
def test_a_damaged_media_reference_raises_only_media_error(ref: MediaRef, field: str, value: object) -> None:
    """Whatever a sender puts in a media object, reading it either gives a reference or a MediaError."""
    damaged = {**ref.to_json(), field: value}
    try:
        parsed = MediaRef.from_json(damaged)
    except MediaError:
        return
    assert parsed.to_json() == {k: v for k, v in damaged.items() if k in parsed.to_json()}


@pytest.mark.parametrize("media_id", ["../../accounts", "a/b", "", "x" * 65, "id?q=1"])
def test_a_media_id_that_is_not_a_plain_name_is_refused(media_id: str) -> None:
    """The id goes into the download URL's path: only base64url characters may."""
    ref = MediaRef("A" * 43, MediaKind.IMAGE, bytes(32), MediaDigest(bytes(32), bytes(32), 1, 26))
    with pytest.raises(MediaError):
        MediaRef.from_json({**ref.to_json(), "media_id": media_id})


@given(value=JSON)
def test_any_json_raises_only_media_error(value: object) -> None:
    with contextlib.suppress(MediaError):
        MediaRef.from_json(value)
