"""On-wire offset and delay (RFC 5905 §8)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lockstep.ntp import on_wire, on_wire_seconds
from lockstep.ntp.timestamps import ONE_SECOND, to_timestamp

ERA1 = 1 << 64


def test_symmetric_path_gives_exact_offset_and_delay() -> None:
    # Server 1 s ahead, 10 ms each way, 1 ms in the server.
    ms = ONE_SECOND // 1000
    t1 = 1000 * ONE_SECOND
    t2 = t1 + ONE_SECOND + 10 * ms
    t3 = t2 + ms
    t4 = t1 + 21 * ms
    exchange = on_wire(t1, t2, t3, t4)
    assert exchange.offset == ONE_SECOND
    assert exchange.delay == 20 * ms


def test_exchange_across_the_2036_rollover() -> None:
    ms = ONE_SECOND // 1000
    t1 = ERA1 - 5 * ms  # client sends just before the rollover...
    t2 = t1 + 2 * ms + 3 * ONE_SECOND  # ...server, 3 s ahead, is already in era 1
    t3 = t2
    t4 = t1 + 4 * ms
    exchange = on_wire(*(to_timestamp(t) for t in (t1, t2, t3, t4)))
    assert exchange.offset == 3 * ONE_SECOND
    assert exchange.delay == 4 * ms


def test_seconds_variant_for_websocket_time_sync() -> None:
    sample = on_wire_seconds(10.0, 15.010, 15.011, 10.030)
    assert abs(sample.offset - 4.9955) < 1e-9
    assert abs(sample.delay - 0.029) < 1e-9


@given(
    st.integers(0, (1 << 66)),
    st.integers(-(1 << 50), 1 << 50),
    st.integers(0, 1 << 40),
    st.integers(0, 1 << 40),
    st.integers(0, 1 << 36),
)
def test_known_offset_recovered_on_symmetric_paths(
    t1: int, offset: int, one_way: int, server_time: int, extra: int
) -> None:
    t2 = t1 + one_way + offset
    t3 = t2 + server_time
    t4 = t1 + 2 * one_way + server_time
    exchange = on_wire(*(to_timestamp(t) for t in (t1, t2, t3, t4)))
    assert exchange.offset == offset
    assert exchange.delay == 2 * one_way
    # Asymmetry biases the offset by half the difference of the two legs.
    skewed = on_wire(*(to_timestamp(t) for t in (t1, t2 + 2 * extra, t3 + 2 * extra, t4)))
    assert skewed.offset == offset + 2 * extra
