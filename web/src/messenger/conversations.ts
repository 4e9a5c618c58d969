/**
 * The conversations as the page shows them: the chats of this device (direct and group), each with its
 * title, last message and unread count, and the messages of one. Read-only views over what the other
 * parts keep, except `startDirect`, which verifies a contact before its chat is listed.
 */
import type { Contacts } from "./contacts";
import type { Device } from "./device";
import { directConversation, parseConversation } from "./envelope";
import type { Groups } from "./groups";
import type { ChatMessage, Conversation } from "./model";

export class Conversations {
  constructor(
    private readonly device: Device,
    private readonly contacts: Contacts,
    private readonly groups: Groups,
  ) {}

  /** Who a conversation is with: the other account of a direct chat, or a group. */
  info(conversation: string): { peer?: string; groupId?: string } {
    return parseConversation(conversation, this.device.accountId);
  }

  /** The other accounts a message to `conversation` goes to (as this device knows them now). */
  recipientsOf(conversation: string): string[] {
    const self = this.device.accountId;
    const info = this.info(conversation);
    if (info.groupId) return this.groups.members(info.groupId).filter((m) => m !== self);
    return info.peer && info.peer !== self ? [info.peer] : [];
  }

  /** Opens (or finds) the 1:1 chat with a handle; the contact is verified first. */
  startDirect(handle: string): Promise<string> {
    const device = this.device;
    return device.serial(async () => {
      const contact = await this.contacts.get({ handle }, true);
      const conversation = directConversation(device.accountId, contact.account.id);
      device.ensureChat(conversation);
      await device.save();
      device.changed();
      return conversation;
    });
  }

  /** Every chat, the most recently active first: what the chat list shows (as many steps as chats). */
  list(): Conversation[] {
    const chats = this.device.chats;
    const ids = new Set([...this.device.state.chats, ...chats.conversations()]);
    const out: Conversation[] = [];
    for (const id of ids) {
      const info = this.info(id);
      const { last, unread } = chats.summaryOf(id);
      const group = info.groupId ? this.groups.find(info.groupId) : undefined;
      const title = info.groupId
        ? group?.name || "Group"
        : info.peer
          ? (this.contacts.titleOf(info.peer) ?? "Contact")
          : id;
      out.push({
        id,
        title,
        kind: info.groupId ? "group" : "direct",
        peer: info.peer,
        groupId: info.groupId,
        left: group?.left,
        last,
        unread,
        updated: last?.ts ?? 0,
      });
    }
    return out.sort((a, b) => b.updated - a.updated);
  }

  /** A conversation's messages in display order (the index's own array, kept up to date: never change it),
   * or while it is still sealed its newest page (./storedChats.ts). */
  messagesOf(conversation: string): readonly ChatMessage[] {
    return this.device.chats.messagesOf(conversation);
  }
}
