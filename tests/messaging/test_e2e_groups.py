"""Megolm group sessions: who gets keys, rotation on removal, no reading before joining or after leaving."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.e2e.errors import DecryptionError, NoSession, ReplayedMessage
from lockstep.e2e.megolm import ROTATE_AFTER_MESSAGES, GroupSessions


def share(sender: GroupSessions, receivers: dict[str, GroupSessions], group: str) -> None:
    need = sender.prepare(group, set(receivers))
    for device in need.devices:
        receivers[device].add_inbound("s", "sender-curve-key", need.body)
    sender.mark_shared(group, need.devices)


def test_a_removed_device_cannot_read_what_is_sent_after() -> None:
    sender = GroupSessions()
    members = {"b": GroupSessions(), "c": GroupSessions()}
    share(sender, members, "g")
    first = sender.encrypt("g", b"before")
    session_before = sender.session_id("g")
    for receiver in members.values():
        assert receiver.decrypt("s", session_before, first).plaintext == b"before"
    removed = members.pop("c")
    need = sender.prepare("g", set(members))
    assert need.rotated and need.devices == {"b"}
    members["b"].add_inbound("s", "sender-curve-key", need.body)
    sender.mark_shared("g", need.devices)
    after = sender.encrypt("g", b"after")
    session_after = sender.session_id("g")
    assert session_after != session_before
    assert members["b"].decrypt("s", session_after, after).plaintext == b"after"
    with pytest.raises(NoSession):
        removed.decrypt("s", session_after, after)
    with pytest.raises(DecryptionError):  # nor with its old session
        removed.decrypt("s", session_before, after)


def test_a_new_member_gets_the_current_key_and_cannot_read_earlier_messages() -> None:
    sender = GroupSessions()
    members = {"b": GroupSessions()}
    share(sender, members, "g")
    early = sender.encrypt("g", b"early")
    members["d"] = GroupSessions()
    need = sender.prepare("g", set(members))
    assert not need.rotated and need.devices == {"d"}
    members["d"].add_inbound("s", "k", need.body)
    sender.mark_shared("g", need.devices)
    later = sender.encrypt("g", b"later")
    session = sender.session_id("g")
    assert members["d"].decrypt("s", session, later).plaintext == b"later"
    with pytest.raises(DecryptionError):
        members["d"].decrypt("s", session, early)


def test_replays_are_refused_and_sessions_rotate_after_many_messages() -> None:
    sender, receiver = GroupSessions(), GroupSessions()
    share(sender, {"b": receiver}, "g")
    message = sender.encrypt("g", b"once")
    session = sender.session_id("g")
    receiver.decrypt("s", session, message)
    with pytest.raises(ReplayedMessage):
        receiver.decrypt("s", session, message)
    with pytest.raises(NoSession):
        receiver.decrypt("someone-else", session, message)  # keys are bound to the device that sent them
    for _ in range(ROTATE_AFTER_MESSAGES):
        sender.encrypt("g", b"x")
    assert sender.prepare("g", {"b"}).rotated


def test_a_reshare_from_an_earlier_index_does_not_reopen_replays() -> None:
    """The same device re-shares its session from an earlier index (e.g. for a member's new device):
    the receiver keeps the earlier copy but must still refuse the indices it already decrypted."""
    sender, receiver = GroupSessions(), GroupSessions()
    from_zero = sender.prepare("g", {"b"}).body
    sender.mark_shared("g", {"b"})
    first = sender.encrypt("g", b"I will pay you on Friday")
    from_one = sender.prepare("g", {"b"}).body
    second = sender.encrypt("g", b"second")
    session = sender.session_id("g")
    receiver.add_inbound("s", "k", from_one)
    assert receiver.decrypt("s", session, second).plaintext == b"second"
    receiver.add_inbound("s", "k", from_zero)  # reaches further back: replaces the copy from index 1
    assert receiver.decrypt("s", session, first).plaintext == b"I will pay you on Friday"
    for replayed in (second, first):
        with pytest.raises(ReplayedMessage):
            receiver.decrypt("s", session, replayed)
    restored = GroupSessions.from_pickle(receiver.pickle(b"k" * 32), b"k" * 32)
    with pytest.raises(ReplayedMessage):
        restored.decrypt("s", session, second)
    with pytest.raises(DecryptionError, match="another group"):
        receiver.add_inbound("s", "k", {**from_zero, "group_id": "h"})


def test_pickles_round_trip() -> None:
    key = b"q" * 32
    sender, receiver = GroupSessions(), GroupSessions()
    share(sender, {"b": receiver}, "g")
    sender = GroupSessions.from_pickle(sender.pickle(key), key)
    receiver = GroupSessions.from_pickle(receiver.pickle(key), key)
    assert not sender.prepare("g", {"b"}).devices
    assert receiver.decrypt("s", sender.session_id("g"), sender.encrypt("g", b"hi")).plaintext == b"hi"


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(range(8)), duplicates=st.lists(st.integers(0, 7), max_size=4))
def test_group_messages_in_any_order_with_duplicates_are_read_once(
    order: list[int], duplicates: list[int]
) -> None:
    sender, receiver = GroupSessions(), GroupSessions()
    share(sender, {"b": receiver}, "g")
    session = sender.session_id("g")
    messages = [sender.encrypt("g", f"m{i}".encode()) for i in range(8)]
    read = []
    for index in [*order, *duplicates]:
        try:
            read.append(receiver.decrypt("s", session, messages[index]).plaintext)
        except ReplayedMessage:
            assert index in duplicates
    assert sorted(read) == sorted(f"m{i}".encode() for i in range(8))
