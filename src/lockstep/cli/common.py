"""What the client verbs share: running coroutines, loading (and unlocking) state, one-line refusals."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from lockstep.cli import CommandError
from lockstep.client import vault
from lockstep.client.errors import ClientError
from lockstep.client.session import DeviceSession
from lockstep.client.state import DeviceState, default_state_dir
from lockstep.link.devices import Role
from lockstep.link.errors import LinkError

T = TypeVar("T")

PASSPHRASE_ENV = "LOCKSTEP_PASSPHRASE"  # noqa: S105 - the name of a variable, not its value
"""Where scripts and tests give a sealed folder's passphrase; a person types it (unechoed) instead."""
MIN_PASSPHRASE = 8


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
    directory = state_dir(args, role)
    unlock(directory)
    with refusals():
        return DeviceState.load(directory, role)


def read_passphrase(prompt: str, *, new: bool = False) -> str:
    """The passphrase: from $LOCKSTEP_PASSPHRASE if set, else typed at the terminal without echo (twice
    when ``new``). Never from a command-line argument, which every user of the machine can read."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given is None:
        if not sys.stdin.isatty():
            raise CommandError(f"a passphrase is needed: run this at a terminal, or set {PASSPHRASE_ENV}")
        given = getpass.getpass(prompt)
        if new and getpass.getpass("The same passphrase again: ") != given:
            raise CommandError("the two passphrases differ; nothing was made")
    if new and len(given) < MIN_PASSPHRASE:
        raise CommandError(f"a passphrase has at least {MIN_PASSPHRASE} characters")
    return given


def unlock(directory: Path) -> None:
    """Ask for the passphrase of a sealed state folder (client/vault.py) and open it for this command;
    a wrong one is refused before anything is read or changed."""
    if not vault.is_sealed(directory):
        return
    try:
        vault.unlock(directory, read_passphrase(f"Passphrase for {directory}: "))
    except vault.WrongPassphrase:
        raise CommandError(f"wrong passphrase for {directory}; nothing was changed") from None
    except ClientError as error:
        raise CommandError(str(error)) from error


def add_state_argument(parser: Any, role: Role) -> None:
    parser.add_argument(
        "--state", metavar="DIR", help=f"device state folder (default: {default_state_dir(role)})"
    )


def warn_about_clock(session: DeviceSession) -> None:
    """Tell the person when their clock is far from the server's (Lockstep itself uses server time)."""
    if session.clock.far_off:
        print(f"lockstep: note: {session.clock.describe()}", file=sys.stderr)
