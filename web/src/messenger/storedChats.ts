/**
 * The conversations kept in the store, unsealed lazily (issue 15): the page starts with one summary per
 * chat (its newest message and unread count, all the chat list shows) and unseals messages afterwards, one
 * whole conversation at a time into the in-memory index (./chatIndex.ts), the one the person opened first,
 * then the most recently active. Until a conversation is in the index, the view shows its newest page,
 * read by the store's [chat, ts] index: opening any chat costs one page, however long its history.
 *
 * The invariant the rest of the messenger relies on: a conversation is in the index whole or not at all,
 * and everything that changes messages (receiving, sending, importing history) runs in `Device.serial`
 * after `loadAll`, so it always sees whole conversations. Reading views (the chat list, search, a quoted
 * message) see what is unsealed so far and are redrawn as each conversation arrives.
 */
import type { ChatIndex } from "./chatIndex";
import type { MessageStore, Summary } from "./messageStore";
import type { ChatMessage } from "./model";

/** Messages of an unopened conversation read for the view before the whole conversation is unsealed. */
export const PREVIEW_ROWS = 60;

export class StoredChats {
  private readonly previews = new Map<string, readonly ChatMessage[]>();
  /** Conversations whose summary must be written with the next save (their messages changed). */
  private readonly stale = new Set<string>();
  /** The conversation the person opened: unsealed next. */
  private wanted: string | null = null;

  constructor(
    private readonly store: MessageStore,
    private readonly index: ChatIndex,
    /** Conversations with stored messages that are not in the index yet. */
    private readonly pending: Set<string>,
    private readonly summaries: Map<string, Summary<ChatMessage>>,
    /** Tells the page which messages it can now draw. */
    private readonly changed: (ids: Iterable<string>) => void,
  ) {}

  /** Unseals every stored conversation into the index, the wanted one first (run in `Device.serial`). */
  async loadAll(): Promise<void> {
    for (;;) {
      const next = this.next();
      if (next === undefined) return;
      const messages = await this.store.chatMessages<ChatMessage>(next);
      for (const message of messages) this.index.put(message);
      this.pending.delete(next);
      this.previews.delete(next);
      if (!this.summaries.has(next)) this.stale.add(next); // written by an older version: summarise it now
      this.changed(messages.map((m) => m.id));
    }
  }

  private next(): string | undefined {
    if (this.wanted !== null && this.pending.has(this.wanted)) return this.wanted;
    let newest: string | undefined;
    let newestTs = -Infinity;
    for (const conversation of this.pending) {
      const ts = this.summaries.get(conversation)?.last?.ts ?? -1;
      if (ts > newestTs) [newest, newestTs] = [conversation, ts];
    }
    return newest;
  }

  /** Whether a conversation's messages are all in the index (or it has none stored). */
  isLoaded(conversation: string): boolean {
    return !this.pending.has(conversation);
  }

  /** Every conversation with a message, in the index or still sealed. */
  conversations(): Set<string> {
    return new Set([...this.index.conversations(), ...this.pending]);
  }

  /** What the chat list shows of a conversation. */
  summaryOf(conversation: string): Summary<ChatMessage> {
    if (this.isLoaded(conversation))
      return { last: this.index.last(conversation), unread: this.index.unreadCount(conversation) };
    return this.summaries.get(conversation) ?? { unread: 0 };
  }

  /**
   * A conversation's messages in display order: the index's, or while it is still sealed its newest page
   * (empty until read; the page is told when it is) — and it is unsealed next.
   */
  messagesOf(conversation: string): readonly ChatMessage[] {
    if (this.isLoaded(conversation)) return this.index.messagesOf(conversation);
    this.wanted = conversation;
    let preview = this.previews.get(conversation);
    if (preview === undefined) {
      preview = [];
      this.previews.set(conversation, preview);
      void this.store.page<ChatMessage>(conversation, PREVIEW_ROWS).then(
        (newestFirst) => {
          if (this.isLoaded(conversation)) return; // the whole conversation came first
          this.previews.set(conversation, newestFirst.reverse());
          this.changed(newestFirst.map((m) => m.id));
        },
        () => this.previews.delete(conversation), // tried again on the next draw
      );
    }
    return preview;
  }

  /** Whether a save has summaries to write. */
  get hasStale(): boolean {
    return this.stale.size > 0;
  }

  /** A message of `conversation` changed: its summary is written with the next save. */
  touch(conversation: string): void {
    this.stale.add(conversation);
  }

  /** The summaries to write with a save (conversation → summary), forgotten here until `restore`. */
  takeSummaries(): Map<string, Summary<ChatMessage>> {
    const out = new Map<string, Summary<ChatMessage>>();
    for (const conversation of this.stale) {
      if (!this.isLoaded(conversation)) continue; // summarised once whole
      const summary = this.summaryOf(conversation);
      out.set(conversation, summary);
      this.summaries.set(conversation, summary);
      this.stale.delete(conversation);
    }
    return out;
  }

  /** A save failed: its summaries are written with the next one. */
  restore(conversations: Iterable<string>): void {
    for (const conversation of conversations) this.stale.add(conversation);
  }
}
