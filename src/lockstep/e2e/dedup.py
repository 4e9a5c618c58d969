"""Dropping duplicates: message ids already handled, remembered in a bounded first-in-first-out set.

A device may see a message twice (the server re-sends what was not acknowledged after a crash, a sender
retries a send whose reply was lost). Olm message keys work once, so duplicates are dropped by message id
*before* decrypting.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_REMEMBERED = 5_000


class SeenMessages:
    def __init__(self, ids: list[str] | None = None, limit: int = MAX_REMEMBERED) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict.fromkeys(ids or ())
        self._limit = limit
        self._added: list[str] = []

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        self._added.append(message_id)
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    @property
    def limit(self) -> int:
        return self._limit

    def take_added(self) -> list[str]:
        """Ids added since the last call, oldest first (a store writes these rather than all of them)."""
        added, self._added = self._added, []
        return added

    def to_json(self) -> list[str]:
        return list(self._ids)
