"""Ids on the command line. Device, message and group ids are base64url, so 1 in 64 begins with '-'.

argparse reads every word that begins with '-' as an option: ``lockstep primary unlink -Qx4…`` failed
with "unrecognized arguments", and ``unlink -hQx…`` was read as ``-h``. A command whose ids are added with
:func:`add_id_argument` (its parser a :class:`Parser`, as every parser under ``lockstep.cli.build_parser``
is) reads such a word as the id, but only where an id stands: the word right after an id-taking option
(``send --to -Qx…``) and the command's id positional (``unlink -Qx…``). Everywhere else argparse's rule
holds, so ``send --to @bob --verbose`` is still an error, not a message "--verbose". Even at an id's place
an option of the command or of a parent parser, or an abbreviation of one (``--all``, ``--st`` for
``--state``, ``-h``, ``--verbose``), stays an option. ``-- ID`` works as before.
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Iterator
from typing import Any

# A word that may be an id, an id prefix or a one-word name: base64url characters after the first '-'.
# Anything else that begins with '-' (``--state=DIR``, ``-1.5``) is left to argparse.
_DASH_WORD = re.compile(r"-[A-Za-z0-9_-]+")


class _IdWord(str):
    """A command-line word that stands where an id goes: tagged before argparse sorts the words, so the
    one hook below needs no knowledge of positions. ``type=str`` turns it back into a plain str."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose commands can take ids that begin with '-' (:func:`add_id_argument`).
    Sub-commands made by ``add_subparsers().add_parser`` are of the same class and know their parent."""

    def __init__(self, *args: Any, parent: Parser | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parent = parent  # whose options stay options here too (`lockstep send --verbose`)
        self.id_options: set[argparse.Action] = set()  # options whose value is an id (`--to`)
        self.id_positional = False  # the command's first positional is an id

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", functools.partial(type(self), parent=self))
        return super().add_subparsers(**kwargs)

    def _parse_known_args(self, arg_strings: list[str], *rest: Any) -> Any:
        # Where argparse starts on this command's words (after its parent passed them down): tag those
        # at an id's place for the hook below. (``*rest``: Python 3.12 added an argument here.)
        if self.id_options or self.id_positional:
            at_ids = self._at_ids(arg_strings)
            arg_strings = [_IdWord(w) if at_id else w for w, at_id in zip(arg_strings, at_ids, strict=True)]
        return super()._parse_known_args(arg_strings, *rest)

    def _parse_optional(self, arg_string: str) -> Any:
        # argparse's hook that sorts each word into option or value; None means a value in every Python
        # since 3.2 (what it returns for an option changed in 3.12, so this passes that through untouched).
        if isinstance(arg_string, _IdWord):
            return None
        return super()._parse_optional(arg_string)

    def _at_ids(self, words: list[str]) -> Iterator[bool]:
        """For each word, whether it is a dash word standing where an id goes. This walks the words as
        argparse consumes them, for the options lockstep's id-taking commands have: each takes one value
        (nargs=None) or none (store_true); an option taking more would need more here."""
        value_of: argparse.Action | None = None  # the option whose value the next word is
        positionals = 0
        for index, word in enumerate(words):
            if word == "--":  # argparse reads every later word as a value: nothing to tag
                yield from (False for _ in words[index:])
                return
            if value_of is not None:
                yield value_of in self.id_options and self.is_id_word(word)
                value_of = None
            elif (option := self._option_named(word)) is not None:
                yield False
                value_of = option if option.nargs is None and "=" not in word else None
            elif positionals == 0 and self.id_positional and self.is_id_word(word):
                yield True
                positionals += 1
            else:
                yield False
                positionals += not word.startswith("-")  # an unknown option is argparse's to refuse

    def _option_named(self, word: str) -> argparse.Action | None:
        """The option of this command that ``word`` names as argparse resolves it: exactly, as
        ``--option=value``, or by an unambiguous abbreviation of a long option."""
        name = word.split("=", 1)[0] if word.startswith("--") else word
        if name in self._option_string_actions:
            return self._option_string_actions[name]
        named = {
            a for o, a in self._option_string_actions.items() if name.startswith("--") and o.startswith(name)
        }
        return named.pop() if len(named) == 1 else None

    def is_id_word(self, word: str) -> bool:
        """``word`` begins with '-' and may be a value at an id's place: base64url, and not an option (or
        an abbreviation of one) of this command or a parent."""
        if not _DASH_WORD.fullmatch(word):
            return False
        parser: Parser | None = self
        while parser is not None:
            if any(option.startswith(word) for option in parser._option_string_actions):
                return False
            parser = parser.parent
        return True


def add_id_argument(parser: argparse.ArgumentParser, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
    """``parser.add_argument(...)`` for an argument or option value that is an id (or an id prefix or a
    name standing for one): a word that begins with '-' is read as such a value at its place."""
    if not isinstance(parser, Parser):
        raise TypeError(f"{parser.prog}: ids beginning with '-' need a lockstep.cli.ids.Parser")
    action = parser.add_argument(*name_or_flags, type=str, **kwargs)
    if action.option_strings:
        parser.id_options.add(action)
    elif parser._positionals._group_actions == [action]:
        parser.id_positional = True
    else:
        raise ValueError(f"{parser.prog}: an id positional must be the command's first positional")
    return action
