"""Store operations as engine-free transactions: generators that yield SQL and receive its results.

An operation (in ``accounts``, ``keys``, ``queues``, ``groups``, ``media``) is a generator function.
It yields :class:`Statement` values and gets back rows or a count of changed rows; it returns the
operation's result. It never touches a connection, so one definition serves both engines, and a
backend may run it again from the start when the database asks for a retry (a serialization failure
or deadlock on PostgreSQL). Raising inside it rolls the whole transaction back.

SQL is written once, in the dialect both engines understand: ``?`` parameters (PostgreSQL's backend
numbers them ``$1, $2, …``), ``INSERT … ON CONFLICT``, ``RETURNING``, ``CAST`` where PostgreSQL must
know a type. Row locks are written out (``FOR UPDATE``, ``FOR NO KEY UPDATE``, ``SKIP LOCKED``):
PostgreSQL needs them against concurrent writers; the SQLite
backend drops them, because its ``BEGIN IMMEDIATE`` already lets one writer in at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

T = TypeVar("T")
Row = tuple[Any, ...]

ROWS_PER_STATEMENT = 256

"""Rows per multi-row statement: 8 parameters a row stays far below PostgreSQL's 65,535 a statement,
and a group send of 2,000 devices is still only a handful of statements."""


def chunks(items: list[T]) -> Iterator[list[T]]:
    """``items`` in runs of at most ``ROWS_PER_STATEMENT``: one statement's worth each."""
    for start in range(0, len(items), ROWS_PER_STATEMENT):
        yield items[start : start + ROWS_PER_STATEMENT]


@dataclass(frozen=True, slots=True)
class Statement:
    text: str
    args: tuple[Any, ...]
    returns_rows: bool
    """True: the operation gets the result rows; False: the number of rows changed."""


Work = Generator[Statement, object, T]
"""A transaction: yields statements, receives ``list[Row]`` or ``int``, returns ``T``."""
WorkFactory = Callable[[], Work[T]]
"""Makes a fresh run of an operation (a retry starts from scratch)."""


def query(text: str, *args: Any) -> Work[list[Row]]:
    rows = yield Statement(text, args, True)
    return cast(list[Row], rows)


def query_one(text: str, *args: Any) -> Work[Row | None]:
    rows = yield from query(text, *args)
    return rows[0] if rows else None


def execute(text: str, *args: Any) -> Work[int]:
    """Run a statement that returns no rows; gives the number of rows it changed."""
    changed = yield Statement(text, args, False)
    return cast(int, changed)


def marks(count: int) -> str:
    """``?, ?, ?`` for an ``IN (…)`` list of ``count`` values."""
    return ", ".join("?" * count)


def json_text(value: Any) -> str:
    """Strict JSON (RFC 8259) for a stored value: requests are parsed strictly, so NaN or Infinity
    here is a bug to refuse."""
    return json.dumps(value, allow_nan=False)
