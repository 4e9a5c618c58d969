"""Group routing: who is in a group (account → role) and the group's version, bumped on each change."""

from __future__ import annotations

from lockstep.server.store.records import GroupRecord
from lockstep.server.store.sql import Row, Work, execute, query
from lockstep.server.store.strangers import introduce_group

# A group whose last member left has no member rows, hence the LEFT JOIN.
GROUP_BY_ID = (
    "SELECT g.group_id, g.created_by, g.version, m.account_id, m.role "
    "FROM chat_groups g LEFT JOIN group_members m ON m.group_id = g.group_id WHERE g.group_id = ?"
)
GROUPS_OF_ACCOUNT = (
    "SELECT g.group_id, g.created_by, g.version, m.account_id, m.role "
    "FROM chat_groups g LEFT JOIN group_members m ON m.group_id = g.group_id "
    "WHERE g.group_id IN (SELECT group_id FROM group_members WHERE account_id = ?)"
)


def _records(rows: list[Row]) -> list[GroupRecord]:
    groups: dict[str, tuple[str, int, dict[str, str]]] = {}
    for group_id, created_by, version, account_id, role in rows:
        members = groups.setdefault(group_id, (created_by, version, {}))[2]
        if account_id is not None:
            members[account_id] = role
    return [GroupRecord(group_id, *groups[group_id]) for group_id in sorted(groups)]


def group(group_id: str) -> Work[GroupRecord | None]:
    rows = yield from query(GROUP_BY_ID, group_id)
    records = _records(rows)
    return records[0] if records else None


def groups_of(account_id: str) -> Work[list[GroupRecord]]:
    rows = yield from query(GROUPS_OF_ACCOUNT, account_id)
    return _records(rows)


def create_group(group_id: str, creator: str, members: list[str], now: int) -> Work[GroupRecord]:
    yield from execute(
        "INSERT INTO chat_groups (group_id, created_by, created_at, version) VALUES (?, ?, ?, 1)",
        group_id,
        creator,
        now,
    )
    for account_id, role in [(creator, "admin"), *((member, "member") for member in members)]:
        yield from execute(
            "INSERT INTO group_members (group_id, account_id, role, added_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            group_id,
            account_id,
            role,
            now,
        )
    yield from introduce_group(group_id, creator, [creator, *members])
    record = yield from group(group_id)
    assert record is not None
    return record


def change_member(
    group_id: str, account_id: str, add: bool, now: int, by: str | None
) -> Work[GroupRecord | None]:
    """Add or remove one member and bump the group's version; None if nothing changed.

    ``by``: who adds; the group becomes known to the new member if it had written to them.
    """
    if add:
        changed = yield from execute(
            "INSERT INTO group_members (group_id, account_id, role, added_at) VALUES (?, ?, 'member', ?) "
            "ON CONFLICT DO NOTHING",
            group_id,
            account_id,
            now,
        )
    else:
        changed = yield from execute(
            "DELETE FROM group_members WHERE group_id = ? AND account_id = ?", group_id, account_id
        )
    if not changed:
        return None
    yield from execute("UPDATE chat_groups SET version = version + 1 WHERE group_id = ?", group_id)
    if add and by is not None:
        yield from introduce_group(group_id, by, [account_id])
    return (yield from group(group_id))
