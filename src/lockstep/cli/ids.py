"""Ids on the command line. Device, message and group ids are base64url, so 1 in 64 begins with '-'.

argparse reads every word that begins with '-' as an option: ``lockstep primary unlink -Qx4…`` failed
with "unrecognized arguments", and ``unlink -hQx…`` was read as ``-h``. A command whose arguments are
added with :func:`add_id_argument` (its parser a :class:`Parser`, as every parser under
``lockstep.cli.build_parser`` is) reads such a word as a value instead, unless it is one of that command's
options or an abbreviation of one (``--all``, ``--st`` for ``--state``). ``-- ID`` works as before.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

# A word that may be an id, an id prefix or a one-word name: base64url characters after the first '-'.
# Anything else that begins with '-' (``--state=DIR``, ``-1.5``) is left to argparse.
_DASH_WORD = re.compile(r"-[A-Za-z0-9_-]+")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose commands can take ids that begin with '-' (:func:`add_id_argument`).
    Sub-commands made by ``add_subparsers().add_parser`` are of the same class."""

    takes_ids = False

    def _parse_optional(self, arg_string: str) -> Any:
        # argparse's hook that sorts each word into option or value; None means a value in every Python
        # since 3.2 (what it returns for an option changed in 3.12, so this passes that through untouched).
        if self.takes_ids and self.is_id_word(arg_string):
            return None
        return super()._parse_optional(arg_string)

    def is_id_word(self, word: str) -> bool:
        """``word`` begins with '-' and is a value here: base64url, and not an option or its abbreviation."""
        if not _DASH_WORD.fullmatch(word):
            return False
        return not any(option.startswith(word) for option in self._option_string_actions)


def add_id_argument(parser: argparse.ArgumentParser, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
    """``parser.add_argument(...)`` for an argument or option value that is an id (or an id prefix or a
    name standing for one): from now on a word that begins with '-' is read as such a value."""
    if not isinstance(parser, Parser):
        raise TypeError(f"{parser.prog}: ids beginning with '-' need a lockstep.cli.ids.Parser")
    parser.takes_ids = True
    return parser.add_argument(*name_or_flags, **kwargs)
