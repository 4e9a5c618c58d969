"""A device's own store of messages, read as a person sees it (docs/protocol/messaging.md §15).

Messages and actions are kept as history records (``{"id", "kind", "conversation", "sender", "ts",
"server_time"?, "body"}``, §12 and §15.6). A :class:`Timeline` indexes them once and answers what a
message shows after its reactions, edits and deletes (:func:`lockstep.e2e.actions.outcome`), what a
reply quotes, and searches them (§15.7). :func:`forget_deleted` drops what a device must not keep of a
message deleted for everyone. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lockstep.e2e.actions import (
    Action,
    Delete,
    Outcome,
    Target,
    action_from_record,
    outcome,
    refusal,
    target_from_record,
)
from lockstep.e2e.errors import ActionError

DELETED_TEXT = "This message was deleted"
UNAVAILABLE_QUOTE = "Original message not available"


@dataclass(frozen=True, slots=True)
class Shown:
    """A text or media message as it is shown now."""

    record: Mapping[str, Any]
    outcome: Outcome

    @property
    def message_id(self) -> str:
        return str(self.record["id"])

    @property
    def conversation(self) -> str:
        return str(self.record["conversation"])

    @property
    def text(self) -> str | None:
        """The text or caption after edits; None when deleted or there is none."""
        if self.outcome.deleted:
            return None
        if self.outcome.text is not None:
            return self.outcome.text
        body = self.record.get("body") or {}
        value = body.get("text", body.get("caption"))
        return value if isinstance(value, str) else None

    @property
    def file_name(self) -> str | None:
        media = (self.record.get("body") or {}).get("media")
        name = media.get("name") if isinstance(media, dict) and not self.outcome.deleted else None
        return name if isinstance(name, str) else None

    @property
    def summary(self) -> str:
        """One line for a quote or a search hit."""
        if self.outcome.deleted:
            return DELETED_TEXT
        parts = [p for p in (self.file_name and f"[{self.file_name}]", self.text) if p]
        return " ".join(parts)


class Timeline:
    def __init__(self, messages: Iterable[Mapping[str, Any]], actions: Iterable[Mapping[str, Any]]) -> None:
        self._targets: dict[str, tuple[Target, Mapping[str, Any]]] = {}
        for record in messages:
            target = target_from_record(record)
            if target is not None:
                self._targets[target.message_id] = (target, record)
        self._actions: dict[str, list[Action]] = {}
        for record in actions:
            try:
                action = action_from_record(record)
            except ActionError:
                continue  # kept by an older version, or damaged: it changes nothing
            self._actions.setdefault(action.target, []).append(action)

    def shown(self, message_id: str) -> Shown | None:
        found = self._targets.get(message_id)
        if found is None:
            return None
        target, record = found
        return Shown(record, outcome(target, self._actions.get(message_id, ())))

    def applies(self, action: Action) -> bool | None:
        """Whether ``action`` changes its target (§15.3); None while the target is not here."""
        found = self._targets.get(action.target)
        return None if found is None else refusal(found[0], action) is None

    def quote(self, reply_to: str, conversation: str) -> Shown | None:
        """What a reply in ``conversation`` quotes: only a message of that same conversation (§15.1)."""
        shown = self.shown(reply_to)
        return shown if shown is not None and shown.conversation == conversation else None

    def search(self, query: str, limit: int = 50) -> list[Shown]:
        """Messages whose text, caption or file name as shown contains ``query`` (case-insensitive),
        newest first; deleted messages never match (§15.7)."""
        needle = query.casefold()
        if not needle:
            return []
        hits = []
        newest_first = sorted(self._targets.values(), key=lambda f: (f[0].ts, f[0].message_id), reverse=True)
        for target, record in newest_first:
            shown = Shown(record, outcome(target, self._actions.get(target.message_id, ())))
            if not shown.outcome.deleted and needle in shown.summary.casefold():
                hits.append(shown)
                if len(hits) >= limit:
                    break
        return hits


def forget_deleted(messages: list[dict[str, Any]], actions: list[dict[str, Any]]) -> set[str]:
    """Apply §15.3's last rule in place: for every message deleted for everyone, empty its body and
    drop every action naming it except its deletes (so later actions still find it and stay ignored).
    Returns the ids of the messages whose content this call dropped (not those emptied before), so a
    store writes, and wipes from its log, only what changed."""
    targets = {t.message_id: (t, r) for r in messages if (t := target_from_record(r)) is not None}
    deleted: set[str] = set()
    emptied: set[str] = set()
    for record in actions:
        try:
            action = action_from_record(record)
        except ActionError:
            continue
        found = targets.get(action.target)
        if isinstance(action.change, Delete) and found is not None and refusal(found[0], action) is None:
            deleted.add(action.target)
            if found[1].get("body") != {}:
                emptied.add(action.target)
                found[1]["body"] = {}
    actions[:] = [
        r
        for r in actions
        if not (
            isinstance(r.get("body"), dict)
            and r["body"].get("target") in deleted
            and r.get("kind") != "delete"
        )
    ]
    return emptied
