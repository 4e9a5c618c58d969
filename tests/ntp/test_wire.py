"""The packet codec (RFC 5905 §7.3, RFC 7822)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.ntp.errors import LocalProtocolError, MalformedPacket
from lockstep.ntp.wire import (
    ExtensionField,
    KissCode,
    LeapIndicator,
    Mode,
    Packet,
    format_reference_id,
    reference_id_for_address,
)


def test_client_request_layout() -> None:
    data = Packet(version=4, mode=Mode.CLIENT, transmit_timestamp=0x0102030405060708).encode()
    assert len(data) == 48
    assert data[0] == 0x23  # LI 0, VN 4, mode 3
    assert data[40:48] == bytes(range(1, 9))


def test_signed_poll_and_precision() -> None:
    packet = Packet.decode(Packet(poll=-3, precision=-20).encode())
    assert (packet.poll, packet.precision) == (-3, -20)


def test_kiss_code_is_read_from_reference_id() -> None:
    packet = Packet(mode=Mode.SERVER, stratum=0, reference_id=KissCode.RATE)
    assert Packet.decode(packet.encode()).kiss_code is KissCode.RATE
    assert packet.is_kiss_of_death
    assert KissCode.DENY.text == "DENY"


def test_extension_fields_and_mac_round_trip() -> None:
    packet = Packet(
        extensions=(ExtensionField(0x0104, bytes(28)), ExtensionField(0x0204, b"x" * 12)),
        mac=bytes(range(20)),
    )
    data = packet.encode()
    assert len(data) == 48 + 32 + 16 + 20
    assert Packet.decode(data) == packet


@pytest.mark.parametrize(
    ("trailer", "reason"),
    [
        (bytes(8), "neither a MAC nor an extension"),
        (b"\x01\x04\x00\x0e" + bytes(28), "not valid"),  # length 14: not a multiple of 4
        (b"\x01\x04\x00\x40" + bytes(28), "overruns"),
    ],
)
def test_bad_trailers_are_rejected_with_a_reason(trailer: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        Packet.decode(Packet().encode() + trailer)


def test_short_datagram_is_rejected() -> None:
    with pytest.raises(MalformedPacket, match="shorter"):
        Packet.decode(bytes(47))


def test_encoding_an_out_of_range_field_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        Packet(stratum=300).encode()
    with pytest.raises(LocalProtocolError):
        Packet(mac=b"abc").encode()
    with pytest.raises(LocalProtocolError):
        ExtensionField(1, b"ab").encode()
    with pytest.raises(LocalProtocolError, match="28"):
        Packet(extensions=(ExtensionField(1, bytes(16)),)).encode()  # could pass for a MAC


def test_reference_id_display() -> None:
    assert format_reference_id(1, int.from_bytes(b"GPS\0", "big")) == "GPS"
    assert format_reference_id(2, reference_id_for_address("127.0.0.1")) == "127.0.0.1"
    # IPv6: first four bytes of MD5 of the address (RFC 5905 §7.3)
    assert reference_id_for_address("::1") == 0xCF404DC8  # md5(16 bytes of ::1)[:4]


packets = st.builds(
    Packet,
    leap=st.sampled_from(LeapIndicator),
    version=st.integers(0, 7),
    mode=st.sampled_from(Mode),
    stratum=st.integers(0, 255),
    poll=st.integers(-128, 127),
    precision=st.integers(-128, 127),
    root_delay=st.integers(0, 2**32 - 1),
    root_dispersion=st.integers(0, 2**32 - 1),
    reference_id=st.integers(0, 2**32 - 1),
    reference_timestamp=st.integers(0, 2**64 - 1),
    origin_timestamp=st.integers(0, 2**64 - 1),
    receive_timestamp=st.integers(0, 2**64 - 1),
    transmit_timestamp=st.integers(0, 2**64 - 1),
    extensions=st.lists(
        st.builds(
            ExtensionField,
            st.integers(0, 0xFFFF),
            st.integers(6, 20).map(lambda n: bytes(4 * n)),
        ),
        max_size=3,
    ).map(tuple),
    mac=st.sampled_from([b"", bytes(range(20)), bytes(range(24))]),
)


@given(packets)
def test_encode_decode_round_trip(packet: Packet) -> None:
    assert Packet.decode(packet.encode()) == packet


@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_decode_or_raise_only_our_error(data: bytes) -> None:
    try:
        packet = Packet.decode(data)
    except MalformedPacket:
        return
    assert packet.encode() == data  # anything accepted re-encodes byte for byte
