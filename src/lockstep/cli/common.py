"""What the client verbs share: running coroutines, loading state, and one-line refusals."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from lockstep.cli import CommandError
from lockstep.client.errors import ClientError
from lockstep.client.session import DeviceSession
from lockstep.client.state import DeviceState, default_state_dir
from lockstep.link.devices import Role
from lockstep.link.errors import LinkError

T = TypeVar("T")


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """Client and protocol errors become :class:`CommandError`: one line, non-zero exit."""
    try:
        yield
    except (ClientError, LinkError) as error:
        raise CommandError(str(error)) from error


def run_client(work: Coroutine[Any, Any, T]) -> T:
    with refusals():
        return asyncio.run(work)


def state_dir(args: Any, role: Role) -> Path:
    return Path(args.state) if args.state else default_state_dir(role)


def load_state(args: Any, role: Role) -> DeviceState:
    with refusals():
        return DeviceState.load(state_dir(args, role), role)


def add_state_argument(parser: Any, role: Role) -> None:
    parser.add_argument(
        "--state", metavar="DIR", help=f"device state folder (default: {default_state_dir(role)})"
    )


def warn_about_clock(session: DeviceSession) -> None:
    """Tell the person when their clock is far from the server's (Lockstep itself uses server time)."""
    if session.clock.far_off:
        print(f"lockstep: note: {session.clock.describe()}", file=sys.stderr)
