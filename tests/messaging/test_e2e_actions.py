"""Message actions (messaging.md §15): the shared vectors, and properties every device relies on to show
the same thing — the outcome of a set of actions does not depend on the order they arrived in."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.e2e import actions
from lockstep.e2e.actions import (
    CLOCK_SLACK_MS,
    DELETE_LIMIT_MS,
    EDIT_LIMIT_MS,
    Action,
    Delete,
    Edit,
    Reaction,
    Target,
    action_from_record,
    outcome,
    target_from_record,
)
from lockstep.e2e.envelope import Kind, MessageEnvelope
from lockstep.e2e.errors import ActionError, EnvelopeError

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "message-actions.json").read_text())


def test_the_vectors_limits_are_the_modules() -> None:
    assert VECTORS["limits"] == {
        "edit_ms": EDIT_LIMIT_MS,
        "delete_ms": DELETE_LIMIT_MS,
        "clock_slack_ms": CLOCK_SLACK_MS,
        "max_emoji_code_points": actions.MAX_EMOJI_CODE_POINTS,
    }


def _envelope(kind: str, body: dict[str, Any]) -> bytes:
    return MessageEnvelope(
        Kind(kind), "message-under-test-01", "direct:a:b", "a", "device-a", 1, body
    ).encode()


@pytest.mark.parametrize("case", VECTORS["bodies"], ids=lambda c: f"{c['kind']}-{json.dumps(c['body'])}")
def test_bodies_are_accepted_or_refused_as_the_vectors_say(case: dict[str, Any]) -> None:
    data = _envelope(case["kind"], case["body"])
    if case["valid"]:
        assert MessageEnvelope.decode(data).body == case["body"]
    else:
        with pytest.raises(ActionError, match=case["error"]):
            MessageEnvelope.decode(data)


def _outcomes(records: list[dict[str, Any]]) -> dict[str, Any]:
    kept = [action_from_record(r) for r in records if r["kind"] in ("reaction", "edit", "delete")]
    targets = [t for r in records if (t := target_from_record(r)) is not None]
    return {t.message_id: outcome(t, kept).to_json() for t in targets}


@pytest.mark.parametrize("case", VECTORS["timelines"], ids=lambda c: str(c["name"]))
def test_every_arrival_order_shows_what_the_vectors_say(case: dict[str, Any]) -> None:
    records = case["records"]
    orders = [list(order) for order in itertools.permutations(records)] if len(records) <= 5 else []
    orders += [random.Random(seed).sample(records, len(records)) for seed in range(20)]
    for order in orders:
        assert _outcomes(order) == case["expected"], case["source"]


ACCOUNTS = ["account-alice-0000001", "account-bob-00000002"]
TARGET = Target("message-original-0001", "direct:x:y", ACCOUNTS[0], 1_000_000)


@st.composite
def an_action(draw: st.DrawFn) -> Action:
    change: Reaction | Edit | Delete = draw(
        st.one_of(
            st.builds(Reaction, st.just(TARGET.message_id), st.sampled_from(["", "👍", "❤️", "😂"])),
            st.builds(Edit, st.just(TARGET.message_id), st.text(min_size=1, max_size=5)),
            st.builds(Delete, st.just(TARGET.message_id)),
        )
    )
    ts = TARGET.ts + draw(st.integers(-5_000, DELETE_LIMIT_MS + 5_000))
    server_time = draw(st.none() | st.integers(ts - 1_000, ts + 2 * CLOCK_SLACK_MS))
    message_id = draw(st.text("abcdef0123", min_size=16, max_size=16))
    return Action(message_id, TARGET.conversation, draw(st.sampled_from(ACCOUNTS)), ts, server_time, change)


# Message ids are unique: a device takes in one message per id and drops later copies as seen, so two
# different actions never share one (a generator without this made ties no order can break).
@given(st.lists(an_action(), max_size=12, unique_by=lambda action: action.message_id), st.randoms())
def test_the_outcome_is_a_function_of_the_set_of_actions(
    taken: list[Action], shuffler: random.Random
) -> None:
    shuffled = shuffler.sample(taken, len(taken))
    assert outcome(TARGET, taken) == outcome(TARGET, shuffled) == outcome(TARGET, taken + shuffled)


@given(st.lists(an_action(), max_size=12))
def test_a_deleted_message_keeps_nothing_to_show(taken: list[Action]) -> None:
    shown = outcome(TARGET, taken)
    if shown.deleted:
        assert shown.text is None and shown.reactions == () and not shown.edited
    deletes = [a for a in taken if isinstance(a.change, Delete) and a.sender_account == TARGET.sender_account]
    in_time = [a for a in deletes if not actions.too_late(a, TARGET, DELETE_LIMIT_MS)]
    assert shown.deleted == bool(in_time)


@given(st.lists(an_action(), max_size=12))
def test_edits_count_only_from_the_sender_within_the_limit(taken: list[Action]) -> None:
    shown = outcome(TARGET, taken)
    if shown.text is not None:
        assert any(
            isinstance(a.change, Edit)
            and a.change.text == shown.text
            and a.sender_account == TARGET.sender_account
            and a.ts - TARGET.ts <= EDIT_LIMIT_MS
            for a in taken
        )


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.sampled_from(["text", "media", "reaction", "edit", "delete", "typing", "presence"]),
    st.dictionaries(st.sampled_from(["target", "emoji", "text", "state", "reply_to", "media"]), JSONISH),
)
def test_any_body_is_parsed_or_refused_with_an_envelope_error(kind: str, body: dict[str, Any]) -> None:
    with contextlib.suppress(EnvelopeError):
        MessageEnvelope.decode(_envelope(kind, body))


@given(
    st.dictionaries(
        st.sampled_from(["id", "kind", "conversation", "sender", "ts", "server_time", "body"]), JSONISH
    )
)
def test_any_record_is_an_action_or_an_action_error(record: dict[str, Any]) -> None:
    with contextlib.suppress(ActionError):
        action_from_record(record)
    target_from_record(record)  # never raises: anything else is simply not a target
