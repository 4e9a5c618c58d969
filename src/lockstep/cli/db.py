"""`lockstep db`: the server's database — apply schema migrations, copy one database into another."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from lockstep.cli import CommandError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("db", help="migrate or copy the server's database")
    verbs = parser.add_subparsers(dest="db_verb", required=True, metavar="ACTION")
    migrate = verbs.add_parser("migrate", help="bring the database's schema up to this Lockstep's version")
    migrate.add_argument(
        "--database", help="sqlite:///path or postgresql://… (LOCKSTEP_DATABASE_URL; default: --data's)"
    )
    migrate.add_argument("--data", type=Path, help="data folder (LOCKSTEP_DATA; default ./data)")
    migrate.set_defaults(handler=run_migrate)
    copy = verbs.add_parser("copy", help="copy every account, device, key, queue and group to a new database")
    copy.add_argument(
        "--from", dest="source", required=True, help="the database to read, e.g. sqlite:///data/…"
    )
    copy.add_argument("--to", dest="target", required=True, help="an empty database, e.g. postgresql://…")
    copy.set_defaults(handler=run_copy)


def run_migrate(args: argparse.Namespace) -> int:
    from lockstep.server.errors import StorageError, Unavailable
    from lockstep.server.settings import Settings, SettingsError
    from lockstep.server.store import Store, redact

    try:
        settings = Settings.from_env(os.environ, data_dir=args.data, database=args.database)
    except SettingsError as error:
        raise CommandError(str(error)) from error

    async def migrate() -> tuple[int, int]:
        store = Store.for_url(settings.database_url)
        versions = await store.open()
        await store.close()
        return versions

    try:
        before, after = asyncio.run(migrate())
    except (StorageError, Unavailable) as error:
        raise CommandError(str(error)) from error
    where = redact(settings.database_url)
    if before == after:
        print(f"{where}: schema is at version {after}, nothing to do")
    else:
        print(f"{where}: schema migrated from version {before} to {after}")
    return 0


def run_copy(args: argparse.Namespace) -> int:
    from lockstep.server.errors import StorageError, Unavailable
    from lockstep.server.store import DatabaseUrlError, Store, redact
    from lockstep.server.store.backend import sqlite_path
    from lockstep.server.store.copy import copy_database

    try:
        source_file = sqlite_path(args.source)
    except DatabaseUrlError as error:
        raise CommandError(str(error)) from error
    if source_file is not None and not source_file.is_file():
        raise CommandError(f"no SQLite database at {source_file} (sqlite:////absolute or sqlite:///relative)")

    async def copy() -> dict[str, int]:
        source, target = Store.for_url(args.source), Store.for_url(args.target)
        await source.open()
        try:
            await target.open()
            try:
                return await copy_database(source, target)
            finally:
                await target.close()
        finally:
            await source.close()

    try:
        counts = asyncio.run(copy())
    except (StorageError, Unavailable, DatabaseUrlError) as error:
        raise CommandError(str(error)) from error
    summary = ", ".join(f"{count} {table}" for table, count in counts.items())
    print(f"copied {redact(args.source)} to {redact(args.target)}: {summary}")
    print("media blobs are files: copy the media folder too (see docs/deploy.md)")
    return 0
