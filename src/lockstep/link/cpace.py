"""CPace, the balanced PAKE of draft-irtf-cfrg-cpace-21, cipher suite CPACE-X25519-SHA512.

Sections are cited by their titles in draft-irtf-cfrg-cpace-21. The group operation is
``cryptography``'s audited X25519 (RFC 7748); written here are only what the draft defines on top of
it: the length-value string encodings ("CPace function definitions"), the generator string and its
Elligator 2 map ("CPace group objects G_X25519 and G_X448 ..."), and the ISK ("CPace protocol
instructions"). Checked against the draft's vectors, ``vectors/cpace-x25519.json``.

Side channels: Python integers are not constant-time, so the generator's Elligator 2 map may leak
timing about the password string. Linking codes live three minutes and are burned by the server after
one attempt, which bounds what such a leak is worth; the browser's twin has the same limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from lockstep.link.errors import LinkError

FIELD_SIZE_BYTES = 32  # G_X25519.field_size_bytes
FIELD_SIZE_BITS = 255  # G_X25519.field_size_bits
DSI = b"CPace255"  # G_X25519.DSI
NEUTRAL = bytes(FIELD_SIZE_BYTES)  # G_X25519.I
SHA512_BLOCK_BYTES = 128  # H.s_in_bytes for SHA-512 ("Hash function H")

_P = 2**255 - 19
_A = 486662  # Curve25519's Montgomery A (RFC 7748 §4.1)
_Z = 2  # the non-square of "Elligator 2 reference implementation" for Curve25519


class CpaceError(LinkError):
    """The peer's share is a low-order point or otherwise makes K the neutral element: abort."""


def prepend_len(data: bytes) -> bytes:
    """``prepend_len``: the LEB128 length of ``data``, then ``data`` ("prepend_len function")."""
    length = len(data)
    encoded = bytearray()
    while True:
        if length < 128:
            encoded.append(length)
        else:
            encoded.append((length & 0x7F) + 0x80)
        length >>= 7
        if length == 0:
            break
    return bytes(encoded) + data


def lv_cat(*parts: bytes) -> bytes:
    """``lv_cat``: each part with its length prepended ("lv_cat function")."""
    return b"".join(prepend_len(part) for part in parts)


def o_cat(bytes1: bytes, bytes2: bytes) -> bytes:
    """``o_cat``: b"oc", then the lexicographically larger string first ("Definitions for ordered
    concatenation"). Python's bytes ordering is the draft's ``lexiographically_larger``."""
    return b"oc" + (bytes1 + bytes2 if bytes1 > bytes2 else bytes2 + bytes1)


def transcript_ir(ya: bytes, ad_a: bytes, yb: bytes, ad_b: bytes) -> bytes:
    """The initiator-responder transcript ("Definitions for transcript_ir function")."""
    return lv_cat(ya, ad_a) + lv_cat(yb, ad_b)


def transcript_oc(ya: bytes, ad_a: bytes, yb: bytes, ad_b: bytes) -> bytes:
    """The symmetric transcript ("Definitions for transcript_oc function")."""
    return o_cat(lv_cat(ya, ad_a), lv_cat(yb, ad_b))


def generator_string(prs: bytes, ci: bytes, sid: bytes) -> bytes:
    """``generator_string(G.DSI, PRS, CI, sid, H.s_in_bytes)`` ("Common function for computing
    generators"): the zero padding makes DSI and a short PRS fill SHA-512's first block."""
    len_zpad = max(0, SHA512_BLOCK_BYTES - 1 - len(prepend_len(prs)) - len(prepend_len(DSI)))
    return lv_cat(DSI, prs, bytes(len_zpad), ci, sid)


def _decode_u_coordinate(data: bytes) -> int:
    """RFC 7748 §5 decodeUCoordinate for 255 bits: clear bit 255, read little-endian."""
    return int.from_bytes(data, "little") & ((1 << FIELD_SIZE_BITS) - 1)


def _elligator2(r: int) -> bytes:
    """``map_to_curve_elligator2`` for Curve25519, u coordinate only, as in the draft's "Elligator 2
    reference implementation" (RFC 9380 §6.7.1): v = -A / (1 + Z r²), ε = χ(v³ + A v² + v),
    u = ε v - (1 - ε) A / 2."""
    r %= _P
    v = (-_A * pow(1 + _Z * r * r, -1, _P)) % _P
    epsilon = pow((v * v * v + _A * v * v + v) % _P, (_P - 1) // 2, _P)  # 0, 1 or p - 1
    u = (epsilon * v - (1 - epsilon) * _A * pow(2, -1, _P)) % _P
    return u.to_bytes(FIELD_SIZE_BYTES, "little")


def calculate_generator(prs: bytes, ci: bytes, sid: bytes) -> bytes:
    """``G_X25519.calculate_generator(H, PRS, CI, sid)``: hash the generator string to 32 bytes,
    decode it as a u coordinate and map it with Elligator 2."""
    gen_str_hash = hashlib.sha512(generator_string(prs, ci, sid)).digest()[:FIELD_SIZE_BYTES]
    return _elligator2(_decode_u_coordinate(gen_str_hash))


def scalar_mult_vfy(scalar: bytes, point: bytes) -> bytes:
    """``G_X25519.scalar_mult_vfy(y, g) = X25519(y, g)``; G.I (all zero) for low-order points.

    OpenSSL refuses to output the all-zero shared secret; that refusal is the neutral element here.
    """
    private = X25519PrivateKey.from_private_bytes(scalar)
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(point))
    except ValueError:
        return NEUTRAL


@dataclass(frozen=True, slots=True)
class Share:
    """One party's message: its public share Y and associated data AD."""

    y: bytes
    ad: bytes


@dataclass(frozen=True, slots=True)
class Party:
    """One party's state between sending its share and receiving the peer's: the scalar and the inputs
    the ISK needs. ``initiator`` is A in the initiator-responder setting."""

    scalar: bytes
    sid: bytes
    share: Share
    initiator: bool

    @classmethod
    def start(cls, prs: bytes, ci: bytes, sid: bytes, ad: bytes, *, initiator: bool, scalar: bytes) -> Party:
        """``g = calculate_generator(H, PRS, CI, sid); Y = scalar_mult(y, g)`` ("CPace protocol
        instructions"). ``scalar`` is ``G.sample_scalar()``: 32 random bytes, never reused ("Nonce
        values"); callers pass ``secrets.token_bytes(32)``, tests the draft's."""
        if len(scalar) != FIELD_SIZE_BYTES:
            raise ValueError("a CPace X25519 scalar is 32 bytes")
        g = calculate_generator(prs, ci, sid)
        y = scalar_mult_vfy(scalar, g)
        if y == NEUTRAL:  # cannot happen for a point Elligator 2 made; never send G.I
            raise CpaceError("the generator is the neutral element")
        return cls(scalar, sid, Share(y, ad), initiator)

    def finish(self, peer: Share) -> bytes:
        """``K = scalar_mult_vfy(y, Y_peer)``, abort if K = G.I, else
        ``ISK = H.hash(lv_cat(G.DSI || b"_ISK", sid, K) || transcript_ir(Ya, ADa, Yb, ADb))``.
        K never leaves this function ("Key derivation")."""
        if len(peer.y) != FIELD_SIZE_BYTES:
            raise CpaceError("a CPace X25519 share is 32 bytes")
        k = scalar_mult_vfy(self.scalar, peer.y)
        if k == NEUTRAL:
            raise CpaceError("the peer's share is a low-order point")
        a, b = (self.share, peer) if self.initiator else (peer, self.share)
        return isk(self.sid, k, transcript_ir(a.y, a.ad, b.y, b.ad))


def isk(sid: bytes, k: bytes, transcript: bytes) -> bytes:
    """The intermediate session key from K and a transcript ("CPace protocol instructions")."""
    return hashlib.sha512(lv_cat(DSI + b"_ISK", sid, k) + transcript).digest()


def sid_output(transcript: bytes) -> bytes:
    """``sid_output = H.hash(b"CPaceSidOutput" || transcript)`` ("Calculating a session identifier
    alongside with the CPace run")."""
    return hashlib.sha512(b"CPaceSidOutput" + transcript).digest()
