"""Megolm replay protection in bounded space (lockstep.e2e.replay, messaging.md §6.1): an index is
accepted once, ranges stay within MAX_RANGES however long the session, and it is exact while the gaps
fit in that many ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.e2e.errors import ReplayedMessage
from lockstep.e2e.megolm import GroupSessions
from lockstep.e2e.replay import MAX_RANGES, SeenIndexes

INDEXES = st.lists(st.integers(0, 5_000), max_size=400)


@given(INDEXES)
def test_no_index_is_ever_accepted_twice_and_the_ranges_stay_bounded(indexes: list[int]) -> None:
    seen = SeenIndexes()
    accepted: set[int] = set()
    for index in indexes:
        if seen.add(index):
            assert index not in accepted
            accepted.add(index)
        assert index in seen
        assert len(seen.ranges) <= MAX_RANGES
    assert all(index in seen for index in accepted)


@given(st.lists(st.integers(0, 2_000), max_size=300))
def test_it_is_exact_while_the_gaps_fit(indexes: list[int]) -> None:
    """With at most MAX_RANGES ranges ever needed, it answers exactly as a set of every index would."""
    kept: set[int] = set()
    seen = SeenIndexes()
    for index in indexes:
        runs = len(_ranges(kept | {index}))
        if runs > MAX_RANGES:
            break
        assert seen.add(index) == (index not in kept)
        kept.add(index)
        assert seen.ranges == _ranges(kept)


@given(INDEXES)
def test_it_round_trips_through_json_and_reads_a_plain_list_of_indexes(indexes: list[int]) -> None:
    seen = SeenIndexes(indexes)
    again = SeenIndexes.from_json(seen.to_json())
    assert again.ranges == seen.ranges
    assert SeenIndexes.from_json(sorted(set(indexes))).ranges == seen.ranges  # state from before ranges


@pytest.mark.parametrize(
    "value", [{}, [[3, 1]], [[0, 2], [2, 4]], [[5, 6], [0, 1]], [[0, 1, 2]], [-1], [[-2, 1]], [["0", 1]]]
)
def test_damaged_ranges_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        SeenIndexes.from_json(value)


def test_in_order_messages_keep_one_range_and_a_late_one_past_the_window_counts_as_seen() -> None:
    seen = SeenIndexes()
    assert all(seen.add(i) for i in range(100_000))
    assert seen.ranges == [(0, 100_000)]
    # Every other index from here on: each leaves a gap, and past MAX_RANGES the lowest gap closes.
    for i in range(100_001, 100_001 + 2 * (MAX_RANGES + 5), 2):
        seen.add(i)
    assert len(seen.ranges) == MAX_RANGES
    assert 100_000 in seen  # the first gap was closed: that message, if it came now, would be a replay
    assert 100_000 + 2 * (MAX_RANGES + 3) not in seen  # the newest gap stays open


def test_a_long_session_pickles_in_bounded_space() -> None:
    """The pickle of an inbound session that decrypted 5,000 messages holds one range, not 5,000 indexes."""
    sender, receiver = GroupSessions(), GroupSessions()
    share = sender.prepare("g", {"r"})
    receiver.add_inbound("s", "key", share.body)
    ciphertexts = [sender.encrypt("g", f"message {i}".encode()) for i in range(5_000)]
    for ciphertext in ciphertexts:
        receiver.decrypt("s", share.body["session_id"], ciphertext)
    pickle = receiver.pickle(b"k" * 32)
    assert pickle["inbound"][0]["seen"] == [[0, 5_000]]
    restored = GroupSessions.from_pickle(pickle, b"k" * 32)
    with pytest.raises(ReplayedMessage):
        restored.decrypt("s", share.body["session_id"], ciphertexts[17])


def _ranges(indexes: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for index in sorted(indexes):
        if out and out[-1][1] == index:
            out[-1] = (out[-1][0], index + 1)
        else:
            out.append((index, index + 1))
    return out
