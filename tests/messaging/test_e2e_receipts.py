"""Receipts as markers (messaging.md §5.3): one "read up to" per sender and conversation covers every earlier
message of that conversation, receipts of the first version (message ids) are still read, and any body is
parsed or refused with our error."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.e2e import receipts
from lockstep.e2e.envelope import Kind, MessageEnvelope, ReceiptStatus
from lockstep.e2e.errors import EnvelopeError
from lockstep.e2e.receipts import Handled, Position, ReceiptMark

positions = st.builds(Position, st.integers(0, 2**53), st.text("abcdefgh", min_size=16, max_size=16))


def test_one_mark_per_sender_and_conversation_at_the_newest_message() -> None:
    handled = [
        Handled("bob", "direct:a:b", Position(10, "m1" * 8)),
        Handled("bob", "direct:a:b", Position(30, "m3" * 8)),
        Handled("bob", "direct:a:b", Position(20, "m2" * 8)),
        Handled("bob", "group:g", Position(5, "g1" * 8)),
        Handled("carol", "group:g", Position(7, "g2" * 8)),
    ]
    marks = receipts.newest_per_conversation(handled)
    assert sorted(marks) == ["bob", "carol"]
    assert {m.conversation: m.position for m in marks["bob"]} == {
        "direct:a:b": Position(30, "m3" * 8),
        "group:g": Position(5, "g1" * 8),
    }
    body = receipts.receipt_body(ReceiptStatus.READ, marks["bob"])
    parsed = receipts.parse(body)
    assert parsed.status is ReceiptStatus.READ and set(parsed.marks) == set(marks["bob"])
    # The mark covers the earlier messages of its conversation, never a later one or another chat's.
    assert parsed.covers("m1" * 8, "direct:a:b", Position(10, "m1" * 8))
    assert not parsed.covers("m4" * 8, "direct:a:b", Position(31, "m4" * 8))
    assert not parsed.covers("x" * 16, "direct:a:c", Position(1, "x" * 16))


def test_a_receipt_of_the_first_version_is_still_read() -> None:
    body = {"status": "delivered", "message_ids": ["a" * 16, "b" * 16]}
    parsed = receipts.parse(body)
    assert parsed.status is ReceiptStatus.DELIVERED and parsed.message_ids == ("a" * 16, "b" * 16)
    assert parsed.covers("a" * 16, "direct:x:y", Position(0, "a" * 16))
    envelope = MessageEnvelope(Kind.RECEIPT, "r" * 16, "direct:x:y", "x", "d", 1, body)
    assert MessageEnvelope.decode(envelope.encode()).body == body


@pytest.mark.parametrize(
    "body",
    [
        {"status": "seen", "up_to": []},
        {"status": "read"},
        {"status": "read", "message_ids": [], "up_to": []},
        {"status": "read", "message_ids": [1]},
        {"status": "read", "up_to": {"conversation": "c"}},
        {"status": "read", "up_to": [{"conversation": "c", "message_id": "m", "ts": True}]},
        {"status": "read", "up_to": [{"conversation": "c", "ts": 1}]},
    ],
)
def test_malformed_receipts_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        receipts.parse(body)
    with pytest.raises(EnvelopeError):
        MessageEnvelope.decode(
            MessageEnvelope(Kind.RECEIPT, "r" * 16, "direct:x:y", "x", "d", 1, body).encode()
        )


@given(st.lists(st.tuples(st.sampled_from(["direct:a:b", "group:g"]), positions), max_size=20))
def test_marks_round_trip_and_cover_exactly_what_is_not_newer(entries: list[tuple[str, Position]]) -> None:
    marks = [ReceiptMark(c, p) for c, p in entries]
    parsed = receipts.parse(receipts.receipt_body(ReceiptStatus.DELIVERED, marks))
    assert list(parsed.marks) == marks
    for conversation, position in entries:
        assert parsed.covers("z" * 16, conversation, position)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "status": st.sampled_from(["read", "delivered", "seen"]) | json_values,
            "message_ids": json_values,
            "up_to": json_values
            | st.lists(
                st.fixed_dictionaries(
                    {}, optional={"conversation": json_values, "message_id": json_values, "ts": json_values}
                ),
                max_size=3,
            ),
        },
    )
)
def test_any_body_is_parsed_or_refused_with_our_error(body: dict[str, Any]) -> None:
    with contextlib.suppress(EnvelopeError):
        receipts.parse(body)
