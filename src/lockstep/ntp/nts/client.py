"""The client half of NTS-protected NTPv4 (RFC 8915 §5.7): cookies, unique ids, checks.

An :class:`NtsClientSession` holds what one NTS-KE produced (the C2S and S2C keys and a jar of
cookies) for one NTP association. For each request it spends one cookie, sends a fresh Unique
Identifier, asks with Cookie Placeholders for as many cookies as it needs to hold
:data:`MAX_COOKIES` again, and authenticates the request under C2S. A reply is accepted only if

* it echoes the Unique Identifier of the request still outstanding (a replayed or stale reply
  carries another one, §5.3),
* and its authenticator verifies under S2C over everything before it (§5.6),

after which the cookies inside the encrypted part are added to the jar (§5.7). An NTS NAK
(kiss code NTSN, unauthenticated by nature) is believed only when it echoes the outstanding
Unique Identifier (and, checked by the caller, our origin timestamp): :meth:`accept_nak` then empties
the jar so the caller runs NTS-KE again (§5.7). Once the jar is
empty :attr:`needs_ke` is true.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from lockstep.ntp.errors import LocalProtocolError, MalformedPacket, RemoteProtocolError
from lockstep.ntp.nts import fields
from lockstep.ntp.nts.fields import FieldType
from lockstep.ntp.nts.records import AeadAlgorithm
from lockstep.ntp.wire import KissCode, Packet

MAX_COOKIES: Final = 8


class NtsReplyRejected(RemoteProtocolError):
    """A reply failed an NTS check; ``str()`` is the reason (never raised into an event loop)."""


@dataclass(frozen=True, slots=True)
class NtsNak:
    """A believable NTS NAK arrived: the cookies were dropped; run NTS-KE again (§5.7)."""


@dataclass(frozen=True, slots=True)
class NtsAuthenticated:
    """The reply is authentic; ``new_cookies`` were added to the jar."""

    new_cookies: int


class NtsClientSession:
    """Keys and cookies for one association, and the state of its outstanding request."""

    def __init__(
        self,
        c2s: bytes,
        s2c: bytes,
        cookies: Sequence[bytes],
        *,
        aead: int = AeadAlgorithm.AES_SIV_CMAC_256,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.aead = aead
        self._c2s = c2s
        self._s2c = s2c
        self._cookies: deque[bytes] = deque(cookies, maxlen=MAX_COOKIES)
        self._random_bytes = random_bytes
        self._unique_id: bytes | None = None
        self.naks = 0
        self.authenticated = 0

    def __repr__(self) -> str:  # never show keys or cookies
        return f"NtsClientSession(cookies={len(self._cookies)}, authenticated={self.authenticated})"

    @property
    def cookies(self) -> int:
        return len(self._cookies)

    @property
    def needs_ke(self) -> bool:
        return not self._cookies

    def rekey(
        self, c2s: bytes, s2c: bytes, cookies: Sequence[bytes], aead: int = AeadAlgorithm.AES_SIV_CMAC_256
    ) -> None:
        """Take the result of a fresh NTS-KE."""
        self.aead = aead
        self._c2s, self._s2c = c2s, s2c
        self._cookies = deque(cookies, maxlen=MAX_COOKIES)
        self._unique_id = None

    def protect(self, header: bytes) -> bytes:
        """Turn a 48-byte request header into an NTS request (§5.7); spends one cookie."""
        if not self._cookies:
            raise LocalProtocolError("no NTS cookie left: run NTS-KE first")
        cookie = self._cookies.popleft()
        unique_id = self._random_bytes(fields.UNIQUE_ID_LENGTH)
        self._unique_id = unique_id
        wanted = MAX_COOKIES - len(self._cookies) - 1  # the cookie we spend comes back too
        extensions = [fields.unique_identifier(unique_id), fields.cookie_field(cookie)]
        extensions.extend(fields.placeholder_field(len(cookie)) for _ in range(wanted))
        body = header + b"".join(field.encode() for field in extensions)
        nonce = self._random_bytes(fields.NONCE_LENGTH)
        return body + fields.seal(self._c2s, nonce, body).encode()

    def accept_nak(self) -> None:
        """Believe an NTS NAK that echoed our unique identifier and origin timestamp (§5.7):
        the server cannot use our cookies, so drop them all; NTS-KE must run again."""
        self._unique_id = None
        self._cookies.clear()
        self.naks += 1

    def check(self, data: bytes, packet: Packet) -> NtsAuthenticated | NtsNak:
        """Check a reply decoded as ``packet`` from ``data``; raise NtsReplyRejected with why."""
        if self._unique_id is None:
            raise NtsReplyRejected("no NTS request outstanding (replayed or duplicate reply)")
        located = fields.locate(packet)
        unique_ids = [f for f in located if f.field_type == FieldType.UNIQUE_IDENTIFIER]
        if not unique_ids:
            raise NtsReplyRejected("reply carries no NTS unique identifier")
        if len(unique_ids) > 1 or unique_ids[0].value != self._unique_id:
            raise NtsReplyRejected("unique identifier does not match our request (replayed or forged)")
        if packet.stratum == 0 and packet.reference_id == KissCode.NTSN:
            return NtsNak()  # the caller checks the origin timestamp, then calls accept_nak()
        authenticators = [f for f in located if f.field_type == FieldType.NTS_AUTHENTICATOR]
        if not authenticators:
            raise NtsReplyRejected("reply is not NTS-authenticated")
        authenticator = authenticators[0]
        if authenticator.offset < unique_ids[0].offset:
            raise NtsReplyRejected("unique identifier is outside the authenticated part")
        try:
            plaintext = fields.open_sealed(self._s2c, authenticator.value, data[: authenticator.offset])
            encrypted = fields.decode_fields(plaintext)
        except fields.AuthenticationFailed as error:
            raise NtsReplyRejected(str(error)) from None
        except MalformedPacket as error:
            raise NtsReplyRejected(f"encrypted fields malformed: {error}") from None
        self._unique_id = None
        self.authenticated += 1
        new = [f.value for f in encrypted if f.field_type == FieldType.NTS_COOKIE and f.value]
        for cookie in new[: MAX_COOKIES - len(self._cookies)]:
            self._cookies.append(cookie)
        return NtsAuthenticated(len(new))
