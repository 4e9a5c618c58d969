"""The NTS-KE record codec (RFC 8915 §4).

An NTS-KE message is a sequence of records sent over TLS, ended by an End of Message record::

     0                   1                   2                   3
    |C|         Record Type (15 bits)       |        Body Length (16 bits)    |
    |                         Record Body (Body Length bytes)                    |

The C bit (critical, §4) says a receiver that does not understand the record type must reject
the message instead of ignoring the record. :func:`decode_records` parses complete bytes;
:class:`RecordReader` parses a stream incrementally (bytes in, records out) and stops at End of
Message. Both raise :class:`MalformedRecord` for input that cannot be a record sequence.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from lockstep.ntp.errors import LocalProtocolError, RemoteProtocolError

CRITICAL_BIT: Final = 0x8000
RECORD_HEADER: Final = struct.Struct(">HH")
#: Largest NTS-KE message either side accepts: 16 KiB, like chrony (RFC 8915 sets no limit).
MAX_MESSAGE_LENGTH: Final = 16384
#: ALPN protocol id of NTS-KE (§4, IANA "ntske/1").
ALPN: Final = b"ntske/1"
#: TCP port of NTS-KE (§4, IANA).
KE_PORT: Final = 4460
#: RFC 5705 exporter label (§5.1).
EXPORTER_LABEL: Final = b"EXPORTER-network-time-security"


class RecordType(IntEnum):
    """NTS-KE record types (§4.1, IANA "Network Time Security Key Establishment Record Types")."""

    END_OF_MESSAGE = 0
    NEXT_PROTOCOL = 1
    ERROR = 2
    WARNING = 3
    AEAD_ALGORITHM = 4
    NEW_COOKIE = 5
    SERVER_NEGOTIATION = 6
    PORT_NEGOTIATION = 7


class ErrorCode(IntEnum):
    """Error record codes (§4.1.3)."""

    UNRECOGNIZED_CRITICAL_RECORD = 0
    BAD_REQUEST = 1
    INTERNAL_SERVER_ERROR = 2


class NextProtocol(IntEnum):
    """NTS Next Protocol ids (§7.7); only NTPv4 exists."""

    NTPV4 = 0


class AeadAlgorithm(IntEnum):
    """AEAD ids from the IANA AEAD registry (RFC 5116) that NTS may negotiate (§5.1)."""

    AES_SIV_CMAC_256 = 15


class MalformedRecord(RemoteProtocolError):
    """Bytes that are not a well-formed NTS-KE record sequence (§4)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One NTS-KE record: critical bit, 15-bit type, opaque body (§4)."""

    record_type: int
    body: bytes = b""
    critical: bool = False

    def encode(self) -> bytes:
        if not 0 <= self.record_type <= 0x7FFF:
            raise LocalProtocolError(f"record type out of range: {self.record_type}")
        if len(self.body) > 0xFFFF:
            raise LocalProtocolError(f"record body of {len(self.body)} bytes is too long")
        first = self.record_type | (CRITICAL_BIT if self.critical else 0)
        return RECORD_HEADER.pack(first, len(self.body)) + self.body

    @property
    def known_type(self) -> RecordType | None:
        try:
            return RecordType(self.record_type)
        except ValueError:
            return None

    def u16_list(self) -> tuple[int, ...]:
        """The body read as big-endian 16-bit values (Next Protocol, AEAD, Error, Port)."""
        if len(self.body) % 2:
            name = self.known_type.name if self.known_type else str(self.record_type)
            raise MalformedRecord(f"{name} record body has an odd length ({len(self.body)})")
        return struct.unpack(f">{len(self.body) // 2}H", self.body)

    # -- constructors for the records this package sends -------------------------------------

    @classmethod
    def end_of_message(cls) -> Record:
        return cls(RecordType.END_OF_MESSAGE, b"", critical=True)

    @classmethod
    def next_protocol(cls, *protocols: int) -> Record:
        return cls(RecordType.NEXT_PROTOCOL, _u16s(protocols), critical=True)

    @classmethod
    def aead_algorithm(cls, *algorithms: int) -> Record:
        return cls(RecordType.AEAD_ALGORITHM, _u16s(algorithms), critical=True)

    @classmethod
    def error(cls, code: int) -> Record:
        return cls(RecordType.ERROR, _u16s([code]), critical=True)

    @classmethod
    def warning(cls, code: int) -> Record:
        return cls(RecordType.WARNING, _u16s([code]), critical=True)

    @classmethod
    def new_cookie(cls, cookie: bytes) -> Record:
        return cls(RecordType.NEW_COOKIE, cookie, critical=False)

    @classmethod
    def server(cls, name: str) -> Record:
        return cls(RecordType.SERVER_NEGOTIATION, name.encode("ascii"), critical=True)

    @classmethod
    def port(cls, port: int) -> Record:
        return cls(RecordType.PORT_NEGOTIATION, _u16s([port]), critical=True)


def _u16s(values: Iterable[int]) -> bytes:
    values = list(values)
    try:
        return struct.pack(f">{len(values)}H", *values)
    except struct.error as error:
        raise LocalProtocolError(f"16-bit record value out of range: {error}") from error


def encode_records(records: Iterable[Record]) -> bytes:
    return b"".join(record.encode() for record in records)


def iter_records(data: bytes) -> Iterator[Record]:
    """Records in ``data``, which must hold whole records; raise :class:`MalformedRecord`."""
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        if len(view) - offset < RECORD_HEADER.size:
            raise MalformedRecord(f"{len(view) - offset} bytes left: a record header needs 4")
        first, length = RECORD_HEADER.unpack_from(view, offset)
        end = offset + RECORD_HEADER.size + length
        if end > len(view):
            raise MalformedRecord(f"record body of {length} bytes overruns the message")
        yield Record(first & 0x7FFF, bytes(view[offset + 4 : end]), critical=bool(first & CRITICAL_BIT))
        offset = end


def decode_records(data: bytes) -> list[Record]:
    return list(iter_records(data))


class RecordReader:
    """Incremental parser for one NTS-KE message read from a stream (sans-I/O).

    Feed bytes with :meth:`feed`; it returns the records completed so far. After End of
    Message :attr:`complete` is true and any further byte is an error (§4: a message ends with
    End of Message; the sender closes or waits). More than ``max_length`` bytes before End of
    Message is an error too.
    """

    def __init__(self, max_length: int = MAX_MESSAGE_LENGTH) -> None:
        self.max_length = max_length
        self.complete = False
        self._buffer = bytearray()
        self._consumed = 0

    def feed(self, data: bytes) -> list[Record]:
        if self.complete:
            if data:
                raise MalformedRecord("data after End of Message")
            return []
        self._buffer += data
        if self._consumed + len(self._buffer) > self.max_length:
            raise MalformedRecord(f"message longer than {self.max_length} bytes")
        out: list[Record] = []
        while len(self._buffer) >= RECORD_HEADER.size:
            first, length = RECORD_HEADER.unpack_from(self._buffer)
            if len(self._buffer) < RECORD_HEADER.size + length:
                break
            record = Record(
                first & 0x7FFF, bytes(self._buffer[4 : 4 + length]), critical=bool(first & CRITICAL_BIT)
            )
            del self._buffer[: 4 + length]
            self._consumed += 4 + length
            out.append(record)
            if record.record_type == RecordType.END_OF_MESSAGE:
                if record.body:
                    raise MalformedRecord("End of Message record with a body")
                if self._buffer:
                    raise MalformedRecord("data after End of Message")
                self.complete = True
                break
        return out
