"""Call signals (docs/protocol/messaging.md §14.2): what parses, what is refused and why."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calls_samples import CHROMIUM_CANDIDATES, sdp
from lockstep.calls.errors import SignalError
from lockstep.calls.signals import (
    Answer,
    Busy,
    Candidate,
    Candidates,
    Decline,
    Hangup,
    HangupReason,
    Media,
    Offer,
    check_candidate_line,
    check_sdp,
    parse,
    to_body,
)

CALL_ID = "c" * 22

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)

signals = st.one_of(
    st.builds(Offer, st.just(CALL_ID), st.sampled_from(Media), st.sampled_from([sdp(), sdp("video")])),
    st.builds(Answer, st.just(CALL_ID), st.just(sdp())),
    st.builds(
        Candidates,
        st.just(CALL_ID),
        st.lists(
            st.builds(
                Candidate,
                st.sampled_from([*CHROMIUM_CANDIDATES, ""]),
                st.one_of(st.none(), st.just("0")),
                st.just(0),
            ),
            min_size=1,
            max_size=5,
        ).map(tuple),
    ),
    st.builds(Hangup, st.just(CALL_ID), st.sampled_from(HangupReason)),
    st.builds(Busy, st.just(CALL_ID)),
    st.builds(Decline, st.just(CALL_ID)),
)


@given(signals)
def test_every_signal_survives_its_wire_form(signal: object) -> None:
    assert parse(to_body(signal)) == signal  # type: ignore[arg-type]


@given(json_values)
def test_random_json_is_refused_with_a_signal_error_only(value: object) -> None:
    with contextlib.suppress(SignalError):
        parse(value)


@given(
    st.fixed_dictionaries({"call_id": st.just(CALL_ID), "type": st.sampled_from(["offer", "answer"])}),
    st.text(),
)
def test_random_descriptions_are_refused_with_a_signal_error_only(body: dict[str, object], text: str) -> None:
    with contextlib.suppress(SignalError):
        parse(body | {"media": "audio", "sdp": text})


@given(st.text(max_size=200))
def test_random_candidate_lines_raise_only_signal_error(text: str) -> None:
    with contextlib.suppress(SignalError):
        check_candidate_line("candidate:" + text)


@pytest.mark.parametrize("line", CHROMIUM_CANDIDATES)
def test_candidates_as_browsers_and_turn_servers_write_them(line: str) -> None:
    assert check_candidate_line(line) == line


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("candidate:1 1 udp 2130706431 127.0.0.1 40000", "needs foundation"),
        ("candidate:1 0 udp 2130706431 127.0.0.1 40000 typ host", "component id"),
        ("candidate:1 1 udp 99999999999 127.0.0.1 40000 typ host", "priority"),
        ("candidate:1 1 udp 1 127.0.0.1 70000 typ host", "port"),
        ("candidate:1 1 udp 1 127.0.0.1 4000 typ bogus", "type is host"),
        ("candidate:1 1 udp 1 bad..address 4000 typ host", "address"),
        ("candidate:1 1 udp 1 127.0.0.1 4000 typ host raddr", "name-value pairs"),
        ("candidate:1 1 udp 1 127.0.0.1 4000 typ relay raddr 127.0.0.1 rport x", "port"),
        ("1 1 udp 1 127.0.0.1 4000 typ host", "starts with"),
    ],
)
def test_malformed_candidates_are_refused_with_the_reason(line: str, reason: str) -> None:
    with pytest.raises(SignalError, match=reason):
        check_candidate_line(line)


@pytest.mark.parametrize(
    ("description", "reason"),
    [
        (sdp().replace("v=0", "v=1"), "starts with v=0"),
        (sdp().replace("a=fingerprint:sha-256", "a=finger:sha-256"), "DTLS fingerprint"),
        (sdp().replace("a=ice-pwd:", "a=ice-pw:"), "ICE credentials"),
        (sdp().replace("m=audio", "m=application"), "no audio or video"),
        (sdp().replace("s=-", "S=-"), "line 3"),
        (sdp() + "x" * 20_000, "longer than"),
        ("", "starts with v=0"),
    ],
)
def test_descriptions_that_cannot_be_a_webrtc_call_are_refused(description: str, reason: str) -> None:
    with pytest.raises(SignalError, match=reason):
        check_sdp(description)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"call_id": "short", "type": "busy"}, "call id"),
        ({"call_id": CALL_ID, "type": "ring"}, "unknown call signal type"),
        ({"call_id": CALL_ID, "type": "offer", "media": "fax", "sdp": sdp()}, "audio or video"),
        ({"call_id": CALL_ID, "type": "candidates", "candidates": []}, "1 to 32"),
        ({"call_id": CALL_ID, "type": "candidates", "candidates": [{"candidate": ""}]}, "mid"),
        ({"call_id": CALL_ID, "type": "hangup", "reason": "bored"}, "reason"),
        ([], "an object"),
    ],
)
def test_malformed_signals_are_refused_with_the_reason(body: object, reason: str) -> None:
    with pytest.raises(SignalError, match=reason):
        parse(body)
