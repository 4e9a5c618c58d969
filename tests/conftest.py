"""Fixtures shared across test folders: Lockstep servers on loopback (see tests/lockstep_servers.py).

- ``live_server``: the app in this test's event loop (anyio), with a clock the test can move.
- ``server_process``: ``lockstep serve`` as a real process, for the CLI and browser tests.
- ``postgres``: one throwaway PostgreSQL per session (tests/pg_server.py); ``postgres_url``: a fresh
  database in it for one test.
- ``database_url`` (per test) and ``module_database_url`` (per module): a new, empty database on each
  engine in turn (the tests that use them, ``live_server`` included, run once per engine).
- ``redis_pair``: two instances in this test's event loop sharing Redis, a database and a fake clock.
- ``redis``: one throwaway Redis per session (tests/redis_server.py); deployments keep apart by key
  prefix (``redis_server.new_prefix``). ``private_redis``: one for this test alone, to kill and restart.
- ``playwright``: Playwright's sync API for the browser tests, per module (tests/chromium.py says why);
  ``chromium``: a desktop Chromium in it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from chromium import launch
from lockstep.server.services import Services
from lockstep.server.store import Store, sqlite_url
from lockstep_pair import instance_pair
from lockstep_servers import FakeClock, LiveServer, ServerProcess, serving, start_server
from other_network import SEPARATE_NETWORK
from pg_server import PostgresServer, postgres_for_tests, start_postgres
from redis_server import RedisServer, redis_for_tests, start_redis

ENGINES = ["sqlite", "postgresql"]

# Hypothesis' default 200 ms deadline per example measures the machine's load, not the code: with test files
# in parallel workers beside Chromium and real peers, a fast example can take longer. Properties keep every
# other check; a test that is about speed says so with its own deadline.
settings.register_profile("lockstep", deadline=None, print_blob=True)
settings.load_profile("lockstep")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = postgres_for_tests()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own, for tests that stop it: stopping the shared one would disturb others."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A new empty database for this test."""
    return postgres.create_database()


def _new_database(request: pytest.FixtureRequest, folder: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(folder / "lockstep.sqlite3")
    postgres: PostgresServer = request.getfixturevalue("postgres")  # started only if a test needs it
    return postgres.create_database()


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _new_database(request, tmp_path)


@pytest.fixture(scope="module", params=ENGINES)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _new_database(request, tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    server = redis_for_tests()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def redis_pair(
    tmp_path: Path, redis: RedisServer, database_url: str
) -> AsyncIterator[list[LiveServer]]:
    async with instance_pair(tmp_path, redis.url, database_url) as pair:
        yield pair


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def live_server(tmp_path: Path, database_url: str) -> AsyncIterator[LiveServer]:
    clock = FakeClock()
    services = Services(origin="", store=Store.for_url(database_url), media_dir=tmp_path / "media")
    services.clock = clock
    services.sleep = clock.sleep
    async with serving(services) as url:
        yield LiveServer(url, services, clock, database_url)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path / "server-data", tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def two_network_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server process that counts 127.0.0.2 as a network of its own (reach it from there through
    ``other_network.from_other_network``)."""
    server = start_server(tmp_path / "server-data", tmp_path / "server.log", *SEPARATE_NETWORK)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def chromium(playwright: Any) -> Iterator[Any]:
    """One desktop Chromium for a module's tests (each opens its own context)."""
    browser = launch(playwright)
    try:
        yield browser
    finally:
        browser.close()
