"""Groups as the server must know them to route: an id, members, who administers (messaging.md §7.3).

Names and everything said in a group travel end to end; the server holds only account ids. Every
membership change bumps the group's version and is pushed as ``groups.changed`` to every device of
every member, the removed one included, so senders re-key (rotate Megolm) before their next message.
"""

from __future__ import annotations

import secrets
from typing import Any

from lockstep.link import probation
from lockstep.link.encoding import b64u_encode
from lockstep.server.api_accounts import require_device
from lockstep.server.connection import Connection, DeviceIdentity
from lockstep.server.errors import ApiError, ErrorCode
from lockstep.server.events import GroupChange, GroupChangeKind, GroupMember, GroupRole, GroupsChanged
from lockstep.server.frames import Request, bad_request
from lockstep.server.services import Services
from lockstep.server.store import GroupRecord

MAX_MEMBERS = 1024
"""WhatsApp's limit; with two devices each a key share takes about 45 requests (messaging.md §6.3)."""


async def _notify(services: Services, group: GroupRecord, accounts: set[str], change: GroupChange) -> None:
    devices = await services.store.devices_of(sorted(accounts))
    members = [GroupMember(account_id, GroupRole(role)) for account_id, role in sorted(group.members.items())]
    event = GroupsChanged(group.group_id, group.created_by, group.version, members, change)
    await services.hub.push(set().union(*devices.values()), event.to_json())


async def _member_group(services: Services, identity: DeviceIdentity, group_id: str) -> GroupRecord:
    group = await services.store.group(group_id)
    if group is None or identity.account_id not in group.members:
        raise ApiError(ErrorCode.GROUP_UNKNOWN, "no such group among yours")
    return group


async def _limit(services: Services, identity: DeviceIdentity) -> None:
    if not await services.limits.sends.allow(identity.device_id, services.clock()):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many group changes from this device; wait a minute")
    await _refuse_on_probation(services, identity)


async def _refuse_on_probation(services: Services, identity: DeviceIdentity) -> None:
    """A companion on probation changes no group (linking.md §4.6). Members' devices refuse such a change
    themselves too: this only spares an honest server's groups the change they would refuse."""
    record = await services.store.account(identity.account_id)
    entry = record.devices().find(identity.device_id) if record is not None else None
    if probation.on_probation(entry, services.clock()):
        until = probation.until_text(entry.probation_until or 0) if entry else ""
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"this device was linked from another network and cannot create or change groups until {until}"
            " (your phone can end this early)",
        )


async def create(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_device(connection)
    await _limit(services, identity)
    members = request.fields.get("members", [])
    if (
        not isinstance(members, list)
        or len(members) >= MAX_MEMBERS
        or not all(isinstance(m, str) and len(m) <= 64 for m in members)
    ):
        raise bad_request(f"'members' must list fewer than {MAX_MEMBERS} account ids")
    for account_id in set(members):
        if await services.store.account(account_id) is None:
            raise ApiError(ErrorCode.ACCOUNT_UNKNOWN, "a member account does not exist")
    group_id = b64u_encode(secrets.token_bytes(16))
    group = await services.store.create_group(group_id, identity.account_id, members, services.clock())
    await _notify(
        services,
        group,
        set(group.members),
        GroupChange(GroupChangeKind.CREATED, identity.account_id, identity.device_id),
    )
    return group.to_json()


async def _change(
    services: Services, connection: Connection, request: Request, *, add: bool
) -> dict[str, Any]:
    identity = require_device(connection)
    await _limit(services, identity)
    group = await _member_group(services, identity, request.text("group_id", max_length=64))
    account_id = request.text("account_id", max_length=64)
    leaving = not add and account_id == identity.account_id
    if group.members.get(identity.account_id) != GroupRole.ADMIN and not leaving:
        raise ApiError(ErrorCode.FORBIDDEN, "only a group admin can add or remove members")
    if add and await services.store.account(account_id) is None:
        raise ApiError(ErrorCode.ACCOUNT_UNKNOWN, "no such account")
    if add and len(group.members) >= MAX_MEMBERS:
        raise ApiError(ErrorCode.FORBIDDEN, f"a group has at most {MAX_MEMBERS} members")
    if not add and group.members.get(account_id) == GroupRole.ADMIN and not leaving:
        raise ApiError(ErrorCode.FORBIDDEN, "an admin cannot be removed by others")
    changed = await services.store.change_member(
        group.group_id, account_id, add=add, now=services.clock(), by=identity.account_id
    )
    if changed is None:
        return group.to_json()
    kind = GroupChangeKind.ADDED if add else GroupChangeKind.REMOVED
    change = GroupChange(kind, identity.account_id, identity.device_id, account_id)
    await _notify(services, changed, set(changed.members) | {account_id}, change)
    return changed.to_json()


async def add(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    return await _change(services, connection, request, add=True)


async def remove(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    return await _change(services, connection, request, add=False)


async def get(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    """The group, and which member devices can receive (published E2E keys): senders compare this with
    the device lists they verified, so a linked or unlinked device makes them refresh and re-key."""
    identity = require_device(connection)
    group = await _member_group(services, identity, request.text("group_id", max_length=64))
    devices = await services.store.devices_of(sorted(group.members), with_keys=True)
    return {**group.to_json(), "devices": {a: sorted(d) for a, d in devices.items()}}


async def list_groups(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_device(connection)
    return {"groups": [g.to_json() for g in await services.store.groups_of(identity.account_id)]}
