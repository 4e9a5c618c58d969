"""Link with a typed code (docs/protocol/linking.md §10, protocol version 2).

The companion shows 8 Crockford base32 characters. The first 3 (``code_id``) are the server's: they
name the companion's link session, so the server knows them. The other 5 the companion draws and never
sends. The whole code is the password (PRS) of CPace (``cpace.py``) between the primary (initiator A)
and the companion (responder B), relayed by the server. Knowing the code id leaves 25 bits unknown to
the server, and the server burns a code after one attempt, so it (or anyone) has one online guess
per code and no offline test: CPace's messages say nothing about the password without a CPace run.

Under the CPace key the companion seals the same 129-byte payload a QR code carries (§3.1): its ref,
ephemeral key, device key and link secret. From there the flow is the QR flow: inspect (context before
consent), approve with the HPKE grant keyed by that link secret (§5).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lockstep.link import cpace
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.errors import EncodingError, LinkCodeError, LinkError
from lockstep.link.qr import LinkCode, decode_payload, normalise_origin
from lockstep.link.wording import code_refusal

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base32 digits: no I, L, O or U."""
CODE_LENGTH = 8
CODE_ID_LENGTH = 3
SID_SIZE = 16
SEALED_SIZE = 129 + 16  # the §3.1 payload and the AES-GCM tag
CI_LABEL = b"lockstep/link-code/v2"
_SEAL_INFO = b"lockstep/link-code/v2 seal"
_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = re.compile(r"[\s\-]+")


class TypedCodeInvalid(LinkCodeError):
    """What was typed cannot be a linking code (wrong length, or a character Crockford lacks)."""

    def __init__(self, detail: str) -> None:
        super().__init__(code_refusal("typed_code_invalid", detail=detail))


class WrongCode(LinkError):
    """The code typed on the primary is not the companion's: the CPace keys differ (or the peer's
    share was a low-order point). Nothing links; the code is burned."""

    def __init__(self) -> None:
        super().__init__(code_refusal("wrong_code"))


def parse_code(text: str) -> str:
    """The canonical 8 characters of a typed code: case and spaces or dashes ignored, and O, I, L
    read as 0, 1, 1 as Crockford's decoding does. Raises only :class:`TypedCodeInvalid`."""
    if len(text) > 64:
        raise TypedCodeInvalid("that is far too long")
    code = _SEPARATORS.sub("", text).upper().translate(_READS_AS)
    wrong = sorted({character for character in code if character not in ALPHABET})
    if wrong:
        raise TypedCodeInvalid(f"it contains {' '.join(repr(character) for character in wrong)}")
    if len(code) != CODE_LENGTH:
        raise TypedCodeInvalid(f"it has {len(code)} characters, not {CODE_LENGTH}")
    return code


def format_code(code: str) -> str:
    """``K7PM-2QXD``: how a code is shown (and may be typed)."""
    return f"{code[:4]}-{code[4:]}"


def is_code_id(text: object) -> bool:
    return isinstance(text, str) and len(text) == CODE_ID_LENGTH and all(c in ALPHABET for c in text)


def new_code_id() -> str:
    """The server's part: a random code id (the server keeps live ones unique)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_ID_LENGTH))


def new_code(code_id: str) -> str:
    """The companion's code: the server's ``code_id`` and 5 characters only the companion knows."""
    if not is_code_id(code_id):
        raise ValueError("not a code id")
    return code_id + "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH - CODE_ID_LENGTH))


def channel_identifier(origin: str) -> bytes:
    """CPace's CI: the protocol label and the server's origin. Roles are fixed (the primary is always
    A, the companion always B, and each plays one role), so no party names are needed against relays
    or loop-backs (draft-irtf-cfrg-cpace-21, "Guidance regarding party identifier integration")."""
    return cpace.lv_cat(CI_LABEL, normalise_origin(origin).encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Offer:
    """The primary's CPace message (``link.code.offer``): the code id routes it, ``sid`` is fresh."""

    code_id: str
    sid: bytes
    share: bytes

    def to_json(self) -> dict[str, str]:
        return {"code_id": self.code_id, "sid": b64u_encode(self.sid), "share": b64u_encode(self.share)}


@dataclass(frozen=True, slots=True)
class Answer:
    """The companion's CPace message and its §3.1 payload sealed under the CPace key."""

    share: bytes
    sealed: bytes

    def to_json(self) -> dict[str, str]:
        return {"share": b64u_encode(self.share), "sealed": b64u_encode(self.sealed)}

    @classmethod
    def from_json(cls, value: dict[str, object]) -> Answer:
        share, sealed = value.get("share"), value.get("sealed")
        try:
            if not isinstance(share, str) or not isinstance(sealed, str):
                raise EncodingError("share and sealed must be strings")
            return cls(
                b64u_decode(share, length=cpace.FIELD_SIZE_BYTES, what="share"),
                b64u_decode(sealed, length=SEALED_SIZE, what="sealed payload"),
            )
        except EncodingError as error:
            raise WrongCode from error


def _seal_key(isk: bytes, sid: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM key and nonce from the ISK through HKDF-SHA256 (RFC 5869), as the draft
    recommends for any use of ISK ("Key derivation"). One message per key, so a fixed nonce."""
    okm = HKDF(SHA256(), 32 + 12, salt=sid, info=_SEAL_INFO).derive(isk)
    return okm[:32], okm[32:]


@dataclass(frozen=True, slots=True)
class PrimaryRun:
    """The primary between sending its offer and reading the companion's answer."""

    code: str
    origin: str
    party: cpace.Party
    offer: Offer

    @classmethod
    def start(cls, code: str, origin: str, *, scalar: bytes, sid: bytes) -> PrimaryRun:
        """``scalar`` and ``sid`` are fresh random bytes (32 and 16): ``secrets.token_bytes``."""
        if len(sid) != SID_SIZE:
            raise ValueError(f"sid must be {SID_SIZE} bytes")
        party = cpace.Party.start(
            code.encode("ascii"), channel_identifier(origin), sid, b"", initiator=True, scalar=scalar
        )
        return cls(code, origin, party, Offer(code[:CODE_ID_LENGTH], sid, party.share.y))

    def open(self, answer: Answer) -> LinkCode:
        """The companion's payload, as a :class:`LinkCode` for the primary's own origin, or
        :class:`WrongCode`. Any other typed refusal (a weak device key) is a ``LinkCodeError``."""
        try:
            isk = self.party.finish(cpace.Share(answer.share, b""))
            key, nonce = _seal_key(isk, self.party.sid)
            payload = AESGCM(key).decrypt(nonce, answer.sealed, None)
        except (cpace.CpaceError, InvalidTag) as error:
            raise WrongCode from error
        return decode_payload(normalise_origin(self.origin), payload)


def answer(
    code: str, origin: str, offer_sid: bytes, offer_share: bytes, link_code: LinkCode, *, scalar: bytes
) -> Answer:
    """The companion's side: run CPace as B on the primary's offer and seal ``link_code``'s payload.
    Raises :class:`WrongCode` for a low-order share (the companion cannot tell a mistyped code: the
    primary finds out and declines)."""
    if len(offer_sid) != SID_SIZE:
        raise WrongCode
    party = cpace.Party.start(
        code.encode("ascii"), channel_identifier(origin), offer_sid, b"", initiator=False, scalar=scalar
    )
    try:
        isk = party.finish(cpace.Share(offer_share, b""))
    except cpace.CpaceError as error:
        raise WrongCode from error
    key, nonce = _seal_key(isk, offer_sid)
    return Answer(party.share.y, AESGCM(key).encrypt(nonce, link_code.payload(), None))
