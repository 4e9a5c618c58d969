"""NTS Key Establishment state machines, client and server (RFC 8915 §4), sans-I/O.

Neither class touches TLS: the adapter (:mod:`lockstep.ntp.aio.nts_ke`) runs TLS 1.3 with ALPN
``ntske/1``, feeds the application bytes it reads to ``receive_data`` and sends what the state
machine returns. Keys come from the TLS exporter (RFC 5705) with :data:`EXPORTER_LABEL` and the
context of :func:`exporter_context` (§5.1); the adapter exports them and hands them in.

Client::

    ke = KeClient()
    send(ke.request())                      # Next Protocol [NTPv4], AEAD [SIV-CMAC-256], EOM
    result = ke.receive_data(bytes_read)    # None until End of Message; KeResult, or KeFailed

Server::

    session = KeServerSession(cookie_keys, ntp_port=P)
    outcome = session.receive_data(bytes_read)   # None until End of Message
    # KeRefused: send outcome.response and close.  KeAccepted: export keys for outcome.aead, then
    send(session.respond(c2s, s2c, now))         # Next Protocol, AEAD, port/server, 8 cookies, EOM
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from lockstep.ntp.errors import LocalProtocolError, RemoteProtocolError
from lockstep.ntp.nts.cookies import CookieContents, CookieKeys
from lockstep.ntp.nts.records import (
    AeadAlgorithm,
    ErrorCode,
    MalformedRecord,
    NextProtocol,
    Record,
    RecordReader,
    RecordType,
    encode_records,
)

COOKIES_PER_KE: Final = 8
SUPPORTED_AEADS: Final = (AeadAlgorithm.AES_SIV_CMAC_256,)
C2S: Final = 0
S2C: Final = 1


def exporter_context(protocol: int, aead: int, direction: int) -> bytes:
    """RFC 5705 exporter context (§5.1): protocol id (2), AEAD id (2), 0x00 C2S / 0x01 S2C."""
    return protocol.to_bytes(2, "big") + aead.to_bytes(2, "big") + bytes([direction])


class KeFailed(RemoteProtocolError):
    """NTS-KE did not produce keys and cookies; the message says why (an Error record's code,
    a refused negotiation, or a malformed response)."""

    def __init__(self, reason: str, error_code: int | None = None) -> None:
        super().__init__(reason)
        self.error_code = error_code


@dataclass(frozen=True, slots=True)
class KeResult:
    """What a successful NTS-KE gives the client (§4.1.7, §4.1.5, §4.1.6)."""

    aead: int
    cookies: tuple[bytes, ...]
    server: str | None  # NTPv4 Server Negotiation; None: the KE server's own address
    port: int | None  # NTPv4 Port Negotiation; None: 123
    warnings: tuple[int, ...] = ()

    def __repr__(self) -> str:  # never print cookies
        return (
            f"KeResult(aead={self.aead}, cookies={len(self.cookies)},"
            f" server={self.server!r}, port={self.port})"
        )


class KeState(Enum):
    AWAITING_RESPONSE = "awaiting response"
    DONE = "done"
    FAILED = "failed"


def _name(record: Record) -> str:
    known = record.known_type
    return known.name if known is not None else f"type {record.record_type}"


class KeClient:
    """The client side of one NTS-KE exchange (§4)."""

    def __init__(
        self,
        *,
        aeads: tuple[int, ...] = SUPPORTED_AEADS,
        server_hint: str | None = None,
        port_hint: int | None = None,
    ) -> None:
        if not aeads:
            raise LocalProtocolError("offer at least one AEAD algorithm")
        self.aeads = aeads
        self.server_hint = server_hint
        self.port_hint = port_hint
        self.state = KeState.AWAITING_RESPONSE
        self._reader = RecordReader()
        self._records: list[Record] = []

    def request(self) -> bytes:
        """The request message (§4): protocols and AEADs we offer, optional hints, EOM."""
        records = [Record.next_protocol(NextProtocol.NTPV4), Record.aead_algorithm(*self.aeads)]
        if self.server_hint is not None:
            records.append(Record.server(self.server_hint))
        if self.port_hint is not None:
            records.append(Record.port(self.port_hint))
        records.append(Record.end_of_message())
        return encode_records(records)

    def receive_data(self, data: bytes) -> KeResult | None:
        """Feed bytes read from TLS; the result once End of Message arrived, else None."""
        if self.state is not KeState.AWAITING_RESPONSE:
            raise LocalProtocolError(f"NTS-KE client is {self.state.value}")
        try:
            self._records.extend(self._reader.feed(data))
            if not self._reader.complete:
                return None
            result = self._interpret(self._records)
        except MalformedRecord as error:
            self.state = KeState.FAILED
            raise KeFailed(f"malformed NTS-KE response: {error}") from None
        except KeFailed:
            self.state = KeState.FAILED
            raise
        self.state = KeState.DONE
        return result

    def connection_closed(self) -> None:
        """The server closed the connection: an error unless the response was complete."""
        if self.state is KeState.AWAITING_RESPONSE:
            self.state = KeState.FAILED
            raise KeFailed("NTS-KE server closed the connection before End of Message")

    def _interpret(self, records: list[Record]) -> KeResult:
        protocols: tuple[int, ...] | None = None
        aead: tuple[int, ...] | None = None
        cookies: list[bytes] = []
        server: str | None = None
        port: int | None = None
        warnings: list[int] = []
        for record in records:
            kind = record.known_type
            if kind is RecordType.END_OF_MESSAGE:
                continue
            if kind is RecordType.ERROR:
                code = record.u16_list()
                value = code[0] if code else -1
                text = ErrorCode(value).name if value in ErrorCode._value2member_map_ else str(value)
                raise KeFailed(f"NTS-KE server sent error {value} ({text})", value)
            if kind is RecordType.WARNING:
                warnings.extend(record.u16_list())
            elif kind is RecordType.NEXT_PROTOCOL:
                if protocols is not None:
                    raise KeFailed("NTS-KE response has two Next Protocol records")
                protocols = record.u16_list()
            elif kind is RecordType.AEAD_ALGORITHM:
                if aead is not None:
                    raise KeFailed("NTS-KE response has two AEAD Algorithm records")
                aead = record.u16_list()
            elif kind is RecordType.NEW_COOKIE:
                if not record.body:
                    raise KeFailed("NTS-KE response has an empty cookie")
                cookies.append(record.body)
            elif kind is RecordType.SERVER_NEGOTIATION:
                try:
                    server = record.body.decode("ascii")
                except UnicodeDecodeError:
                    raise KeFailed("NTPv4 Server Negotiation record is not ASCII") from None
                if not server:
                    raise KeFailed("empty NTPv4 Server Negotiation record")
            elif kind is RecordType.PORT_NEGOTIATION:
                values = record.u16_list()
                if len(values) != 1:
                    raise KeFailed("NTPv4 Port Negotiation record must hold one port")
                port = values[0]
            elif record.critical:
                raise KeFailed(f"NTS-KE response has an unrecognised critical record ({_name(record)})")
        if protocols is None:
            raise KeFailed("NTS-KE response lacks a Next Protocol record")
        if protocols != (NextProtocol.NTPV4,):
            if not protocols:
                raise KeFailed("NTS-KE server supports none of our protocols (NTPv4)")
            raise KeFailed(f"NTS-KE server chose protocols {list(protocols)}, not [0] (NTPv4)")
        if aead is None:
            raise KeFailed("NTS-KE response lacks an AEAD Algorithm record")
        if len(aead) != 1 or aead[0] not in self.aeads:
            if not aead:
                raise KeFailed("NTS-KE server supports none of our AEAD algorithms")
            raise KeFailed(f"NTS-KE server chose AEAD {list(aead)}, which we did not offer")
        if not cookies:
            raise KeFailed("NTS-KE response carries no cookies")
        return KeResult(aead[0], tuple(cookies), server, port, tuple(warnings))


@dataclass(frozen=True, slots=True)
class KeAccepted:
    """The request negotiated NTPv4 with ``aead``: export the keys and call ``respond``."""

    aead: int


@dataclass(frozen=True, slots=True)
class KeRefused:
    """The request cannot be served: send ``response`` (Error or empty negotiation) and close."""

    response: bytes
    reason: str


class KeServerSession:
    """The server side of one NTS-KE connection (§4)."""

    def __init__(
        self,
        cookie_keys: CookieKeys,
        *,
        ntp_server: str | None = None,
        ntp_port: int | None = None,
        aeads: tuple[int, ...] = SUPPORTED_AEADS,
        cookies: int = COOKIES_PER_KE,
    ) -> None:
        self.cookie_keys = cookie_keys
        self.ntp_server = ntp_server
        self.ntp_port = ntp_port
        self.aeads = aeads
        self.cookies = cookies
        self.outcome: KeAccepted | KeRefused | None = None
        self._reader = RecordReader()
        self._records: list[Record] = []

    def receive_data(self, data: bytes) -> KeAccepted | KeRefused | None:
        if self.outcome is not None:
            raise LocalProtocolError("NTS-KE request already complete")
        try:
            self._records.extend(self._reader.feed(data))
        except MalformedRecord as error:
            self.outcome = _refuse(ErrorCode.BAD_REQUEST, f"malformed request: {error}")
            return self.outcome
        if not self._reader.complete:
            return None
        self.outcome = self._negotiate(self._records)
        return self.outcome

    def connection_closed(self) -> str | None:
        """Why an incomplete request is given up on (None if it completed)."""
        return None if self.outcome is not None else "client closed before End of Message"

    def _negotiate(self, records: list[Record]) -> KeAccepted | KeRefused:
        protocol_records = 0
        offered_protocols: list[int] = []
        aead_records = 0
        offered_aeads: list[int] = []
        try:
            for record in records:
                kind = record.known_type
                if kind is RecordType.END_OF_MESSAGE:
                    continue
                if kind is RecordType.NEXT_PROTOCOL:
                    protocol_records += 1
                    offered_protocols.extend(record.u16_list())
                elif kind is RecordType.AEAD_ALGORITHM:
                    aead_records += 1
                    offered_aeads.extend(record.u16_list())
                elif kind in (RecordType.ERROR, RecordType.WARNING, RecordType.NEW_COOKIE):
                    return _refuse(ErrorCode.BAD_REQUEST, f"a client may not send {kind.name}")
                elif kind in (RecordType.SERVER_NEGOTIATION, RecordType.PORT_NEGOTIATION):
                    continue  # hints (§4.1.7-4.1.8): we always answer with our own address
                elif record.critical:
                    return _refuse(
                        ErrorCode.UNRECOGNIZED_CRITICAL_RECORD,
                        f"unrecognised critical record ({_name(record)})",
                    )
        except MalformedRecord as error:
            return _refuse(ErrorCode.BAD_REQUEST, str(error))
        if protocol_records != 1 or not offered_protocols:
            return _refuse(ErrorCode.BAD_REQUEST, "need exactly one non-empty Next Protocol record")
        if NextProtocol.NTPV4 not in offered_protocols:
            response = encode_records([Record.next_protocol(), Record.end_of_message()])
            return KeRefused(response, "client offers no protocol we support")
        if aead_records != 1 or not offered_aeads:
            return _refuse(ErrorCode.BAD_REQUEST, "need exactly one non-empty AEAD Algorithm record")
        chosen = next((a for a in offered_aeads if a in self.aeads), None)
        if chosen is None:
            response = encode_records(
                [Record.next_protocol(NextProtocol.NTPV4), Record.aead_algorithm(), Record.end_of_message()]
            )
            return KeRefused(response, f"client offers no AEAD we support ({offered_aeads})")
        return KeAccepted(chosen)

    def respond(self, c2s: bytes, s2c: bytes, now: int) -> bytes:
        """The success response (§4): negotiation results, our NTP address, cookies, EOM."""
        if not isinstance(self.outcome, KeAccepted):
            raise LocalProtocolError("respond() needs an accepted request")
        contents = CookieContents(self.outcome.aead, c2s, s2c)
        records = [Record.next_protocol(NextProtocol.NTPV4), Record.aead_algorithm(self.outcome.aead)]
        if self.ntp_server is not None:
            records.append(Record.server(self.ntp_server))
        if self.ntp_port is not None:
            records.append(Record.port(self.ntp_port))
        records.extend(Record.new_cookie(self.cookie_keys.make(contents, now)) for _ in range(self.cookies))
        records.append(Record.end_of_message())
        return encode_records(records)


def _refuse(code: ErrorCode, reason: str) -> KeRefused:
    return KeRefused(encode_records([Record.error(code), Record.end_of_message()]), reason)
