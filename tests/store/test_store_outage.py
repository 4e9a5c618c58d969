"""PostgreSQL stopped under a running `lockstep serve`: requests get `unavailable`, the instance keeps
running, and it recovers by itself once the database is back (docs/deploy.md)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from lockstep.client.errors import ServerRefused
from lockstep.client.primary import PrimarySession, create_account
from lockstep.server.store.postgres import connection_lost
from lockstep_servers import ServerProcess, start_server
from pg_server import PostgresServer

pytestmark = pytest.mark.anyio
OUTAGE_S = 3.0


@pytest.fixture
def server_on_postgres(private_postgres: PostgresServer, tmp_path: Path) -> Iterator[ServerProcess]:
    url = private_postgres.create_database()
    server = start_server(tmp_path / "data", tmp_path / "serve.log", "--database", url)
    try:
        yield server
    finally:
        server.stop()


async def test_requests_get_unavailable_while_postgres_is_down_then_work_again(
    private_postgres: PostgresServer, server_on_postgres: ServerProcess, tmp_path: Path
) -> None:
    server = server_on_postgres
    state = await create_account(server.url, "alice", "Alice", "Phone", tmp_path / "phone")
    phone = await PrimarySession.open(state)
    try:
        assert (await phone.refresh())["device_list"]
        await asyncio.to_thread(private_postgres.stop)
        down_until = time.monotonic() + OUTAGE_S
        refusals = 0
        while time.monotonic() < down_until:
            for op in ("devices.list", "messages.fetch"):
                with pytest.raises(ServerRefused) as refused:
                    await phone.connection.request(op)
                assert refused.value.code == "unavailable", refused.value
                refusals += 1
            await asyncio.sleep(0.2)
        assert refusals >= 4
        # The instance is up and answers what needs no database; its sockets stay open.
        assert server.process.poll() is None
        info = await asyncio.to_thread(urllib.request.urlopen, server.url + "/api/info", timeout=5)
        assert json.loads(info.read())["name"] == "Lockstep"

        await asyncio.to_thread(private_postgres.start)
        deadline = time.monotonic() + 20
        while True:  # the pool reconnects on the next requests; no restart, no operator
            try:
                await phone.refresh()
                break
            except ServerRefused as error:
                assert error.code == "unavailable" and time.monotonic() < deadline, error
                await asyncio.sleep(0.2)
        assert (await phone.connection.request("messages.fetch"))["messages"] == []
    finally:
        await phone.close()
    again = await PrimarySession.open(phone.state)  # a new socket signs in against the same data
    try:
        assert (await again.refresh())["device_list"]
    finally:
        await again.close()
    assert server.process.poll() is None
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_serve_says_in_one_line_that_postgres_cannot_be_reached(
    private_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = private_postgres.create_database()
    private_postgres.stop()
    with pytest.raises(RuntimeError) as refused:
        start_server(tmp_path / "data", tmp_path / "serve.log", "--database", url)
    output = str(refused.value).split("server exited: ", 1)[1].strip()
    assert output.startswith("lockstep: cannot reach postgresql://lockstep@127.0.0.1:"), output
    assert len(output.splitlines()) == 1, output


class _OpenConnection:
    def is_closed(self) -> bool:
        return False


class _DetachedConnection:
    """The pool's proxy once its connection terminated: asyncpg detaches it at once."""

    def is_closed(self) -> bool:
        raise asyncpg.InterfaceError(
            "cannot call Connection.is_closed(): connection has been released back to the pool"
        )


def test_a_cut_hidden_behind_a_client_state_error_counts_as_unavailable() -> None:
    # PostgreSQL shut down mid-statement: the transaction's exit replaces the cut with an InterfaceError.
    try:
        try:
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        except (
            asyncpg.PostgresError
        ):  # raised while handling it, as asyncpg's __aexit__ does: implicit context
            raise asyncpg.InterfaceError(  # noqa: B904
                "cannot call Transaction.__aexit__(): the underlying connection is closed"
            )
    except asyncpg.InterfaceError as hidden:
        assert connection_lost(_OpenConnection(), hidden)
    # The cut surfacing as asyncpg's half-way protocol state, on a proxy the pool already detached.
    assert connection_lost(_DetachedConnection(), asyncpg.InternalClientError("cannot switch to state 12"))
    # A client-state error on a live connection is a bug to report, not an outage.
    assert not connection_lost(_OpenConnection(), asyncpg.InterfaceError("cannot perform operation"))
