"""``lockstep db copy``: every row of one database into another, empty one (e.g. SQLite → PostgreSQL).

The source is read in one transaction (a consistent snapshot) and the target written in one, so the
copy is all or nothing. Both are brought to the same schema version first. Rows are held in memory
between the two, which suits the servers this is for (the SQLite default: ciphertext queues and
key material, not media blobs, which stay files).
"""

from __future__ import annotations

from lockstep.server.errors import StorageError
from lockstep.server.store.schema import TABLES
from lockstep.server.store.sql import Row, Work, execute, query, query_one
from lockstep.server.store.store import Store

BATCH_ROWS = 200


class TargetNotEmpty(StorageError):
    def __init__(self, url: str) -> None:
        super().__init__(f"{url} already holds accounts: copy only into a new, empty database")


def read_all() -> Work[dict[str, list[Row]]]:
    tables: dict[str, list[Row]] = {}
    for table, columns in TABLES.items():
        tables[table] = yield from query(f"SELECT {', '.join(columns)} FROM {table}")  # noqa: S608
    return tables


def write_all(tables: dict[str, list[Row]], target_url: str) -> Work[None]:
    if (yield from query_one("SELECT 1 FROM accounts LIMIT 1")) is not None:
        raise TargetNotEmpty(target_url)
    for table, columns in TABLES.items():
        rows = tables[table]
        for start in range(0, len(rows), BATCH_ROWS):
            batch = rows[start : start + BATCH_ROWS]
            row_marks = "(" + ", ".join("?" * len(columns)) + ")"
            yield from execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - names from TABLES
                f"VALUES {', '.join([row_marks] * len(batch))}",
                *[value for row in batch for value in row],
            )


async def copy_database(source: Store, target: Store) -> dict[str, int]:
    """Copy everything from ``source`` into the empty ``target`` (both open); rows copied per table."""
    tables = await source.backend.run(read_all, atomic=True)
    url = target.backend.display_url
    await target.backend.run(lambda: write_all(tables, url), atomic=True)
    return {table: len(rows) for table, rows in tables.items()}
