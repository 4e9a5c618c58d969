/**
 * Replies, reactions, edits and deletes in the browser messenger (messaging.md §15), the twin of
 * client/messaging/actions.py. Every reaction, edit and delete is kept on the message it names (as the
 * history record Python keeps), or among the state's pending ones until that message arrives; what the
 * message shows is then recomputed from the whole set (./actions.ts `outcome`), so every device shows the
 * same thing whatever order copies arrive in. A delete drops the message's words and file at once.
 * One made while there is no connection shows at once and waits in the state's `unsentActions`, to go out
 * (under its id, stamped anew) once the socket is back, as a text written offline does (./outbox.ts).
 * Search (§15.7) reads only what this device holds.
 */
import type { Device } from "./device";
import {
  type Action,
  type Change,
  type Target,
  TARGETED,
  actionFromRecord,
  actionRecord,
  outcome,
  refusal,
} from "./actions";
import { type MessageEnvelope, newMessageId, parseConversation } from "./envelope";
import { MessengerError, describe } from "./errors";
import { SocketClosed } from "../net/socket";
import type { ChatMessage } from "./model";
import type { Outbox } from "./outbox";

/** Actions kept while their message has not arrived (a history bundle or another device overtook it). */
const MAX_PENDING = 500;
/** At most this many actions are kept on one message (each account's latest reactions matter). */
const MAX_ON_MESSAGE = 200;

export const DELETED_TEXT = "This message was deleted";

type ActionRecord = Record<string, unknown>;

/** The history record of a reaction, edit or delete that arrived in `envelope`, queued at `serverTime`. */
export function recordOf(envelope: MessageEnvelope, serverTime: number | null): ActionRecord {
  return {
    id: envelope.id,
    kind: envelope.kind,
    conversation: envelope.conversation,
    sender: { account_id: envelope.senderAccount, device_id: envelope.senderDevice },
    ts: envelope.ts,
    ...(serverTime === null ? {} : { server_time: serverTime }),
    body: envelope.body,
  };
}

function targetOf(message: ChatMessage): Target | null {
  if (message.kind !== "text" && message.kind !== "media") return null;
  return { id: message.id, conversation: message.conversation, senderAccount: message.senderAccount, ts: message.ts };
}

export class MessageChanges {
  /** Message id → the replies quoting it, so they are redrawn when it changes (built on first use). */
  private quotedBy: Map<string, Set<string>> | null = null;

  constructor(
    private readonly device: Device,
    private readonly outbox: Outbox,
  ) {}

  private replies(id: string): Set<string> {
    if (!this.quotedBy) {
      this.quotedBy = new Map();
      for (const message of this.device.messages.values()) this.noteReply(message);
    }
    return this.quotedBy.get(id) ?? new Set();
  }

  private noteReply(message: ChatMessage): void {
    if (!message.replyTo || !this.quotedBy) return;
    const replies = this.quotedBy.get(message.replyTo) ?? new Set<string>();
    replies.add(message.id);
    this.quotedBy.set(message.replyTo, replies);
  }

  /** The replies quoting `message` show it as it is now. */
  private redrawReplies(message: ChatMessage): void {
    for (const id of this.replies(message.id)) this.device.touch(id);
  }

  /** A reaction, edit or delete (received, sent here, or from a history bundle); throws ActionError if
   * malformed. Returns the message it changed, if that message is here. */
  keep(record: ActionRecord): ChatMessage | null {
    const action = actionFromRecord(record);
    const message = this.device.messages.get(action.change.target);
    if (!message || !targetOf(message)) {
      const pending = (this.device.state.pendingActions ??= []);
      if (!pending.some((r) => r.id === action.id)) pending.push(record);
      pending.splice(0, Math.max(0, pending.length - MAX_PENDING));
      return null;
    }
    this.attach(message, [record]);
    return message;
  }

  /** A text or media message was stored (received, sent, or from history): the actions that overtook it
   * apply now, and replies that arrived before it quote it. */
  adopt(message: ChatMessage): void {
    this.noteReply(message);
    this.redrawReplies(message);
    const pending = this.device.state.pendingActions;
    if (!pending?.length) return;
    const mine = pending.filter((r) => (r.body as { target?: unknown } | undefined)?.target === message.id);
    if (!mine.length) return;
    this.device.state.pendingActions = pending.filter((r) => !mine.includes(r));
    this.attach(message, mine);
  }

  private attach(message: ChatMessage, records: ActionRecord[]): void {
    const kept = [...(message.actions ?? [])];
    for (const record of records) {
      // The same action again (one sent after it waited offline, now with its real stamps) replaces it.
      const at = kept.findIndex((r) => r.id === record.id);
      if (at >= 0) kept[at] = record;
      else kept.push(record);
    }
    message.actions = kept.slice(-MAX_ON_MESSAGE);
    this.apply(message);
    this.device.put(message);
    this.redrawReplies(message);
  }

  /** What `message` shows after its actions (§15.3). */
  private apply(message: ChatMessage): void {
    const target = targetOf(message);
    if (!target) return;
    const actions: Action[] = [];
    for (const record of message.actions ?? []) {
      try {
        actions.push(actionFromRecord(record));
      } catch {
        // kept by an older version, or damaged: it changes nothing
      }
    }
    const shown = outcome(target, actions);
    if (shown.deleted) {
      // Nothing of a message deleted for everyone stays here: not its words, not its file, not its edits.
      message.deleted = true;
      message.text = message.media = message.voice = message.replyTo = undefined;
      message.reactions = {};
      message.actions = (message.actions ?? []).filter((r) => r.kind === "delete");
      message.edited = false;
      return;
    }
    if (shown.text !== null) {
      message.text = shown.text; // a valid edit stays valid: the original text is never needed again
      message.edited = true;
    }
    message.reactions = shown.reactions;
  }

  // --- from this device -------------------------------------------------------------------------------
  react(messageId: string, emoji: string): Promise<void> {
    return this.send(messageId, (target) => ({ kind: "reaction", target, emoji }));
  }

  edit(messageId: string, text: string): Promise<void> {
    return this.send(messageId, (target) => ({ kind: "edit", target, text }));
  }

  /** Delete for everyone. */
  remove(messageId: string): Promise<void> {
    return this.send(messageId, (target) => ({ kind: "delete", target }));
  }

  /** Whether this device would send an edit (or a delete) of `message` now (the menu offers it only then). */
  can(kind: "edit" | "delete", message: ChatMessage): boolean {
    const target = targetOf(message);
    if (!target || message.deleted || message.status === "sending" || message.status === "failed") return false;
    const now = this.device.now();
    const change: Change = kind === "edit" ? { kind, target: message.id, text: "x" } : { kind, target: message.id };
    const planned = { id: "", conversation: target.conversation, senderAccount: this.device.accountId, ts: now };
    return refusal(target, { ...planned, serverTime: now, change }) === null;
  }

  private send(messageId: string, change: (target: string) => Change): Promise<void> {
    const device = this.device;
    return device.serial(async () => {
      const message = device.messages.get(messageId);
      const target = message ? targetOf(message) : null;
      if (!message || !target) throw new MessengerError("That message is not on this device.");
      if (message.deleted) throw new MessengerError("That message was deleted.");
      const now = device.now();
      const planned: Action = {
        id: newMessageId(),
        conversation: message.conversation,
        senderAccount: device.accountId,
        ts: now,
        serverTime: now,
        change: change(message.id),
      };
      const reason = refusal(target, planned);
      if (reason !== null) throw new MessengerError(inWords(planned.change, reason));
      const record = actionRecord(planned, device.deviceId);
      try {
        await this.deliver(record);
      } catch (error) {
        if (!(error instanceof SocketClosed || !device.connected)) throw error;
        // No connection: shown here now, sent once it is back (resendUnsent), as the banner promises.
        this.keep(record);
        (device.state.unsentActions ??= []).push(record);
      }
      await device.save();
      device.changed();
    });
  }

  /** Sends a reaction, edit or delete (its history record) and keeps it with the stamps it went out with. */
  private async deliver(record: ActionRecord): Promise<void> {
    const device = this.device;
    const id = String(record.id);
    const info = parseConversation(String(record.conversation), device.accountId);
    const body = record.body as Record<string, unknown>;
    const serverTime = await this.outbox.sendInto(info, String(record.kind), body, id);
    this.keep({ ...record, ts: device.stampOf(id) ?? device.now(), server_time: serverTime });
  }

  /** After a reconnect: the reactions, edits and deletes made while offline, in the order they were made.
   * One that receivers would now refuse (an edit after 15 minutes) is dropped, and the person told. */
  async resendUnsent(): Promise<void> {
    const device = this.device;
    const unsent = device.state.unsentActions ?? [];
    while (unsent.length) {
      const record = unsent[0] as ActionRecord;
      const action = actionFromRecord(record);
      const message = device.messages.get(action.change.target);
      // (deleted here already, perhaps by this very delete: receivers still need it)
      const target = message ? targetOf(message) : null;
      const now = device.now();
      const reason = target ? refusal(target, { ...action, ts: now, serverTime: now }) : "its message is gone";
      try {
        if (reason === null) await this.deliver(record);
        else device.lastError = `Not sent after all: ${inWords(action.change, reason)}`;
      } catch (error) {
        if (error instanceof SocketClosed || !device.connected) return; // offline again: the rest waits
        device.lastError = `Not sent after all: ${describe(error)}`;
      }
      unsent.shift();
      await device.save();
      device.changed();
    }
  }

  /** Messages whose text, caption or file name contains `query` (any case), newest first (§15.7). */
  search(query: string, limit = 50): ChatMessage[] {
    const needle = query.trim().toLocaleLowerCase();
    if (!needle) return [];
    const hits = [...this.device.messages.values()].filter((m) => {
      if ((m.kind !== "text" && m.kind !== "media") || m.deleted) return false;
      const words = `${m.media?.name ?? ""} ${m.text ?? ""}`.toLocaleLowerCase();
      return words.includes(needle);
    });
    return hits.sort((a, b) => b.ts - a.ts || (a.id < b.id ? 1 : -1)).slice(0, limit);
  }
}

export function isTargeted(kind: string): boolean {
  return TARGETED.includes(kind);
}

/** What a person reads when this device will not send an action receivers would ignore. */
function inWords(change: Change, reason: string): string {
  if (reason.startsWith("only the account")) return `You can only ${change.kind} your own messages.`;
  if (change.kind === "edit" && reason.includes("15 minutes"))
    return "Messages can be edited for 15 minutes after they were sent.";
  if (change.kind === "delete" && reason.includes("60 hours"))
    return "Messages can be deleted for everyone for 60 hours after they were sent.";
  return `Not sent: ${reason}.`;
}
