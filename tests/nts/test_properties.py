"""Hypothesis: the NTS-KE record codec and the NTS extension-field parsers (RFC 8915 §4, §5)."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.ntp.errors import MalformedPacket, RemoteProtocolError
from lockstep.ntp.nts import fields
from lockstep.ntp.nts.client import NtsClientSession, NtsReplyRejected
from lockstep.ntp.nts.cookies import CookieKeys
from lockstep.ntp.nts.ke import KeClient, KeFailed, KeRefused, KeResult, KeServerSession, KeState
from lockstep.ntp.nts.records import MalformedRecord, Record, RecordReader, decode_records, encode_records
from lockstep.ntp.nts.server import NtsServer
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import ONE_SECOND
from lockstep.ntp.wire import ExtensionField, Packet

NOW = 3_900_000_000 * ONE_SECOND
KEYS = CookieKeys(b"k" * 32)

records = st.builds(
    Record,
    record_type=st.integers(0, 0x7FFF),
    body=st.binary(max_size=64),
    critical=st.booleans(),
)


@given(st.lists(records, max_size=12))
def test_records_round_trip(items: list[Record]) -> None:
    assert decode_records(encode_records(items)) == items


@given(st.lists(records, max_size=8), st.lists(st.integers(1, 40), max_size=10))
def test_reader_is_independent_of_chunking(items: list[Record], cuts: list[int]) -> None:
    items = [r for r in items if r.record_type != 0] + [Record.end_of_message()]
    data = encode_records(items)
    reader = RecordReader()
    out: list[Record] = []
    offset = 0
    for cut in [*cuts, len(data)]:
        out.extend(reader.feed(data[offset : offset + cut]))
        offset += cut
        if offset >= len(data):
            break
    out.extend(reader.feed(data[offset:]) if offset < len(data) else [])
    assert reader.complete and out == items


@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_malformed_record(data: bytes) -> None:
    with contextlib.suppress(MalformedRecord):
        decode_records(data)
    with contextlib.suppress(MalformedRecord):
        RecordReader(max_length=200).feed(data)


@given(st.binary(max_size=300))
def test_ke_server_answers_any_request_without_raising(data: bytes) -> None:
    session = KeServerSession(KEYS)
    outcome = session.receive_data(data)
    if isinstance(outcome, KeRefused):
        decode_records(outcome.response)  # a well-formed Error / negotiation response


def rules_broken(items: list[Record]) -> set[str]:
    """Every reason RFC 8915 §4 gives a client to refuse a response made of ``items`` (then End
    of Message), each as a fragment of the reason our client states."""
    broken = set()
    for record in items:
        if record.record_type == 0:  # an End of Message before the last record
            broken.add("End of Message record with a body" if record.body else "data after End of Message")
        elif record.record_type in (1, 2, 3, 4, 7) and len(record.body) % 2:
            broken.add("odd length")
        elif record.record_type == 2:
            broken.add("sent error")
        elif record.record_type == 5 and not record.body:
            broken.add("empty cookie")
        elif record.record_type == 6 and not record.body:
            broken.add("empty NTPv4 Server Negotiation")
        elif record.record_type == 6 and not record.body.isascii():
            broken.add("not ASCII")
        elif record.record_type == 7 and len(record.body) != 2:
            broken.add("must hold one port")
        elif record.record_type > 7 and record.critical:
            broken.add("unrecognised critical record")
    for kind, name, wanted in ((1, "Next Protocol", b"\x00\x00"), (4, "AEAD Algorithm", b"\x00\x0f")):
        bodies = [record.body for record in items if record.record_type == kind]
        if len(bodies) > 1:
            broken.add(f"two {name} records")
        elif not bodies:
            broken.add(f"lacks a{'n' if name.startswith('A') else ''} {name} record")
        elif bodies[0] != wanted:
            broken.add("none of our" if not bodies[0] else "chose")
    if not any(record.record_type == 5 for record in items):
        broken.add("carries no cookies")
    return broken


valid_responses = st.tuples(
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8),
    st.none() | st.text("abcdefghij.", min_size=1, max_size=20),
    st.none() | st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 0xFFFF), max_size=2),
).map(
    lambda parts: [
        Record.next_protocol(0),
        Record.aead_algorithm(15),
        *(Record.new_cookie(cookie) for cookie in parts[0]),
        *([] if parts[1] is None else [Record.server(parts[1])]),
        *([] if parts[2] is None else [Record.port(parts[2])]),
        *(Record.warning(code) for code in parts[3]),
    ]
)
known_records = st.builds(
    Record, record_type=st.integers(0, 9), body=st.binary(max_size=6), critical=st.booleans()
)


@st.composite
def ke_responses(draw: st.DrawFn) -> list[Record]:
    """A valid NTS-KE response, often broken: records dropped, repeated or added."""
    items = list(draw(valid_responses))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "repeat", "add"]))
        position = draw(st.integers(0, len(items)))
        if action == "drop" and items:
            del items[min(position, len(items) - 1)]
        elif action == "repeat" and items:
            items.insert(position, items[min(position, len(items) - 1)])
        else:
            items.insert(position, draw(known_records))
    return items


@settings(max_examples=500)
@given(ke_responses() | st.lists(records, max_size=8))
def test_ke_client_accepts_exactly_what_rfc_8915_allows(items: list[Record]) -> None:
    """The client takes a response that breaks no rule of §4, with exactly its cookies, server,
    port and warnings, and refuses any other for one of the rules it breaks."""
    client = KeClient()
    broken = rules_broken(items)
    try:
        result = client.receive_data(encode_records([*items, Record.end_of_message()]))
    except KeFailed as error:
        assert broken, f"refused a valid response: {error}"
        assert any(rule in str(error) for rule in broken), (str(error), broken)
        assert client.state is KeState.FAILED
        return
    assert not broken, f"accepted a response that breaks {broken}"
    servers = [record.body.decode() for record in items if record.record_type == 6]
    ports = [record.u16_list()[0] for record in items if record.record_type == 7]
    assert result == KeResult(
        aead=15,
        cookies=tuple(record.body for record in items if record.record_type == 5),
        server=servers[-1] if servers else None,
        port=ports[-1] if ports else None,
        warnings=tuple(code for record in items if record.record_type == 3 for code in record.u16_list()),
    )
    assert client.state is KeState.DONE


def _field(draw_type: int, body: bytes) -> bytes:
    body = body + bytes(-len(body) % 4)
    body = body + bytes(max(0, 12 - len(body)))
    return struct.pack(">HH", draw_type, 4 + len(body)) + body


field_types = st.sampled_from([0x0104, 0x0204, 0x0304, 0x0404, 0x0001, 0x2005])
raw_fields = st.lists(st.tuples(field_types, st.binary(max_size=120)), max_size=6)


@settings(max_examples=300)
@given(raw_fields, st.binary(max_size=8))
def test_nts_server_never_raises_nor_amplifies(items: list[tuple[int, bytes]], tail: bytes) -> None:
    request = Packet(transmit_timestamp=1).encode() + b"".join(_field(t, b) for t, b in items) + tail
    reply = NtpServer(ServerState.local(3, NOW), nts=NtsServer(KEYS)).respond(request, "127.0.0.1", NOW)
    if isinstance(reply, bytes):
        assert len(reply) <= len(request)


@settings(max_examples=300)
@given(raw_fields)
def test_nts_client_check_raises_only_rejection(items: list[tuple[int, bytes]]) -> None:
    session = NtsClientSession(b"c" * 32, b"s" * 32, [b"x" * 104])
    session.protect(Packet().encode())
    data = Packet(transmit_timestamp=2).encode() + b"".join(_field(t, b) for t, b in items)
    try:
        packet = Packet.decode(data)
    except MalformedPacket:
        return
    try:
        session.check(data, packet)
    except NtsReplyRejected as error:
        assert str(error)


@given(st.binary(max_size=200))
def test_authenticator_and_encrypted_field_parsers(data: bytes) -> None:
    with contextlib.suppress(fields.AuthenticationFailed):
        fields.open_sealed(b"k" * 32, data, b"ad")
    with contextlib.suppress(RemoteProtocolError):
        fields.decode_fields(data)


@given(st.binary(max_size=64), st.binary(min_size=1, max_size=40), st.binary(max_size=100))
def test_seal_open_round_trip(associated: bytes, nonce: bytes, plaintext: bytes) -> None:
    sealed = fields.seal(b"k" * 32, nonce, associated, plaintext)
    assert len(sealed.encode()) % 4 == 0
    assert fields.open_sealed(b"k" * 32, sealed.value, associated) == plaintext


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(min_size=12, max_size=40)), max_size=5))
def test_encrypted_fields_round_trip(items: list[tuple[int, bytes]]) -> None:
    extensions = [ExtensionField(t, b + bytes(-len(b) % 4)) for t, b in items]
    assert list(fields.decode_fields(fields.encode_fields(extensions))) == extensions
