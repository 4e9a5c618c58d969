/**
 * The messages a device holds, indexed in memory by conversation: each conversation's messages in order
 * (time, then id), its unread incoming messages, and its newest. Kept up to date one message at a time,
 * so a new message, a tick or a read flag costs the same whatever the length of the chat: the chat list
 * and the open conversation read from here instead of regrouping every stored message (issue 15).
 * Pure: no DOM, no storage.
 */
import type { ChatMessage } from "./model";

/** Messages in display order: by time, then by id (both sides agree on ties). */
export function before(a: ChatMessage, b: ChatMessage): boolean {
  return a.ts < b.ts || (a.ts === b.ts && a.id < b.id);
}

/** How many messages of `list` (in display order) are at or before the position (ts, id). */
export function countUpTo(list: readonly ChatMessage[], ts: number, id: string): number {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    const m = list[mid] as ChatMessage;
    if (m.ts < ts || (m.ts === ts && m.id <= id)) low = mid + 1;
    else high = mid;
  }
  return low;
}

function isUnread(message: ChatMessage): boolean {
  return !message.outgoing && message.read === false;
}

interface Chat {
  /** In display order; appending is the common case (a binary search places the rest). */
  messages: ChatMessage[];
  unread: Set<string>;
}

export class ChatIndex {
  private readonly byId = new Map<string, ChatMessage>();
  private readonly chats = new Map<string, Chat>();

  get size(): number {
    return this.byId.size;
  }

  get(id: string): ChatMessage | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  values(): IterableIterator<ChatMessage> {
    return this.byId.values();
  }

  /** Adds a message, or takes note that a stored one changed (same object or a new one with its id). */
  put(message: ChatMessage): void {
    const known = this.byId.get(message.id);
    const chat = this.chat(message.conversation);
    if (known === undefined) {
      this.byId.set(message.id, message);
      chat.messages.splice(this.position(chat.messages, message), 0, message);
    } else if (known !== message) {
      this.byId.set(message.id, message);
      const list = this.chat(known.conversation).messages;
      const at = this.indexOf(list, known);
      if (at >= 0) list[at] = message; // a message never changes conversation or time
    }
    if (isUnread(message)) chat.unread.add(message.id);
    else chat.unread.delete(message.id);
  }

  /** A conversation's messages in display order (the index's own array: read, never change it). */
  messagesOf(conversation: string): readonly ChatMessage[] {
    return this.chats.get(conversation)?.messages ?? [];
  }

  /** Where `message` is (or would be) in its conversation's order. */
  indexOf(list: readonly ChatMessage[], message: ChatMessage): number {
    const at = this.position(list, message);
    return list[at]?.id === message.id ? at : -1;
  }

  unreadCount(conversation: string): number {
    return this.chats.get(conversation)?.unread.size ?? 0;
  }

  /** The unread incoming messages of a conversation (in no particular order). */
  unread(conversation: string): ChatMessage[] {
    const ids = this.chats.get(conversation)?.unread ?? new Set<string>();
    return [...ids].map((id) => this.byId.get(id)).filter((m): m is ChatMessage => m !== undefined);
  }

  last(conversation: string): ChatMessage | undefined {
    const list = this.chats.get(conversation)?.messages;
    return list?.[list.length - 1];
  }

  conversations(): IterableIterator<string> {
    return this.chats.keys();
  }

  private chat(conversation: string): Chat {
    let chat = this.chats.get(conversation);
    if (!chat) {
      chat = { messages: [], unread: new Set() };
      this.chats.set(conversation, chat);
    }
    return chat;
  }

  /** The first index whose message does not come before `message` (binary search from the end's side). */
  private position(list: readonly ChatMessage[], message: ChatMessage): number {
    const last = list[list.length - 1];
    if (last === undefined || before(last, message)) return list.length;
    let low = 0;
    let high = list.length - 1;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (before(list[mid] as ChatMessage, message)) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}
