"""CPace (draft-irtf-cfrg-cpace-21, CPACE-X25519-SHA512) against the draft's own vectors."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.link import cpace

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "cpace-x25519.json").read_text())
STRINGS = VECTORS["strings"]
PROTOCOL = VECTORS["protocol"]
LOW_ORDER = VECTORS["low_order"]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


@pytest.mark.parametrize("case", STRINGS["prepend_len"], ids=lambda c: f"{len(c['input']) // 2}-bytes")
def test_prepend_len(case: dict[str, str]) -> None:
    assert cpace.prepend_len(h(case["input"])) == h(case["output"])


@pytest.mark.parametrize(
    ("function", "case"),
    [
        (name, case)
        for name in ("lv_cat", "o_cat", "transcript_ir", "transcript_oc")
        for case in STRINGS[name]
    ],
)
def test_string_functions(function: str, case: dict[str, Any]) -> None:
    assert getattr(cpace, function)(*map(h, case["inputs"])) == h(case["output"])


def test_generator_matches_the_draft() -> None:
    prs, ci, sid = h(PROTOCOL["PRS"]), h(PROTOCOL["CI"]), h(PROTOCOL["sid"])
    assert cpace.generator_string(prs, ci, sid) == h(PROTOCOL["generator_string"])
    assert cpace.calculate_generator(prs, ci, sid) == h(PROTOCOL["g"])


def test_a_run_matches_the_draft() -> None:
    prs, ci, sid = h(PROTOCOL["PRS"]), h(PROTOCOL["CI"]), h(PROTOCOL["sid"])
    a = cpace.Party.start(prs, ci, sid, h(PROTOCOL["ADa"]), initiator=True, scalar=h(PROTOCOL["ya"]))
    b = cpace.Party.start(prs, ci, sid, h(PROTOCOL["ADb"]), initiator=False, scalar=h(PROTOCOL["yb"]))
    assert a.share.y == h(PROTOCOL["Ya"])
    assert b.share.y == h(PROTOCOL["Yb"])
    assert cpace.scalar_mult_vfy(h(PROTOCOL["ya"]), b.share.y) == h(PROTOCOL["K"])
    assert cpace.scalar_mult_vfy(h(PROTOCOL["yb"]), a.share.y) == h(PROTOCOL["K"])
    assert a.finish(b.share) == b.finish(a.share) == h(PROTOCOL["isk_ir"])
    symmetric = cpace.transcript_oc(a.share.y, a.share.ad, b.share.y, b.share.ad)
    assert cpace.isk(sid, h(PROTOCOL["K"]), symmetric) == h(PROTOCOL["isk_sy"])
    initiator_responder = cpace.transcript_ir(a.share.y, a.share.ad, b.share.y, b.share.ad)
    assert cpace.sid_output(initiator_responder) == h(PROTOCOL["sid_output_ir"])
    assert cpace.sid_output(symmetric) == h(PROTOCOL["sid_output_oc"])


@pytest.mark.parametrize("case", LOW_ORDER["cases"], ids=lambda c: c["u"][:8])
def test_low_order_points(case: dict[str, Any]) -> None:
    """scalar_mult_vfy gives the draft's q for each u; the points that give G.I make a party abort."""
    assert cpace.scalar_mult_vfy(h(LOW_ORDER["s"]), h(case["u"])) == h(case["q"])
    party = cpace.Party.start(b"code", b"", b"", b"", initiator=True, scalar=secrets.token_bytes(32))
    if case["aborts"]:
        with pytest.raises(cpace.CpaceError):
            party.finish(cpace.Share(h(case["u"]), b""))
    else:
        assert len(party.finish(cpace.Share(h(case["u"]), b""))) == 64


@given(st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=40))
def test_same_inputs_agree_and_another_password_does_not(prs: bytes, ci: bytes, sid: bytes) -> None:
    a = cpace.Party.start(prs, ci, sid, b"A", initiator=True, scalar=secrets.token_bytes(32))
    b = cpace.Party.start(prs, ci, sid, b"B", initiator=False, scalar=secrets.token_bytes(32))
    assert a.finish(b.share) == b.finish(a.share)
    wrong = cpace.Party.start(prs + b"x", ci, sid, b"B", initiator=False, scalar=secrets.token_bytes(32))
    assert a.finish(wrong.share) != wrong.finish(a.share)


def test_a_share_of_the_wrong_length_aborts() -> None:
    party = cpace.Party.start(b"code", b"", b"", b"", initiator=True, scalar=secrets.token_bytes(32))
    with pytest.raises(cpace.CpaceError):
        party.finish(cpace.Share(b"\x09" * 31, b""))
