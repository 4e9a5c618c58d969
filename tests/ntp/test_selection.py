"""Selection, cluster and combine (RFC 5905 §11.2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lockstep.ntp.selection import Candidate, cluster, combine, select_truechimers


def c(name: str, offset: float, distance: float = 0.01, jitter: float = 0.001, stratum: int = 2):
    return Candidate(name, stratum, offset, jitter, distance)


def test_one_falseticker_among_four_is_rejected() -> None:
    result = select_truechimers([c("a", 0.001), c("b", -0.002), c("c", 0.0), c("liar", 0.5)])
    assert result is not None
    assert [x.name for x in result.falsetickers] == ["liar"]
    assert result.low <= 0.0 <= result.high


def test_no_majority_means_no_selection() -> None:
    assert select_truechimers([c("a", 0.0), c("b", 1.0)]) is None
    assert select_truechimers([]) is None


def test_overlapping_wide_intervals_all_survive() -> None:
    result = select_truechimers([c("a", 0.0, 0.1), c("b", 0.05, 0.1), c("c", 0.1, 0.1)])
    assert result is not None and len(result.truechimers) == 3


def test_cluster_prunes_outlier_and_orders_by_stratum_then_distance() -> None:
    survivors = cluster(
        [
            c("far", 0.030, 0.02),
            c("s1", 0.0, 0.05, stratum=1),
            c("a", 0.001, 0.01),
            c("b", -0.001, 0.02),
        ]
    )
    assert [x.name for x in survivors] == ["s1", "a", "b"]


def test_combine_weights_by_reciprocal_distance() -> None:
    result = combine([c("a", 0.010, 0.01), c("b", 0.040, 0.03)])
    assert abs(result.offset - (0.010 / 0.01 + 0.040 / 0.03) / (1 / 0.01 + 1 / 0.03)) < 1e-12


@given(
    st.lists(st.floats(-0.01, 0.01), min_size=3, max_size=8),
    st.floats(0.2, 100),
)
def test_a_minority_falseticker_is_never_a_truechimer(truths: list[float], lie: float) -> None:
    candidates = [c(f"t{i}", x, 0.02) for i, x in enumerate(truths)] + [c("liar", lie, 0.02)]
    result = select_truechimers(candidates)
    assert result is not None
    assert "liar" not in {x.name for x in result.truechimers}
    assert all(x.name != "liar" for x in cluster(result.truechimers))
