"""The `lockstep` command line: one sub-module per top-level verb.

Each verb module exposes ``register(subparsers)``, which adds its parser and sets ``handler`` (a
function taking the parsed namespace and returning an exit status). Errors meant for the user are
raised as :class:`CommandError` and printed as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from lockstep import __version__
from lockstep.cli.ids import Parser

# Verb modules, imported lazily so `lockstep ntp ...` does not pay for the web server's imports.
VERB_MODULES = ("serve", "db", "primary", "companion", "ntp", "messaging", "calls")


class CommandError(Exception):
    """A refusal or failure to report to the user as one line, with a non-zero exit status."""

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def build_parser(verbs: Sequence[str] = VERB_MODULES) -> argparse.ArgumentParser:
    parser = Parser(prog="lockstep", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lockstep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in verbs:
        module = importlib.import_module(f"lockstep.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, verbs: Sequence[str] = VERB_MODULES) -> int:
    """Run the command line; ``verbs`` limits which verb modules are loaded (and offered)."""
    parser = build_parser(verbs)
    args = parser.parse_args(argv)
    # Client verbs print what a person asked for and nothing else; services (set_defaults(log_level=INFO))
    # also log what they do. -v shows everything.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else getattr(args, "log_level", logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        status: int = args.handler(args)
    except CommandError as error:
        print(f"lockstep: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        return 130
    return status
