"""Requests handed straight to ``gateway.handle_frame``, for the fuzz tests: a connection with no
socket behind it (replies are returned, not sent) and random JSON values for request fields."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from lockstep.server.connection import Connection


class _NoSocket:
    """Stands in for the WebSocket: handle_frame returns its reply instead of sending it."""


def socketless_connection() -> Connection:
    return Connection(_NoSocket(), "127.0.0.1", "test")  # type: ignore[arg-type]


def json_values(*, text_size: int, children: int, leaves: int) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars (non-finite floats included) nested in lists and objects."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=text_size),
        lambda inner: (
            st.lists(inner, max_size=children)
            | st.dictionaries(st.text(max_size=10), inner, max_size=children)
        ),
        max_leaves=leaves,
    )
