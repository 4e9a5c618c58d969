"""Who has written to whom (``known_peers``), and what strangers may queue for a device (SECURITY.md,
"Server, network and disk"): operations the queue and group operations use inside their transactions.

A device's account "knows" a conversation (a direct chat with an account, or a group) once it wrote
into it. Bytes queued for the device from conversations it does not know are bounded per sender and
for all strangers together. The checks run while the device's sequence row is locked
(``queues.enqueue``), so concurrent sends to one device on several instances see each other's bytes.
"""

from __future__ import annotations

from lockstep.server.errors import StrangerLimit, StrangerLimitDetails
from lockstep.server.store.records import Audience, Delivery, StrangerLimits
from lockstep.server.store.sql import Work, chunks, execute, marks, query


def _stranger_bytes(count: int) -> str:
    """Bytes waiting in each of ``count`` devices' queues from conversations its account never wrote
    to, and the share of one sender among them (payloads are ASCII JSON: characters are bytes); a
    device with none has no row. One statement for many devices: a large group's later message would
    otherwise cost a query per member device that never wrote into it (docs/benchmarks.md)."""
    return f"""
SELECT q.device_id,
       CAST(coalesce(sum(length(q.payload)), 0) AS BIGINT),
       CAST(coalesce(sum(CASE WHEN q.sender_account = ? THEN length(q.payload) ELSE 0 END), 0) AS BIGINT)
FROM message_queue q JOIN devices d ON d.device_id = q.device_id
WHERE q.device_id IN ({marks(count)}) AND q.sender_account != d.account_id
  AND NOT EXISTS (SELECT 1 FROM known_peers k
                  WHERE k.account_id = d.account_id AND k.peer_id = coalesce(q.group_id, q.sender_account))
GROUP BY q.device_id
"""  # noqa: S608 - only placeholders


class StrangerCheck:
    """Refuses a payload that would take a device past what strangers may queue for it."""

    def __init__(
        self, delivery: Delivery, limits: StrangerLimits, owners: dict[str, str], strangers: set[str]
    ) -> None:
        self._delivery, self._limits = delivery, limits
        self._owners = owners
        self._strangers = strangers
        """The accounts among the owners that never wrote into this conversation."""

    @classmethod
    def load(
        cls, delivery: Delivery, limits: StrangerLimits, known: Audience | None = None
    ) -> Work[StrangerCheck]:
        """Read whose the target devices are and which of their accounts never wrote into the
        conversation, unless the send's ``known`` audience says already."""
        if known is not None:
            owners, knows = known.owners(), known.knows
        else:
            owners = yield from _owners([device_id for device_id, _ in delivery.payloads])
            knows = yield from _knowing(delivery.peer, sorted(set(owners.values())))
        return cls(delivery, limits, owners, set(owners.values()) - knows - {delivery.sender_account})

    def stranger_devices(self, device_ids: list[str]) -> list[str]:
        """Those of ``device_ids`` whose account never wrote into this conversation."""
        return [device_id for device_id in device_ids if self._owners.get(device_id) in self._strangers]

    def admit(self, sizes: dict[str, int]) -> Work[None]:
        """Refuse (:class:`StrangerLimit`) if a stranger device's new bytes (``sizes``: device id → bytes
        this send adds, for devices :meth:`stranger_devices` named) would pass one of its limits; the
        first such device in id order is named. Devices are read a statement's worth at a time."""
        devices = sorted(sizes)
        used: dict[str, tuple[int, int]] = {}
        for part in chunks(devices):
            rows = yield from query(_stranger_bytes(len(part)), self._delivery.sender_account, *part)
            used.update((device_id, (int(all_bytes), int(mine))) for device_id, all_bytes, mine in rows)
        for device_id in devices:
            all_bytes, sender_bytes = used.get(device_id, (0, 0))
            size = sizes[device_id]
            for queued, limit, sender_share in (
                (sender_bytes, self._limits.per_sender_bytes, True),
                (all_bytes, self._limits.all_strangers_bytes, False),
            ):
                if queued + size > limit:
                    owner = self._owners[device_id]
                    raise StrangerLimit(StrangerLimitDetails(owner, sender_share, limit))


def _knowing(peer: str, accounts: list[str]) -> Work[frozenset[str]]:
    """Those of ``accounts`` that wrote into the conversation ``peer`` (an account or a group)."""
    if not accounts:
        return frozenset()
    rows = yield from query(
        "SELECT account_id FROM known_peers "  # noqa: S608 - only placeholders
        f"WHERE peer_id = ? AND account_id IN ({marks(len(accounts))})",
        peer,
        *accounts,
    )
    return frozenset(account_id for (account_id,) in rows)


def _owners(device_ids: list[str]) -> Work[dict[str, str]]:
    if not device_ids:
        return {}
    rows = yield from query(
        f"SELECT device_id, account_id FROM devices WHERE device_id IN ({marks(len(device_ids))})",  # noqa: S608
        *device_ids,
    )
    return {device_id: account_id for device_id, account_id in rows}


def introduce(delivery: Delivery) -> Work[None]:
    """The sender has now written into this conversation (a direct chat or a group)."""
    peer = delivery.group_id or delivery.to_account
    if delivery.introduces and peer is not None and peer != delivery.sender_account:
        yield from execute(
            "INSERT INTO known_peers (account_id, peer_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            delivery.sender_account,
            peer,
        )


def introduce_group(group_id: str, by: str, accounts: list[str]) -> Work[None]:
    """A group is known to the account that made it, and to members added by someone they wrote to."""
    for account in accounts:
        yield from execute(
            "INSERT INTO known_peers (account_id, peer_id) SELECT CAST(? AS TEXT), CAST(? AS TEXT) "
            "WHERE CAST(? AS TEXT) = CAST(? AS TEXT) OR EXISTS "
            "(SELECT 1 FROM known_peers WHERE account_id = ? AND peer_id = ?) ON CONFLICT DO NOTHING",
            account,
            group_id,
            account,
            by,
            account,
            by,
        )
