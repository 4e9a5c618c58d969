"""QR text codec against the shared vectors, and fuzzed: only LinkCodeError ever escapes."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.link import errors
from lockstep.link.ed25519 import point_problem
from lockstep.link.qr import LinkCode, decode_text

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "link-qr.json").read_text())
OWN = VECTORS["own_origin"]


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: c["name"])
def test_valid_codes_decode_to_their_fields(case: dict[str, str]) -> None:
    code = decode_text(case["text"], own_origin=OWN)
    assert code.origin == case["origin"]
    assert code.ref.hex() == case["ref"]
    assert code.ephemeral_key.hex() == case["ephemeral_key"]
    assert code.device_key.hex() == case["device_key"]
    assert code.link_secret.hex() == case["link_secret"]


def test_encoding_is_the_canonical_vector_text() -> None:
    case = VECTORS["valid"][0]
    code = LinkCode(
        case["origin"],
        bytes.fromhex(case["ref"]),
        bytes.fromhex(case["ephemeral_key"]),
        bytes.fromhex(case["device_key"]),
        bytes.fromhex(case["link_secret"]),
    )
    assert code.to_text() == case["text"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_invalid_codes_raise_the_named_error(case: dict[str, str]) -> None:
    with pytest.raises(getattr(errors, case["error"])):
        decode_text(case["text"], own_origin=OWN)


def test_foreign_origin_message_says_it_is_not_from_your_server() -> None:
    text = VECTORS["valid"][0]["text"].replace("chat.example", "chat-example.help")
    with pytest.raises(errors.ForeignOrigin, match="This code is not from your server"):
        decode_text(text, own_origin=OWN)


@given(st.text(max_size=600))
def test_random_text_raises_only_link_code_errors(text: str) -> None:
    with contextlib.suppress(errors.LinkCodeError):
        decode_text(text, own_origin=OWN)


@given(st.binary(max_size=200))
def test_random_payloads_after_a_valid_prefix_raise_only_link_code_errors(payload: bytes) -> None:
    import base64

    fragment = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    try:
        code = decode_text(f"{OWN}/link#{fragment}", own_origin=OWN)
    except errors.LinkCodeError:
        return
    assert code.payload() == payload  # only an exact, well-formed payload decodes


@given(st.binary(min_size=128, max_size=128))
def test_round_trip(keys: bytes) -> None:
    code = LinkCode(OWN, keys[:32], keys[32:64], keys[64:96], keys[96:])
    if point_problem(code.device_key) is not None:  # a small-order or non-canonical device key
        with pytest.raises(errors.MalformedCode):
            decode_text(code.to_text(), own_origin=OWN)
        return
    assert decode_text(code.to_text(), own_origin=OWN) == code
