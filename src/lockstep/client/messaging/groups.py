"""Groups as this device sees them (messaging.md §6.2, §7.3): finding one by name or id, creating one, and
adding or removing a member (a removal rotates the group session before the next send)."""

from __future__ import annotations

import logging
from typing import Any

from lockstep.client.errors import ClientError
from lockstep.client.messaging.contacts import Contacts
from lockstep.client.messaging.device import Device
from lockstep.client.messaging.outbox import Outbox
from lockstep.e2e.envelope import Kind
from lockstep.link import probation
from lockstep.link.wording import probation_text

log = logging.getLogger(__name__)


async def judge_change(device: Device, contacts: Contacts, event: dict[str, Any]) -> None:
    """A ``groups.changed`` event, judged here (linking.md §4.6): membership a device on probation
    added (or a group it made) is refused — this device shares no group key with those accounts, and
    does not send into a group made so — whatever the server allowed. A change by any other device
    lifts an earlier refusal of the account it names."""
    change, group_id = event.get("change", {}), str(event.get("group_id"))
    refused = set(device.store.refused_members.get(group_id, []))
    named = {str(change["account_id"])} if change.get("account_id") else set()
    changer = await contacts.get(account_id=str(change.get("by")), refresh=True)
    entry = changer.devices.find(str(change.get("by_device")))
    if probation.on_probation(entry, device.session.probation_now()) and change.get("kind") != "removed":
        members = {str(m["account_id"]) for m in event.get("members", [])}
        refused |= named or (members - {changer.account.account_id})
        log.warning("%s", probation_text("group_refused", name=entry.name if entry else "?"))
    else:
        refused -= named
    if refused:
        device.store.refused_members[group_id] = sorted(refused)
    else:
        device.store.refused_members.pop(group_id, None)
    device.store.save()


class Groups:
    def __init__(self, device: Device, contacts: Contacts, outbox: Outbox) -> None:
        self.device = device
        self.contacts = contacts
        self.outbox = outbox

    async def resolve(self, name: str, *, required: bool = True) -> str | None:
        """A group by ``#name``, exact name or id; with ``required=False`` a plain handle gives None."""
        if name.startswith("@"):
            return None
        wanted = name.removeprefix("#")
        names = self.device.store.group_names
        matches = [g for g, n in names.items() if wanted in (g, n)]
        if not matches and (required or name.startswith("#")):
            listed = await self.device.request("groups.list")
            matches = [g["group_id"] for g in listed["groups"] if g["group_id"] == wanted]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ClientError(f"several groups are called {wanted!r}; use the group id")
        if required or name.startswith("#"):
            raise ClientError(f"no group {wanted!r} among yours")
        return None

    async def create(self, name: str, handles: list[str]) -> str:
        members = await self.contacts.get_by_handles(handles)
        result = await self.device.request("groups.create", members=[c.account.account_id for c in members])
        group_id = str(result["group_id"])
        self.device.store.group_names[group_id] = name
        self.device.store.save()
        await self.outbox.send_group(group_id, Kind.GROUP_INFO, {"group_id": group_id, "name": name})
        return group_id

    async def add_member(self, group: str, handle: str) -> str:
        group_id = await self._required(group)
        contact = await self.contacts.get(handle=handle)
        await self.device.request("groups.add", group_id=group_id, account_id=contact.account.account_id)
        name = self.device.store.group_names.get(group_id, group_id)
        await self.outbox.send_group(group_id, Kind.GROUP_INFO, {"group_id": group_id, "name": name})
        return group_id

    async def remove_member(self, group: str, handle: str) -> str:
        group_id = await self._required(group)
        contact = await self.contacts.get(handle=handle)
        await self.device.request("groups.remove", group_id=group_id, account_id=contact.account.account_id)
        self.device.store.groups.forget_outbound(group_id)  # rotate now, whatever the next send sees
        self.device.store.save()
        return group_id

    async def _required(self, group: str) -> str:
        group_id = await self.resolve(group)
        assert group_id is not None  # resolve(required=True) raises instead of giving None
        return group_id
