"""The bookkeeping of unauthenticated sockets (lockstep.server.admission), without sockets."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from lockstep.server.admission import Admission, AdmissionLimits, Admitted, Refused
from lockstep.server.client_address import address_key


def test_a_full_address_is_refused_and_a_settled_socket_frees_its_place() -> None:
    admission: Admission[str] = Admission(AdmissionLimits(per_address=2, total=10))
    assert isinstance(admission.admit("a1", "192.0.2.1"), Admitted)
    assert isinstance(admission.admit("a2", "192.0.2.1"), Admitted)
    refused = admission.admit("a3", "192.0.2.1")
    assert isinstance(refused, Refused) and "(2)" in refused.reason
    assert isinstance(admission.admit("b1", "192.0.2.2"), Admitted)
    admission.settle("a1")  # authenticated
    assert isinstance(admission.admit("a3", "192.0.2.1"), Admitted)


def test_the_oldest_socket_that_is_not_linking_makes_room() -> None:
    admission: Admission[str] = Admission(AdmissionLimits(per_address=10, total=3))
    for name in ("old-linking", "old-idle", "newer"):
        admission.admit(name, f"192.0.2.{len(name)}")
    admission.linking("old-linking")
    assert admission.admit("newest", "192.0.2.99") == Admitted("old-idle")
    assert admission.count() == 3 and not admission.waiting("old-idle")
    admission.linking("newer")
    admission.linking("newest")
    assert admission.admit("last", "192.0.2.98") == Admitted("old-linking")  # all linking: the oldest


def test_a_socket_whose_link_session_ended_makes_room_before_one_still_linking() -> None:
    admission: Admission[str] = Admission(AdmissionLimits(per_address=10, total=2))
    admission.admit("linked-then-idle", "192.0.2.1")
    admission.admit("linking", "192.0.2.2")
    admission.linking("linked-then-idle")
    admission.linking("linking")
    admission.linking_over("linked-then-idle")  # its codes ran out (link.idle)
    assert admission.waiting("linked-then-idle")  # back on the deadline
    assert admission.admit("new", "192.0.2.3") == Admitted("linked-then-idle")


def test_an_ipv6_64_counts_as_one_address() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    admission: Admission[int] = Admission(AdmissionLimits(per_address=1, total=10))
    admission.admit(1, "2001:db8:1:2::1")
    assert isinstance(admission.admit(2, "2001:db8:1:2::2"), Refused)
    assert isinstance(admission.admit(3, "2001:db8:1:3::1"), Admitted)


steps = st.lists(
    st.tuples(st.sampled_from(["admit", "linking", "settle"]), st.integers(0, 30), st.integers(0, 3)),
    max_size=120,
)


@given(steps=steps, per_address=st.integers(1, 4), total=st.integers(1, 8))
def test_the_caps_always_hold(steps: list[tuple[str, int, int]], per_address: int, total: int) -> None:
    admission: Admission[int] = Admission(AdmissionLimits(per_address=per_address, total=total))
    live: dict[int, tuple[str, bool]] = {}  # socket → (address, linking): the model
    names = itertools.count()
    for action, pick, address_index in steps:
        address = f"192.0.2.{address_index}"
        if action == "admit":
            socket = next(names)
            decision = admission.admit(socket, address)
            if sum(a == address for a, _ in live.values()) >= per_address:
                assert isinstance(decision, Refused)
                continue
            assert isinstance(decision, Admitted)
            if len(live) >= total:
                idle = [s for s, (_, linking) in live.items() if not linking]
                assert decision.evicted == (idle[0] if idle else next(iter(live)))
                del live[decision.evicted]
            else:
                assert decision.evicted is None
            live[socket] = (address, False)
        elif live:
            socket = sorted(live)[pick % len(live)]
            if action == "linking":
                admission.linking(socket)
                live[socket] = (live[socket][0], True)
            else:
                admission.settle(socket)
                del live[socket]
        assert admission.count() == len(live) <= total
        for index in range(4):
            assert admission.count(f"192.0.2.{index}") <= per_address
