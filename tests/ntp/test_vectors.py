"""Packets captured from chrony 4.3, NTPsec 1.2.2 (ntpd, ntpdig) and ntplib (capture_vectors.py).

Every case names its source. Each must decode, re-encode byte for byte, and — for requests —
get a well-formed reply from our server that is no larger than the request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockstep.ntp.association import Association
from lockstep.ntp.events import SampleAccepted
from lockstep.ntp.server import NtpServer, ServerState
from lockstep.ntp.timestamps import from_timestamp
from lockstep.ntp.wire import LeapIndicator, Mode, Packet

VECTORS = json.loads((Path(__file__).parent / "vectors" / "packets.json").read_text())
BY_NAME = {case["name"]: case for case in VECTORS}


def test_every_vector_names_its_source() -> None:
    assert {
        "chronyd-server-reply",
        "chronyd-client-request",
        "ntpdig-request",
        "ntpsec-ntpd-server-reply",
        "ntplib-request",
    } <= set(BY_NAME)
    assert all(case["source"] for case in VECTORS)


@pytest.mark.parametrize("case", VECTORS, ids=lambda case: case["name"])
def test_decode_and_reencode_byte_for_byte(case: dict[str, str]) -> None:
    data = bytes.fromhex(case["hex"])
    assert Packet.decode(data).encode() == data


def test_chronyd_reply_fields() -> None:
    case = BY_NAME["chronyd-server-reply"]
    reply = Packet.decode(bytes.fromhex(case["hex"]))
    request = Packet.decode(bytes.fromhex(case["request"]))
    assert (reply.mode, reply.version, reply.stratum) == (Mode.SERVER, 4, 8)
    assert reply.leap is LeapIndicator.NO_WARNING
    assert reply.reference_id == 0x7F7F0101
    assert reply.origin_timestamp == request.transmit_timestamp  # RFC 9109 random transmit echoed


def test_ntpsec_ntpd_reply_fields() -> None:
    case = BY_NAME["ntpsec-ntpd-server-reply"]
    reply = Packet.decode(bytes.fromhex(case["hex"]))
    request = Packet.decode(bytes.fromhex(case["request"]))
    assert (reply.mode, reply.version, reply.stratum) == (Mode.SERVER, 4, 5)  # orphan stratum
    assert reply.leap is LeapIndicator.NO_WARNING
    assert reply.origin_timestamp == request.transmit_timestamp
    assert reply.receive_timestamp <= reply.transmit_timestamp


@pytest.mark.parametrize("name", ["chronyd-server-reply", "ntpsec-ntpd-server-reply"])
def test_our_association_accepts_the_captured_reply(name: str) -> None:
    case = BY_NAME[name]
    reply = Packet.decode(bytes.fromhex(case["hex"]))
    request = Packet.decode(bytes.fromhex(case["request"]))

    class Replay:
        def getrandbits(self, k: int) -> int:
            return request.transmit_timestamp

    t4 = from_timestamp(reply.transmit_timestamp, 1 << 63)
    association = Association(name, now=t4, iburst=False, rng=Replay())
    assert association.poll_due(t4) == bytes.fromhex(case["request"])  # same bytes we sent then
    event = association.receive(bytes.fromhex(case["hex"]), t4)
    assert isinstance(event, SampleAccepted)
    assert abs(event.offset) < 1.0  # consistent timestamps (local clock replayed as T1 = T4)


@pytest.mark.parametrize("name", ["chronyd-client-request", "ntpdig-request", "ntplib-request"])
def test_our_server_answers_each_captured_request(name: str) -> None:
    request_bytes = bytes.fromhex(BY_NAME[name]["hex"])
    request = Packet.decode(request_bytes)
    now = from_timestamp(request.transmit_timestamp, 1 << 63)
    server = NtpServer(ServerState.local(stratum=5, now=now))
    reply_bytes = server.respond(request_bytes, "127.0.0.1", now)
    assert isinstance(reply_bytes, bytes)
    assert len(reply_bytes) <= len(request_bytes)
    reply = Packet.decode(reply_bytes)
    assert reply.mode is Mode.SERVER
    assert reply.version == request.version
    assert reply.origin_timestamp == request.transmit_timestamp
    assert reply.stratum == 5
