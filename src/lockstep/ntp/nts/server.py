"""The server half of NTS-protected NTPv4 (RFC 8915 §5.7).

:meth:`NtsServer.respond` takes a client request carrying NTS extension fields and the plain
48-byte reply header the NTP server core built for it, and returns

* the protected reply: header, the echoed Unique Identifier, and an Authenticator under the S2C
  key whose encrypted part holds one fresh cookie per cookie or placeholder received (fewer if
  that would make the reply longer than the request, which is never allowed);
* an NTS NAK (kiss code NTSN with the Unique Identifier echoed, unauthenticated) when the cookie
  cannot be opened (unknown or expired key, forged) or the request does not authenticate;
* or a :class:`~lockstep.ntp.events.PacketDropped` for a request that is not a well-formed NTS
  request (no unique identifier, two cookies, placeholder length mismatch, authenticator not
  last, ...).

:func:`carries_nts` is how the NTP server core tells an NTS request from plain NTP: a request
that carries NTS fields is never answered with plain time, whatever its framing.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from lockstep.ntp.errors import MalformedPacket
from lockstep.ntp.events import DropReason, PacketDropped
from lockstep.ntp.nts import fields
from lockstep.ntp.nts.cookies import CookieKeys, CookieRejected
from lockstep.ntp.nts.fields import FieldType
from lockstep.ntp.wire import HEADER_LENGTH, Datagram, ExtensionField, KissCode, LeapIndicator, Mode, Trailer

_NAK_PREFIX: Final = struct.Struct(">BBBBIII")
_NTS_TYPES: Final = frozenset(int(kind) for kind in FieldType)
_MAX_CACHED_CIPHERS: Final = 8192


@dataclass(slots=True)
class NtsCounters:
    authenticated: int = 0
    naks: int = 0
    nak_reasons: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NtsNakSent:
    """Bytes of an NTS NAK and why it was sent (for counting and logs)."""

    data: bytes
    reason: str


class NtsServer:
    """Opens cookies and protects replies; stateless per request."""

    def __init__(
        self,
        cookie_keys: CookieKeys,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.cookie_keys = cookie_keys
        self.counters = NtsCounters()
        self._random_bytes = random_bytes
        # AEAD set-up per client key costs as much as the AEAD itself: keep the recent ones.
        # A client's C2S/S2C keys stay the same from one NTS-KE to the next.
        self._ciphers: dict[bytes, AESSIV] = {}

    def respond(
        self, request: bytes, trailer: Trailer, header: bytes, now: int
    ) -> bytes | NtsNakSent | PacketDropped:
        """Protect ``header`` for ``request``, an NTS request (see :func:`carries_nts`) whose
        extension fields ``trailer`` locates (:func:`~lockstep.ntp.wire.scan_trailer`); a request
        that is not a well-formed one is dropped, never answered unprotected (§5.7)."""
        found, mac_start = trailer
        has_mac = mac_start < len(request)
        unique_id: bytes | None = None
        cookie: bytes | None = None
        placeholder_lengths: list[int] = []
        auth_start = auth_end = 0
        for position, (kind, begin, end) in enumerate(found):
            if kind == FieldType.UNIQUE_IDENTIFIER:
                if unique_id is not None or end - begin - 4 < fields.UNIQUE_ID_LENGTH:
                    return self._drop("bad or repeated unique identifier")
                unique_id = request[begin + 4 : end]
            elif kind == FieldType.NTS_COOKIE:
                if cookie is not None:
                    return self._drop("more than one cookie")
                cookie = request[begin + 4 : end]
            elif kind == FieldType.NTS_COOKIE_PLACEHOLDER:
                placeholder_lengths.append(end - begin - 4)
            elif kind == FieldType.NTS_AUTHENTICATOR:
                if position != len(found) - 1 or has_mac:
                    return self._drop("authenticator is not the last field")
                auth_start, auth_end = begin, end
        if unique_id is None or cookie is None or not auth_end:
            return self._drop("unique identifier, cookie or authenticator missing")
        if any(length != len(cookie) for length in placeholder_lengths):
            return self._drop("cookie placeholder length differs from the cookie")
        placeholders = len(placeholder_lengths)
        try:
            contents = self.cookie_keys.open(cookie, now)
        except CookieRejected as error:
            return self._nak(header, unique_id, str(error))
        try:
            plaintext = fields.open_sealed(
                self._cipher(contents.c2s), request[auth_start + 4 : auth_end], request[:auth_start]
            )
            encrypted = fields.decode_fields(plaintext)
        except fields.AuthenticationFailed as error:
            return self._nak(header, unique_id, f"request {error}")
        except MalformedPacket as error:
            return self._drop(f"encrypted fields malformed: {error}")
        # Placeholders may also travel encrypted (§5.5): they count the same.
        placeholders += sum(
            1
            for f in encrypted
            if f.field_type == FieldType.NTS_COOKIE_PLACEHOLDER and len(f.value) == len(cookie)
        )
        uid_field = fields.unique_identifier(unique_id).encode()
        associated = header + uid_field
        new_cookie = self.cookie_keys.make(contents, now)
        cookie_size = 4 + len(fields.padded(new_cookie))
        fixed = len(associated) + 4 + 4 + fields.NONCE_LENGTH + fields.TAG_LENGTH
        count = 1 + placeholders
        while count > 0 and fixed + count * cookie_size > len(request):
            count -= 1  # never reply with more bytes than the request had (§5.7, RFC 8633)
        cookies = [new_cookie] + [self.cookie_keys.make(contents, now) for _ in range(count - 1)]
        plaintext_out = fields.encode_fields([fields.cookie_field(c) for c in cookies[:count]])
        nonce = self._random_bytes(fields.NONCE_LENGTH)
        sealed = fields.seal(self._cipher(contents.s2c), nonce, associated, plaintext_out)
        self.counters.authenticated += 1
        return associated + sealed.encode()

    def _cipher(self, key: bytes) -> AESSIV:
        cipher = self._ciphers.get(key)
        if cipher is None:
            if len(self._ciphers) >= _MAX_CACHED_CIPHERS:
                self._ciphers.clear()
            cipher = self._ciphers[key] = AESSIV(key)
        return cipher

    def _nak(self, header: bytes, unique_id: bytes, reason: str) -> NtsNakSent:
        """An NTS NAK (§5.7): kiss code NTSN, origin echoed, the Unique Identifier echoed."""
        self.counters.naks += 1
        self.counters.nak_reasons[reason] = self.counters.nak_reasons.get(reason, 0) + 1
        first = (LeapIndicator.UNSYNCHRONIZED << 6) | (header[0] & 0x38) | Mode.SERVER
        prefix = _NAK_PREFIX.pack(first, 0, header[2], header[3], 0, 0, KissCode.NTSN)
        kiss = prefix + bytes(8) + header[24:32] + bytes(16)
        return NtsNakSent(kiss + ExtensionField(FieldType.UNIQUE_IDENTIFIER, unique_id).encode(), reason)

    def _drop(self, detail: str) -> PacketDropped:
        dropped = PacketDropped(DropReason.NTS, detail)
        self.counters.dropped[dropped.message] = self.counters.dropped.get(dropped.message, 0) + 1
        return dropped


def carries_nts(request: Datagram) -> bool:
    """Whether a request is an NTS request, which only an authenticated reply or an NTS NAK may
    answer (§5.7): whether any extension field header reachable from the NTP header by following
    lengths has an NTS type, however the framing is broken and whether or not RFC 7822 would
    read the tail as a legacy MAC (a tail that starts with an NTS type is a broken NTS field:
    legacy key ids are small numbers)."""
    offset = HEADER_LENGTH
    total = len(request)
    while offset + 2 <= total:
        if (request[offset] << 8 | request[offset + 1]) in _NTS_TYPES:
            return True
        if offset + 4 > total:
            return False
        length = request[offset + 2] << 8 | request[offset + 3]
        if length < 4 or length % 4:
            return False
        offset += length
    return False
