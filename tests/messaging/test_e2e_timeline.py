"""A device's store read as a person sees it (messaging.md §15.1, §15.3, §15.7): quotes, search, and
what a delete leaves behind."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lockstep.e2e.timeline import DELETED_TEXT, Timeline, forget_deleted

T0 = 1_764_000_000_000
ALICE, BOB = "account-alice-0000001", "account-bob-00000002"
CHAT, OTHER = f"direct:{ALICE}:{BOB}", "group:group-elsewhere-0001"


def record(
    message_id: str, kind: str, sender: str, dt: int, body: dict[str, Any], chat: str = CHAT
) -> dict[str, Any]:
    return {
        "id": message_id,
        "kind": kind,
        "conversation": chat,
        "sender": {"account_id": sender, "device_id": "device-000000000001"},
        "ts": T0 + dt,
        "server_time": T0 + dt + 20,
        "body": body,
    }


MESSAGES = [
    record("message-dinner-00001", "text", ALICE, 0, {"text": "Dinner at 8?"}),
    record(
        "message-photo-000001", "media", BOB, 1_000, {"media": {"name": "menu.jpg"}, "caption": "this place"}
    ),
    record("message-secret-00001", "text", ALICE, 2_000, {"text": "the door code is 4711"}),
    record("message-elsewhere-01", "text", BOB, 3_000, {"text": "dinner elsewhere"}, OTHER),
]
ACTIONS = [
    record(
        "edit-of-dinner-00001",
        "edit",
        ALICE,
        60_000,
        {"target": "message-dinner-00001", "text": "Dinner at 9?"},
    ),
    record("delete-secret-000001", "delete", ALICE, 61_000, {"target": "message-secret-00001"}),
    record("reaction-secret-0001", "reaction", BOB, 3_000, {"target": "message-secret-00001", "emoji": "👍"}),
    record(
        "edit-of-secret-00001", "edit", ALICE, 2_500, {"target": "message-secret-00001", "text": "code 4711!"}
    ),
]


def test_search_finds_what_is_shown_newest_first_across_chats() -> None:
    timeline = Timeline(MESSAGES, ACTIONS)
    assert [s.message_id for s in timeline.search("DINNER")] == [
        "message-elsewhere-01",
        "message-dinner-00001",
    ]
    assert timeline.search("at 8") == []  # edited away
    assert [s.text for s in timeline.search("at 9")] == ["Dinner at 9?"]
    assert [s.message_id for s in timeline.search("menu.jpg")] == ["message-photo-000001"]  # file names too
    assert timeline.search("4711") == [] and timeline.search("") == []  # deleted messages never match


def test_a_reply_quotes_the_message_as_it_is_now_and_only_from_its_own_chat() -> None:
    timeline = Timeline(MESSAGES, ACTIONS)
    quoted = timeline.quote("message-dinner-00001", CHAT)
    assert quoted is not None and quoted.summary == "Dinner at 9?" and quoted.outcome.edited
    secret = timeline.quote("message-secret-00001", CHAT)
    assert secret is not None and secret.summary == DELETED_TEXT
    assert timeline.quote("message-dinner-00001", OTHER) is None  # a reply cannot quote across chats
    assert timeline.quote("message-never-seen-1", CHAT) is None


def test_forgetting_a_deleted_message_keeps_its_routing_and_delete_and_drops_every_word() -> None:
    messages, actions = copy.deepcopy(MESSAGES), copy.deepcopy(ACTIONS)
    assert forget_deleted(messages, actions) == {"message-secret-00001"}
    kept = json.dumps([messages, actions])
    assert "4711" not in kept and "👍" not in kept
    assert [a["id"] for a in actions] == ["edit-of-dinner-00001", "delete-secret-000001"]
    # What remains still shows the same thing.
    before, after = Timeline(MESSAGES, ACTIONS), Timeline(messages, actions)
    for message in MESSAGES:
        shown_before, shown_after = before.shown(message["id"]), after.shown(message["id"])
        assert shown_before is not None and shown_after is not None
        assert shown_after.outcome == shown_before.outcome


@given(st.permutations(ACTIONS), st.text(max_size=6))
def test_what_search_finds_does_not_depend_on_the_order_actions_arrived(
    order: list[dict[str, Any]], query: str
) -> None:
    expected = [s.message_id for s in Timeline(MESSAGES, ACTIONS).search(query)]
    assert [s.message_id for s in Timeline(MESSAGES, order).search(query)] == expected
