"""The NTP packet codec: RFC 5905 §7.3 header, RFC 7822 extension fields, legacy MAC.

``Packet.decode(bytes)`` returns a new frozen value or raises :class:`MalformedPacket`;
``Packet.encode()`` returns the exact bytes. Re-encoding a decoded packet gives back the same bytes
(the vectors in ``tests/ntp/vectors`` check this on captures from chrony and NTPsec).

All timestamps are the raw 64-bit wire values (see :mod:`lockstep.ntp.timestamps` for eras); root
delay and root dispersion are the raw 16.16 short values.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from lockstep.ntp.errors import LocalProtocolError, MalformedPacket

HEADER: Final = struct.Struct(">BBbbIIIQQQQ")
HEADER_LENGTH: Final = HEADER.size  # 48
#: Legacy symmetric-key MAC lengths: key id (4) + MD5 (16) or SHA-1 (20) digest (RFC 5905 §7.3).
MAC_LENGTHS: Final = (20, 24)
#: A crypto-NAK is a MAC made of a zero key id alone (RFC 5905 §7.4).
CRYPTO_NAK_LENGTH: Final = 4
#: Smallest extension field (RFC 7822 §3): 4 bytes of type/length and 12 of value.
MIN_EXTENSION_LENGTH: Final = 16


class LeapIndicator(IntEnum):
    """LI, the leap warning (RFC 5905 §7.3, Figure 9)."""

    NO_WARNING = 0
    LAST_MINUTE_61 = 1
    LAST_MINUTE_59 = 2
    UNSYNCHRONIZED = 3


class Mode(IntEnum):
    """The association mode (RFC 5905 §3, Figure 10)."""

    RESERVED = 0
    SYMMETRIC_ACTIVE = 1
    SYMMETRIC_PASSIVE = 2
    CLIENT = 3
    SERVER = 4
    BROADCAST = 5
    CONTROL = 6  # mode 6, RFC 9327: never served here
    PRIVATE = 7  # mode 7, ntpd's private monitoring: never served here


def _code(text: str) -> int:
    return int.from_bytes(text.encode("ascii"), "big")


class KissCode(IntEnum):
    """Kiss-o'-Death codes, carried in the reference id of a stratum-0 packet (RFC 5905 §7.4)."""

    ACST = _code("ACST")
    AUTH = _code("AUTH")
    AUTO = _code("AUTO")
    BCST = _code("BCST")
    CRYP = _code("CRYP")
    DENY = _code("DENY")
    DROP = _code("DROP")
    RSTR = _code("RSTR")
    INIT = _code("INIT")
    MCST = _code("MCST")
    NKEY = _code("NKEY")
    NTSN = _code("NTSN")  # RFC 8915 §5.7: NTS NAK
    RATE = _code("RATE")
    RMOT = _code("RMOT")
    STEP = _code("STEP")

    @property
    def text(self) -> str:
        return self.to_bytes(4, "big").decode("ascii")


@dataclass(frozen=True, slots=True)
class ExtensionField:
    """One RFC 7822 extension field: a 16-bit type and a value padded to a multiple of 4 bytes."""

    field_type: int
    value: bytes

    def encode(self) -> bytes:
        length = 4 + len(self.value)
        if length % 4 or length < MIN_EXTENSION_LENGTH or length > 0xFFFF:
            raise LocalProtocolError(f"extension field length {length} is not valid (RFC 7822 §3)")
        if not 0 <= self.field_type <= 0xFFFF:
            raise LocalProtocolError(f"extension field type out of range: {self.field_type}")
        return struct.pack(">HH", self.field_type, length) + self.value


@dataclass(frozen=True, slots=True)
class Packet:
    """An NTP packet (RFC 5905 §7.3). Field names follow the RFC; values are raw wire integers."""

    leap: LeapIndicator = LeapIndicator.NO_WARNING
    version: int = 4
    mode: Mode = Mode.CLIENT
    stratum: int = 0
    poll: int = 0  # log2 seconds, signed
    precision: int = 0  # log2 seconds, signed
    root_delay: int = 0  # 16.16 short format
    root_dispersion: int = 0  # 16.16 short format
    reference_id: int = 0
    reference_timestamp: int = 0
    origin_timestamp: int = 0
    receive_timestamp: int = 0
    transmit_timestamp: int = 0
    extensions: tuple[ExtensionField, ...] = field(default=())
    mac: bytes = b""  # key id + digest, or a 4-byte crypto-NAK, or empty

    @classmethod
    def decode(cls, data: bytes) -> Packet:
        """Decode a datagram; raise :class:`MalformedPacket` with the reason when it is not NTP."""
        if len(data) < HEADER_LENGTH:
            raise MalformedPacket(f"{len(data)} bytes is shorter than the 48-byte header")
        (
            first,
            stratum,
            poll,
            precision,
            root_delay,
            root_dispersion,
            reference_id,
            reference_timestamp,
            origin_timestamp,
            receive_timestamp,
            transmit_timestamp,
        ) = HEADER.unpack_from(data)
        extensions, mac = _decode_trailer(memoryview(data)[HEADER_LENGTH:])
        return cls(
            leap=LeapIndicator(first >> 6),
            version=(first >> 3) & 7,
            mode=Mode(first & 7),
            stratum=stratum,
            poll=poll,
            precision=precision,
            root_delay=root_delay,
            root_dispersion=root_dispersion,
            reference_id=reference_id,
            reference_timestamp=reference_timestamp,
            origin_timestamp=origin_timestamp,
            receive_timestamp=receive_timestamp,
            transmit_timestamp=transmit_timestamp,
            extensions=extensions,
            mac=mac,
        )

    def encode(self) -> bytes:
        """The packet's bytes; raise :class:`LocalProtocolError` for a field out of range."""
        if not 0 <= self.version <= 7:
            raise LocalProtocolError(f"version out of range: {self.version}")
        if not 0 <= self.stratum <= 255:
            raise LocalProtocolError(f"stratum out of range: {self.stratum}")
        if len(self.mac) not in (0, CRYPTO_NAK_LENGTH, *MAC_LENGTHS):
            raise LocalProtocolError(f"MAC length {len(self.mac)} is not 4, 20 or 24")
        try:
            header = HEADER.pack(
                (self.leap << 6) | (self.version << 3) | self.mode,
                self.stratum,
                self.poll,
                self.precision,
                self.root_delay,
                self.root_dispersion,
                self.reference_id,
                self.reference_timestamp,
                self.origin_timestamp,
                self.receive_timestamp,
                self.transmit_timestamp,
            )
        except struct.error as error:
            raise LocalProtocolError(f"field out of range: {error}") from error
        if self.extensions and not self.mac and len(self.extensions[-1].value) + 4 < 28:
            # RFC 7822 §7: without a MAC the last field must be at least 28 bytes, so that it
            # cannot be mistaken for a legacy MAC.
            raise LocalProtocolError("without a MAC the last extension field needs 28+ bytes")
        return header + b"".join(ext.encode() for ext in self.extensions) + self.mac

    @property
    def kiss_code(self) -> KissCode | None:
        """The kiss code when this is a Kiss-o'-Death packet (stratum 0), else None (§7.4).

        An unknown code in a stratum-0 packet still counts as a kiss; it is reported as None
        here, and :attr:`is_kiss_of_death` stays true.
        """
        if self.stratum != 0:
            return None
        try:
            return KissCode(self.reference_id)
        except ValueError:
            return None

    @property
    def is_kiss_of_death(self) -> bool:
        return self.stratum == 0 and self.mode in (Mode.SERVER, Mode.SYMMETRIC_PASSIVE)


def _decode_trailer(rest: memoryview) -> tuple[tuple[ExtensionField, ...], bytes]:
    """Split what follows the header into extension fields and a MAC (RFC 7822 §7).

    A trailer of exactly 4, 20 or 24 bytes is a MAC; otherwise extension fields are read until
    nothing, or only a MAC, remains.
    """
    extensions: list[ExtensionField] = []
    while True:
        remaining = len(rest)
        if remaining == 0:
            return tuple(extensions), b""
        if remaining in (CRYPTO_NAK_LENGTH, *MAC_LENGTHS):
            return tuple(extensions), bytes(rest)
        if remaining < MIN_EXTENSION_LENGTH:
            raise MalformedPacket(f"{remaining} trailing bytes are neither a MAC nor an extension")
        field_type, length = struct.unpack_from(">HH", rest)
        if length < MIN_EXTENSION_LENGTH or length % 4:
            raise MalformedPacket(f"extension field length {length} is not valid (RFC 7822 §3)")
        if length > remaining:
            raise MalformedPacket(f"extension field length {length} overruns the datagram")
        extensions.append(ExtensionField(field_type, bytes(rest[4:length])))
        rest = rest[length:]


#: A received datagram: bytes, or a memoryview into an adapter's receive buffer (read only
#: during the call; a reply never aliases it).
Datagram = bytes | bytearray | memoryview

#: Extension fields after the header as (type, start, end) offsets, and where a legacy MAC
#: starts (the datagram's length when there is none): see :func:`scan_trailer`.
Trailer = tuple[list[tuple[int, int, int]], int]


def scan_trailer(data: Datagram) -> Trailer | None:
    """Walk what follows the header by the rules of :func:`_decode_trailer` (RFC 7822 §7), without
    building objects (servers call this on their hot path); None when it is neither extension
    fields nor a MAC."""
    out: list[tuple[int, int, int]] = []
    offset = HEADER_LENGTH
    total = len(data)
    while offset < total:
        remaining = total - offset
        if remaining in (CRYPTO_NAK_LENGTH, *MAC_LENGTHS):
            return out, offset
        if remaining < MIN_EXTENSION_LENGTH:
            return None
        field_type, length = struct.unpack_from(">HH", data, offset)
        if length < MIN_EXTENSION_LENGTH or length % 4 or length > remaining:
            return None
        out.append((field_type, offset, offset + length))
        offset += length
    return out, total


def format_reference_id(stratum: int, reference_id: int) -> str:
    """Display a reference id the way ntpq and chronyc do (RFC 5905 §7.3, "Reference ID").

    Stratum 0 and 1 carry four ASCII characters (kiss code or clock source); higher strata carry
    an IPv4 address, or the first four bytes of the MD5 of an IPv6 address, shown as a dotted quad.
    """
    raw = reference_id.to_bytes(4, "big")
    if stratum <= 1:
        text = raw.rstrip(b"\0").decode("ascii", errors="replace")
        if text.isprintable():
            return text
    return ".".join(str(byte) for byte in raw)


def reference_id_for_address(address: str) -> int:
    """The reference id a client puts for its server's address (RFC 5905 §7.3).

    IPv4: the address itself. IPv6: the first four octets of the MD5 hash of the address.
    """
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return int(ip)
    digest = hashlib.md5(ip.packed, usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big")
