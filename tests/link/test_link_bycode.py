"""Typed linking codes (linking.md §10): the parser, and the CPace exchange between the two sides."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.link import bycode, cpace
from lockstep.link.errors import LinkCodeError
from lockstep.link.qr import LinkCode

ORIGIN = "https://chat.example:8443"
codes = st.text(alphabet=bycode.ALPHABET, min_size=bycode.CODE_LENGTH, max_size=bycode.CODE_LENGTH)


@given(st.text(max_size=80))
def test_parsing_any_text_gives_a_canonical_code_or_a_typed_error(text: str) -> None:
    try:
        code = bycode.parse_code(text)
    except bycode.TypedCodeInvalid as error:
        assert isinstance(error, LinkCodeError) and str(error)
    else:
        assert len(code) == bycode.CODE_LENGTH and set(code) <= set(bycode.ALPHABET)


@given(codes, st.sampled_from([str.lower, str.upper, lambda c: " ".join(c)]))
def test_a_shown_code_reads_back_however_it_is_typed(code: str, typing: object) -> None:
    assert callable(typing)
    assert bycode.parse_code(typing(bycode.format_code(code))) == code


def test_letters_that_look_like_digits_read_as_the_digits() -> None:
    assert bycode.parse_code("oil0-1lio") == "01101110"
    with pytest.raises(bycode.TypedCodeInvalid, match="'U'"):
        bycode.parse_code("K7PM-2QXU")
    with pytest.raises(bycode.TypedCodeInvalid, match="9 characters"):
        bycode.parse_code("K7PM-2QXDA")


RFC8032_TEST2_PUBLIC = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
SHOWN = LinkCode(
    ORIGIN, secrets.token_bytes(32), secrets.token_bytes(32), RFC8032_TEST2_PUBLIC, secrets.token_bytes(32)
)
"""What the companion would show as a QR code: under a typed code it travels sealed instead."""


def run(typed_on_primary: str, shown: str, origin: str = ORIGIN) -> LinkCode:
    primary = bycode.PrimaryRun.start(
        typed_on_primary, ORIGIN, scalar=secrets.token_bytes(32), sid=secrets.token_bytes(16)
    )
    answer = bycode.answer(
        shown, origin, primary.offer.sid, primary.offer.share, SHOWN, scalar=secrets.token_bytes(32)
    )
    return primary.open(answer)


@given(codes)
def test_the_same_code_carries_the_companions_payload(code: str) -> None:
    assert run(code, code) == SHOWN


@given(codes, st.integers(bycode.CODE_ID_LENGTH, bycode.CODE_LENGTH - 1), st.sampled_from(bycode.ALPHABET))
def test_one_wrong_character_opens_nothing(code: str, position: int, other: str) -> None:
    wrong = code[:position] + other + code[position + 1 :]
    if wrong == code:
        return
    with pytest.raises(bycode.WrongCode):
        run(wrong, code)


def test_a_companion_of_another_server_opens_nothing() -> None:
    with pytest.raises(bycode.WrongCode):
        run("K7PM2QXD", "K7PM2QXD", origin="https://chat.example.net")


def test_a_low_order_offer_is_not_answered() -> None:
    with pytest.raises(bycode.WrongCode):
        bycode.answer("K7PM2QXD", ORIGIN, bytes(16), bytes(32), SHOWN, scalar=secrets.token_bytes(32))
    assert cpace.scalar_mult_vfy(secrets.token_bytes(32), bytes(32)) == cpace.NEUTRAL
