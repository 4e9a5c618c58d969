/**
 * Groups as this device knows them (messaging.md §6.2, §7.3), the twin of client/messaging/groups.py: their
 * members as the server last said (`note` keeps only newer versions), their names (which travel only end to
 * end, in `group-info` messages), and creating a group and adding or removing a member. Telling members a
 * group's name is the outbox's job (`Outbox.sendGroupInfo`).
 */
import { findDevice } from "../link/deviceList";
import { judgedNow, onProbation } from "../link/probation";
import type { GroupsChanged } from "../net/events";
import type { Contacts } from "./contacts";
import type { Device, GroupInfo } from "./device";
import { groupConversation } from "./envelope";
import { MessengerError } from "./errors";
import type { HistoryGroup } from "./history";

/** The longest group name kept (longer ones are cut). */
export const MAX_GROUP_NAME = 100;

export class Groups {
  constructor(
    private readonly device: Device,
    private readonly contacts: Contacts,
  ) {}

  /** What this device knows of a group (an empty record for one it never heard of). */
  get(groupId: string): GroupInfo {
    const groups = this.device.state.groups;
    let group = groups[groupId];
    if (!group) {
      group = { name: "", members: [], left: false, version: 0 };
      groups[groupId] = group;
    }
    return group;
  }

  /** A group known here, or undefined (never creates a record). */
  find(groupId: string): GroupInfo | undefined {
    return this.device.state.groups[groupId];
  }

  members(groupId: string): string[] {
    return this.device.state.groups[groupId]?.members ?? [];
  }

  /** The named groups, as a history bundle carries them. */
  names(): HistoryGroup[] {
    return Object.entries(this.device.state.groups)
      .filter(([, g]) => g.name)
      .map(([groupId, g]) => ({ group_id: groupId, name: g.name }));
  }

  setName(groupId: string, name: string): void {
    this.get(groupId).name = name.slice(0, MAX_GROUP_NAME);
    this.device.ensureChat(groupConversation(groupId));
  }

  /** Takes the server's view of a group (`groups.get`, `groups.changed`…) unless it is older than ours. */
  note(value: Record<string, unknown>): void {
    const groupId = String(value.group_id);
    const group = this.get(groupId);
    const version = Number(value.version ?? 0);
    if (version >= group.version && Array.isArray(value.members)) {
      group.version = version;
      group.members = (value.members as { account_id: string }[]).map((m) => m.account_id);
      group.left = !group.members.includes(this.device.accountId);
    }
    this.device.ensureChat(groupConversation(groupId));
  }

  /**
   * What the server says of this account's groups now (`groups.list`): their members, and which groups it
   * is no longer in. `groups.changed` reaches only live sockets, so a device that was away (a group made,
   * a removal and re-adding) or that got its groups from a history transfer learns them here.
   */
  async refresh(): Promise<void> {
    const listed = ((await this.device.request("groups.list")).groups ?? []) as Record<string, unknown>[];
    const current = new Set<string>();
    for (const group of listed) {
      this.note(group);
      current.add(String(group.group_id));
    }
    for (const [groupId, group] of Object.entries(this.device.state.groups))
      if (!current.has(groupId)) group.left = true;
    await this.contacts.learn(Object.values(this.device.state.groups).flatMap((g) => g.members));
    await this.device.save();
    this.device.changed();
  }

  async onChanged(event: GroupsChanged): Promise<void> {
    await this.judge(event);
    this.note(event);
    const { change } = event;
    if (change.kind === "removed" && change.account_id === this.device.accountId)
      this.device.megolm.forgetOutbound(event.group_id);
    await this.contacts.learn(this.get(event.group_id).members);
    await this.device.save();
    this.device.changed();
  }

  /**
   * A change judged here (linking.md §4.6), the twin of client/messaging/groups.py `judge_change`: the
   * accounts a device on probation added (or every other member of a group it made) are refused, whatever
   * the server allowed; a change by any other device lifts an earlier refusal of the account it names.
   */
  private async judge(event: GroupsChanged): Promise<void> {
    const { change } = event;
    const group = this.get(event.group_id);
    const refused = new Set(group.refused ?? []);
    const named = change.account_id === undefined ? [] : [change.account_id];
    const changer = await this.contacts.get({ accountId: change.by }, true);
    const entry = findDevice(changer.list, change.by_device);
    if (change.kind !== "removed" && onProbation(entry, judgedNow(this.device.now(), Date.now()))) {
      const others = event.members.map((m) => m.account_id).filter((a) => a !== change.by);
      for (const accountId of named.length ? named : others) refused.add(accountId);
    } else for (const accountId of named) refused.delete(accountId);
    group.refused = [...refused].sort();
  }

  /** The members this device shares its group key with: all but those it refused (§4.6). Throws for a
   * group made by a device on probation. */
  trusted(groupId: string, members: string[]): string[] {
    const refused = new Set(this.find(groupId)?.refused ?? []);
    if (refused.has(this.device.accountId))
      throw new MessengerError("This group was made by a device on probation: this device refuses it.");
    return members.filter((m) => !refused.has(m));
  }

  /** Creates a group of this account and the accounts of `handles` (each verified first, 128 to a look-up);
   * returns its id. */
  async create(name: string, handles: string[]): Promise<string> {
    const members = (await this.contacts.getByHandles(handles)).map((contact) => contact.account.id);
    const group = await this.device.request("groups.create", { members });
    const groupId = String(group.group_id);
    this.note(group);
    this.get(groupId).name = name.slice(0, MAX_GROUP_NAME);
    await this.device.save();
    return groupId;
  }

  async add(groupId: string, handle: string): Promise<void> {
    const contact = await this.contacts.get({ handle }, true);
    this.note(await this.device.request("groups.add", { group_id: groupId, account_id: contact.account.id }));
  }

  async remove(groupId: string, accountId: string): Promise<void> {
    this.note(await this.device.request("groups.remove", { group_id: groupId, account_id: accountId }));
    this.device.megolm.forgetOutbound(groupId); // rotate now, whatever the next send sees
    await this.device.save();
  }
}
