"""The store's backend protocol, and the backend a database URL names (like broadcaster's backends).

A backend runs operations (``lockstep.server.store.sql``) as transactions on its engine. Drivers are
imported only when their scheme is used, so the embedded default needs nothing beyond the stdlib.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Protocol, TypeVar

from lockstep.server.store.sql import WorkFactory

T = TypeVar("T")


class DatabaseUrlError(ValueError):
    """A database URL this server cannot use; the message says what is wrong."""


class StoreBackend(Protocol):
    postgres: bool
    """Whether the engine is PostgreSQL (migrations differ slightly)."""

    @property
    def display_url(self) -> str:
        """The URL without any password, for logs and messages."""
        ...

    async def open(self) -> None:
        """Connect; :class:`lockstep.server.errors.Unavailable` if the database is unreachable."""
        ...

    async def close(self) -> None: ...

    async def run(self, work: WorkFactory[T], *, atomic: bool) -> T:
        """Run one operation; ``atomic``: in one transaction, all or nothing.

        A non-atomic operation is a single statement or a read that needs no consistent snapshot.
        """
        ...


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite file (``sqlite:///relative`` or ``sqlite:////absolute``, as SQLAlchemy)."""
    return f"sqlite:///{path}"


def redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def check_url(url: str) -> str:
    """The engine a URL names (``sqlite`` or ``postgresql``); :class:`DatabaseUrlError` if unusable."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise DatabaseUrlError(
                f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path: {url}"
            )
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise DatabaseUrlError(
        f"unknown database URL scheme {scheme!r} (sqlite:/// or postgresql://): {redact(url)}"
    )


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names; None for another engine."""
    return Path(url[len("sqlite:///") :]) if check_url(url) == "sqlite" else None


def backend_for(url: str) -> StoreBackend:
    """The backend for ``sqlite:///path`` or ``postgresql://user@host:port/db`` (not yet connected)."""
    path = sqlite_path(url)
    if path is not None:
        from lockstep.server.store.sqlite import SqliteBackend

        return SqliteBackend(path)
    from lockstep.server.store.postgres import PostgresBackend

    return PostgresBackend(url)
