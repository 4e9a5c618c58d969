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
from lockstep.ntp.nts.cookies import COOKIE_LENGTH, COOKIE_NONCE_LENGTH, CookieKeys, CookieRejected
from lockstep.ntp.nts.fields import FieldType
from lockstep.ntp.nts.nonces import NoncePool, forget_nonces_in_child
from lockstep.ntp.wire import HEADER_LENGTH, Datagram, KissCode, LeapIndicator, Mode, Trailer

try:  # built by the package's build (setup.py) when a C compiler and Nettle's headers are there
    from lockstep.ntp.nts import _fastpath
except ImportError:  # pragma: no cover - the Python path below serves alone
    _fastpath = None  # type: ignore[assignment]

#: Whether the compiled path (lockstep/ntp/nts/_fastpath.c) was built and can be used.
COMPILED_AVAILABLE: Final = _fastpath is not None

_NAK_PREFIX: Final = struct.Struct(">BBBBIII")
_NTS_TYPES: Final = frozenset(int(kind) for kind in FieldType)
_MAX_CACHED_CLIENTS: Final = 4096
_MAX_COMPILED_KEYS: Final = 256  # MAX_KEYS in _fastpath.c
# Field types as plain ints: compared per field on the hot path, where IntEnum members are slower.
_UNIQUE_IDENTIFIER: Final = int(FieldType.UNIQUE_IDENTIFIER)
_NTS_COOKIE: Final = int(FieldType.NTS_COOKIE)
_NTS_COOKIE_PLACEHOLDER: Final = int(FieldType.NTS_COOKIE_PLACEHOLDER)
_NTS_AUTHENTICATOR: Final = int(FieldType.NTS_AUTHENTICATOR)
# A new cookie in the reply's encrypted part: the field header, then the 104-byte cookie, which
# needs no padding (RFC 8915 §5.4, RFC 7822 §3).
_COOKIE_FIELD_HEADER: Final = struct.pack(">HH", FieldType.NTS_COOKIE, 4 + COOKIE_LENGTH)
_COOKIE_FIELD_LENGTH: Final = 4 + COOKIE_LENGTH
# The reply's Authenticator field around the encrypted cookies: field header, nonce and
# ciphertext lengths, our 16-byte nonce, the 16-byte synthetic IV (§5.6).
_AUTHENTICATOR_LENGTH: Final = 4 + 4 + fields.NONCE_LENGTH + fields.TAG_LENGTH


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
        compiled: bool = True,
    ) -> None:
        """``compiled``: answer well-formed requests with the compiled path when it was built
        (byte for byte what this class's Python path answers, tests/nts/test_compiled_path.py);
        every other request, and every request without it, takes the Python path."""
        self._fast: _fastpath.FastPath | None = None
        self._fast_key_id = -1  # the key id the compiled path has keys for (-1: none yet)
        self.cookie_keys = cookie_keys
        self.counters = NtsCounters()
        self._nonces: NoncePool | _fastpath.FastPath
        if compiled and _fastpath is not None and cookie_keys.keep < _MAX_COMPILED_KEYS:
            # One nonce sequence for both paths: the compiled object is the pool.
            self._fast = self._nonces = _fastpath.FastPath(random_bytes)
            forget_nonces_in_child(self._fast)
        else:
            self._nonces = NoncePool(random_bytes)
        # AEAD set-up per client key costs as much as the AEAD itself: keep the recent ones, by
        # the cookie plaintext that holds both keys. A client's C2S/S2C keys stay the same from
        # one request to the next (every cookie of one NTS-KE holds the same keys, §5.7).
        self._ciphers: dict[bytes, tuple[AESSIV, AESSIV]] = {}

    @property
    def cookie_keys(self) -> CookieKeys:
        return self._cookie_keys

    @cookie_keys.setter
    def cookie_keys(self, keys: CookieKeys) -> None:
        """New keys (a restart without the master secret): the compiled path reloads them."""
        self._cookie_keys = keys
        self._fast_key_id = -1

    def respond(
        self, request: bytes, trailer: Trailer, header: bytes, now: int
    ) -> bytes | NtsNakSent | PacketDropped:
        """Protect ``header`` for ``request``, an NTS request (see :func:`carries_nts`) whose
        extension fields ``trailer`` locates (:func:`~lockstep.ntp.wire.scan_trailer`); a request
        that is not a well-formed one is dropped, never answered unprotected (§5.7)."""
        fast = self.compiled(now)
        if fast is not None:
            reply = fast.respond(request, header, self._fast_key_id)
            if reply is not None:
                self.counters.authenticated += 1
                return reply
        found, mac_start = trailer
        has_mac = mac_start < len(request)
        unique_id = cookie = None  # (begin, end) of the field, header included
        placeholder_lengths: list[int] = []
        auth_start = auth_end = 0
        for position, (kind, begin, end) in enumerate(found):
            if kind == _UNIQUE_IDENTIFIER:
                if unique_id is not None or end - begin - 4 < fields.UNIQUE_ID_LENGTH:
                    return self._drop("bad or repeated unique identifier")
                unique_id = begin, end
            elif kind == _NTS_COOKIE:
                if cookie is not None:
                    return self._drop("more than one cookie")
                cookie = begin, end
            elif kind == _NTS_COOKIE_PLACEHOLDER:
                placeholder_lengths.append(end - begin)
            elif kind == _NTS_AUTHENTICATOR:
                if position != len(found) - 1 or has_mac:
                    return self._drop("authenticator is not the last field")
                auth_start, auth_end = begin, end
        if unique_id is None or cookie is None or not auth_end:
            return self._drop("unique identifier, cookie or authenticator missing")
        cookie_field_length = cookie[1] - cookie[0]
        if placeholder_lengths.count(cookie_field_length) != len(placeholder_lengths):
            return self._drop("cookie placeholder length differs from the cookie")
        placeholders = len(placeholder_lengths)
        # The echoed Unique Identifier field is the request's, byte for byte (§5.7).
        uid_field = request[unique_id[0] : unique_id[1]]
        try:
            cookie_plaintext = self.cookie_keys.open_plaintext(request[cookie[0] + 4 : cookie[1]], now)
        except CookieRejected as error:
            return self._nak(header, uid_field, str(error))
        ciphers = self._ciphers.get(cookie_plaintext)
        if ciphers is None:
            ciphers = self._client_ciphers(cookie_plaintext)
        try:
            authenticator = request[auth_start + 4 : auth_end]
            plaintext = fields.open_sealed(ciphers[0], authenticator, request[:auth_start])
            if plaintext:
                # Placeholders may also travel encrypted (§5.5): they count the same.
                placeholders += sum(
                    1
                    for f in fields.decode_fields(plaintext)
                    if f.field_type == FieldType.NTS_COOKIE_PLACEHOLDER
                    and len(f.value) + 4 == cookie_field_length
                )
        except fields.AuthenticationFailed as error:
            return self._nak(header, uid_field, f"request {error}")
        except MalformedPacket as error:
            return self._drop(f"encrypted fields malformed: {error}")
        associated = header + uid_field
        count = 1 + placeholders
        fixed = len(associated) + _AUTHENTICATOR_LENGTH
        while count > 0 and fixed + count * _COOKIE_FIELD_LENGTH > len(request):
            count -= 1  # never reply with more bytes than the request had (§5.7, RFC 8633)
        take = self._nonces.take
        seal = self.cookie_keys.seal
        new_cookies = b"".join(
            [
                _COOKIE_FIELD_HEADER + seal(cookie_plaintext, now, take(COOKIE_NONCE_LENGTH))
                for _ in range(count)
            ]
        )
        sealed = fields.authenticator(ciphers[1], take(fields.NONCE_LENGTH), associated, new_cookies)
        self.counters.authenticated += 1
        return associated + sealed

    def compiled(self, now: int) -> _fastpath.FastPath | None:
        """The compiled path with the cookie keys of ``now``'s period loaded (it declines requests
        of any other period), or None when it was not built or not wanted. A batched adapter may
        answer whole batches with its ``answer_batch`` and count them with
        :meth:`count_compiled`."""
        fast = self._fast
        if fast is not None:
            key_id = self.cookie_keys.key_id(now)
            if key_id != self._fast_key_id:
                self._load_compiled_keys(key_id)
        return fast

    def count_compiled(self, answered: int) -> None:
        """``answered`` requests were authenticated and answered by ``answer_batch``."""
        self.counters.authenticated += answered

    def _load_compiled_keys(self, key_id: int) -> None:
        """Hand the compiled path the cookie keys it may open (the last ``keep`` periods') and
        seal with (``key_id``'s): derived once per rotation."""
        assert self._fast is not None
        keys = self.cookie_keys
        ids = [(key_id - age) & 0xFFFFFFFF for age in range(keys.keep + 1)]
        self._fast.set_keys(key_id, keys.keep, keys.rotation, [(i, keys.key_material(i)) for i in ids])
        self._fast_key_id = key_id

    def _client_ciphers(self, cookie_plaintext: bytes) -> tuple[AESSIV, AESSIV]:
        """The C2S and S2C AEADs for the keys in a cookie's plaintext (see CookieKeys), cached."""
        if len(self._ciphers) >= _MAX_CACHED_CLIENTS:
            self._ciphers.clear()
        c2s = cookie_plaintext[4 : 4 + fields.KEY_LENGTH]
        s2c = cookie_plaintext[4 + fields.KEY_LENGTH : 4 + 2 * fields.KEY_LENGTH]
        ciphers = self._ciphers[cookie_plaintext] = AESSIV(c2s), AESSIV(s2c)
        return ciphers

    def _nak(self, header: bytes, uid_field: bytes, reason: str) -> NtsNakSent:
        """An NTS NAK (§5.7): kiss code NTSN, origin echoed, the Unique Identifier echoed."""
        self.counters.naks += 1
        self.counters.nak_reasons[reason] = self.counters.nak_reasons.get(reason, 0) + 1
        first = (LeapIndicator.UNSYNCHRONIZED << 6) | (header[0] & 0x38) | Mode.SERVER
        prefix = _NAK_PREFIX.pack(first, 0, header[2], header[3], 0, 0, KissCode.NTSN)
        kiss = prefix + bytes(8) + header[24:32] + bytes(16)
        return NtsNakSent(kiss + uid_field, reason)

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
