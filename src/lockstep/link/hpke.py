"""HPKE (RFC 9180) for one suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM.

``cryptography`` offers HPKE base mode only, and the link grant needs PSK mode (§5 of the linking
protocol), so the key schedule is written here on ``cryptography``'s audited X25519, HMAC and AES-GCM,
following RFC 9180 §4 (KEM), §5.1 (key schedule) and §5.2 (encryption), and checked against the RFC's
Appendix A.1 vectors (``vectors/hpke-rfc9180.json``). Base mode is kept for those vectors and for a
cross-check against ``cryptography``'s own implementation.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lockstep.link.errors import LinkError

KEM_ID = 0x0020  # DHKEM(X25519, HKDF-SHA256), RFC 9180 §7.1
KDF_ID = 0x0001  # HKDF-SHA256, §7.2
AEAD_ID = 0x0001  # AES-128-GCM, §7.3
N_SECRET = 32
N_ENC = 32
N_KEY = 16
N_NONCE = 12
N_HASH = 32
MIN_PSK_SIZE = 32

_KEM_SUITE_ID = b"KEM" + KEM_ID.to_bytes(2, "big")
_HPKE_SUITE_ID = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")


class Mode(enum.IntEnum):
    """RFC 9180 §5, Table 1 (auth modes are not implemented)."""

    BASE = 0x00
    PSK = 0x01


class HpkeError(LinkError):
    """Decryption failed, or inputs break RFC 9180's rules."""


def _extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2); an empty salt means HashLen zero bytes."""
    return hmac.digest(salt or bytes(N_HASH), ikm, hashlib.sha256)


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3)."""
    output, block = b"", b""
    counter = 1
    while len(output) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), hashlib.sha256)
        output += block
        counter += 1
    return output[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    """RFC 9180 §4: LabeledExtract."""
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    """RFC 9180 §4: LabeledExpand."""
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return _expand(prk, labeled_info, length)


def derive_key_pair(ikm: bytes) -> X25519PrivateKey:
    """RFC 9180 §7.1.3 DeriveKeyPair for X25519 (used by the vectors' ikmE/ikmR)."""
    dkp_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"dkp_prk", ikm)
    secret = _labeled_expand(_KEM_SUITE_ID, dkp_prk, b"sk", b"", N_SECRET)
    return X25519PrivateKey.from_private_bytes(secret)


def _public_bytes(key: X25519PublicKey) -> bytes:
    return key.public_bytes_raw()


def _dh(private_key: X25519PrivateKey, public_key: X25519PublicKey) -> bytes:
    try:
        shared = private_key.exchange(public_key)
    except ValueError as error:  # all-zero output: a small-order point (RFC 9180 §7.1.4)
        raise HpkeError("invalid X25519 public key") from error
    return shared


def _shared_secret(dh: bytes, kem_context: bytes) -> bytes:
    """RFC 9180 §4.1 ExtractAndExpand."""
    eae_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, N_SECRET)


def encap(
    recipient_key: X25519PublicKey, ephemeral_key: X25519PrivateKey | None = None
) -> tuple[bytes, bytes]:
    """RFC 9180 §4.1 Encap: returns ``(shared_secret, enc)``. ``ephemeral_key`` is for vectors."""
    ephemeral_key = ephemeral_key or X25519PrivateKey.generate()
    enc = _public_bytes(ephemeral_key.public_key())
    dh = _dh(ephemeral_key, recipient_key)
    return _shared_secret(dh, enc + _public_bytes(recipient_key)), enc


def decap(enc: bytes, recipient_key: X25519PrivateKey) -> bytes:
    """RFC 9180 §4.1 Decap."""
    if len(enc) != N_ENC:
        raise HpkeError(f"enc must be {N_ENC} bytes")
    ephemeral_public = X25519PublicKey.from_public_bytes(enc)
    dh = _dh(recipient_key, ephemeral_public)
    return _shared_secret(dh, enc + _public_bytes(recipient_key.public_key()))


@dataclass(frozen=True, slots=True)
class KeySchedule:
    """The outputs of RFC 9180 §5.1 KeySchedule."""

    key_schedule_context: bytes
    secret: bytes
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes


def key_schedule(mode: Mode, shared_secret: bytes, info: bytes, psk: bytes, psk_id: bytes) -> KeySchedule:
    """RFC 9180 §5.1, including VerifyPSKInputs."""
    if bool(psk) != bool(psk_id):
        raise HpkeError("psk and psk_id must both be given or both be empty")
    if mode is Mode.PSK and not psk:
        raise HpkeError("PSK mode needs a psk")
    if mode is Mode.BASE and psk:
        raise HpkeError("base mode takes no psk")
    if psk and len(psk) < MIN_PSK_SIZE:  # §5.1 and §9.5: a PSK needs at least 32 bytes of entropy
        raise HpkeError(f"psk must be at least {MIN_PSK_SIZE} bytes")
    psk_id_hash = _labeled_extract(_HPKE_SUITE_ID, b"", b"psk_id_hash", psk_id)
    info_hash = _labeled_extract(_HPKE_SUITE_ID, b"", b"info_hash", info)
    context = bytes([mode]) + psk_id_hash + info_hash
    secret = _labeled_extract(_HPKE_SUITE_ID, shared_secret, b"secret", psk)
    return KeySchedule(
        key_schedule_context=context,
        secret=secret,
        key=_labeled_expand(_HPKE_SUITE_ID, secret, b"key", context, N_KEY),
        base_nonce=_labeled_expand(_HPKE_SUITE_ID, secret, b"base_nonce", context, N_NONCE),
        exporter_secret=_labeled_expand(_HPKE_SUITE_ID, secret, b"exp", context, N_HASH),
    )


class Context:
    """An HPKE encryption context (RFC 9180 §5.2): one direction, sequence numbers in order.

    It keeps only what §5.2 and §5.3 need (the AEAD, the base nonce, the exporter secret and the
    sequence number): never the KEM shared secret, the key schedule's ``secret`` or the raw key.
    """

    __slots__ = ("_aead", "_base_nonce", "_exporter_secret", "sequence")

    def __init__(self, schedule: KeySchedule) -> None:
        self._aead = AESGCM(schedule.key)
        self._base_nonce = schedule.base_nonce
        self._exporter_secret = schedule.exporter_secret
        self.sequence = 0

    def _nonce(self) -> bytes:
        """RFC 9180 §5.2 ComputeNonce: base_nonce XOR the big-endian sequence number."""
        if self.sequence >= 1 << (8 * N_NONCE):
            raise HpkeError("message limit reached")
        sequence = self.sequence.to_bytes(N_NONCE, "big")
        return bytes(a ^ b for a, b in zip(self._base_nonce, sequence, strict=True))

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = self._nonce()
        self.sequence += 1  # taken before encrypting: a number is never used twice
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, ciphertext: bytes, aad: bytes = b"") -> bytes:
        try:
            plaintext = self._aead.decrypt(self._nonce(), ciphertext, aad)
        except InvalidTag as error:
            raise HpkeError("decryption failed: wrong key, secret or tampered message") from error
        self.sequence += 1  # only after success (§5.2)
        return plaintext

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """RFC 9180 §5.3 secret export."""
        return _labeled_expand(_HPKE_SUITE_ID, self._exporter_secret, b"sec", exporter_context, length)


def setup_sender(
    mode: Mode,
    recipient_key: X25519PublicKey,
    info: bytes,
    psk: bytes = b"",
    psk_id: bytes = b"",
    ephemeral_key: X25519PrivateKey | None = None,
) -> tuple[bytes, Context]:
    """RFC 9180 §5.1.1/§5.1.2 SetupBaseS / SetupPSKS: returns ``(enc, context)``."""
    shared_secret, enc = encap(recipient_key, ephemeral_key)
    return enc, Context(key_schedule(mode, shared_secret, info, psk, psk_id))


def setup_recipient(
    mode: Mode,
    enc: bytes,
    recipient_key: X25519PrivateKey,
    info: bytes,
    psk: bytes = b"",
    psk_id: bytes = b"",
) -> Context:
    """RFC 9180 §5.1.1/§5.1.2 SetupBaseR / SetupPSKR."""
    return Context(key_schedule(mode, decap(enc, recipient_key), info, psk, psk_id))


def seal_psk(
    recipient_key: X25519PublicKey,
    info: bytes,
    aad: bytes,
    plaintext: bytes,
    psk: bytes,
    psk_id: bytes,
) -> tuple[bytes, bytes]:
    """Single-shot PSK-mode encryption (RFC 9180 §6.1): returns ``(enc, ciphertext)``."""
    enc, context = setup_sender(Mode.PSK, recipient_key, info, psk, psk_id)
    return enc, context.seal(plaintext, aad)


def open_psk(
    enc: bytes,
    recipient_key: X25519PrivateKey,
    info: bytes,
    aad: bytes,
    ciphertext: bytes,
    psk: bytes,
    psk_id: bytes,
) -> bytes:
    """Single-shot PSK-mode decryption (RFC 9180 §6.1)."""
    return setup_recipient(Mode.PSK, enc, recipient_key, info, psk, psk_id).open(ciphertext, aad)
