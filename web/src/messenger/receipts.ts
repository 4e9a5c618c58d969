/**
 * Receipts as markers (messaging.md §5.3): "delivered up to" and "read up to" a message of a conversation,
 * as WhatsApp and Matrix's read markers do, instead of one id per message. A device sends at most one
 * receipt per sender account and status for everything it handled together (a batch, or a look at a
 * chat), with the newest message of each conversation; the sender applies it to its messages of that
 * conversation up to that one. Receipts listing `message_ids` (the first version) are still accepted.
 * Pure: the messenger encrypts and sends what `take` returns.
 */
import { EnvelopeError } from "../crypto/envelope";
import { countUpTo } from "./chatIndex";
import type { ChatMessage } from "./model";

export type ReceiptStatus = "delivered" | "read";

/** "Everything of yours in `conversation` up to this message" (its id and time, as the sender wrote them). */
export interface ReceiptMark {
  conversation: string;
  message_id: string;
  ts: number;
}

export interface Receipt {
  status: ReceiptStatus;
  /** The first version's form: exactly these messages. */
  ids: string[];
  marks: ReceiptMark[];
}

/** At most this many ids or marks are read from one receipt. */
export const MAX_RECEIPT_ENTRIES = 1000;

function mark(message: ChatMessage): ReceiptMark {
  return { conversation: message.conversation, message_id: message.id, ts: message.ts };
}

function markBefore(a: ReceiptMark, b: ReceiptMark): boolean {
  return a.ts < b.ts || (a.ts === b.ts && a.message_id < b.message_id);
}

/** What to tell senders: the newest message per (sender account, status, conversation) noted since the last `take`. */
export class ReceiptQueue {
  private readonly pending = new Map<string, Map<ReceiptStatus, Map<string, ReceiptMark>>>();

  /** Text and media of other accounts only (`me`: this account). */
  note(status: ReceiptStatus, messages: Iterable<ChatMessage>, me: string): void {
    for (const message of messages) {
      if (message.outgoing || message.senderAccount === me || (message.kind !== "text" && message.kind !== "media"))
        continue;
      let byStatus = this.pending.get(message.senderAccount);
      if (!byStatus)
        this.pending.set(message.senderAccount, (byStatus = new Map<ReceiptStatus, Map<string, ReceiptMark>>()));
      let marks = byStatus.get(status);
      if (!marks) byStatus.set(status, (marks = new Map<string, ReceiptMark>()));
      const known = marks.get(message.conversation);
      const candidate = mark(message);
      if (!known || markBefore(known, candidate)) marks.set(message.conversation, candidate);
    }
  }

  get empty(): boolean {
    return this.pending.size === 0;
  }

  /** One receipt body per sender account and status; a "delivered" mark a "read" one covers is left out. */
  take(): { account: string; body: { status: ReceiptStatus; up_to: ReceiptMark[] } }[] {
    const out: { account: string; body: { status: ReceiptStatus; up_to: ReceiptMark[] } }[] = [];
    for (const [account, byStatus] of this.pending) {
      const read = byStatus.get("read") ?? new Map<string, ReceiptMark>();
      const delivered = [...(byStatus.get("delivered")?.values() ?? [])].filter((m) => {
        const covering = read.get(m.conversation);
        return !covering || markBefore(covering, m);
      });
      if (read.size) out.push({ account, body: { status: "read", up_to: [...read.values()] } });
      if (delivered.length) out.push({ account, body: { status: "delivered", up_to: delivered } });
    }
    this.pending.clear();
    return out;
  }
}

/** A receipt's body, checked as lockstep.e2e.receipts.parse checks it (EnvelopeError if it is neither form). */
export function parseReceipt(body: Record<string, unknown>): Receipt {
  const status = body.status === "read" ? "read" : body.status === "delivered" ? "delivered" : null;
  if (status === null) throw new EnvelopeError("a receipt's status is delivered or read");
  const ids = body.message_ids ?? null; // absent or null: not given (as Python's dict.get)
  const upTo = body.up_to ?? null;
  if ((ids === null) === (upTo === null)) throw new EnvelopeError("a receipt carries either 'message_ids' or 'up_to'");
  if (ids !== null) {
    const strings = Array.isArray(ids) ? ids.filter((id): id is string => typeof id === "string") : [];
    if (!Array.isArray(ids) || strings.length !== ids.length)
      throw new EnvelopeError("a receipt lists 'message_ids' as strings");
    return { status, ids: strings.slice(0, MAX_RECEIPT_ENTRIES), marks: [] };
  }
  if (!Array.isArray(upTo)) throw new EnvelopeError("a receipt's 'up_to' is a list of marks");
  const marks: ReceiptMark[] = [];
  for (const entry of upTo.slice(0, MAX_RECEIPT_ENTRIES) as unknown[]) {
    const value = (typeof entry === "object" && entry !== null ? entry : {}) as Record<string, unknown>;
    if (
      typeof value.conversation !== "string" ||
      typeof value.message_id !== "string" ||
      typeof value.ts !== "number" ||
      !Number.isSafeInteger(value.ts)
    ) {
      throw new EnvelopeError("a receipt mark names a conversation, a message id and its ts");
    }
    marks.push({ conversation: value.conversation, message_id: value.message_id, ts: value.ts });
  }
  return { status, ids: [], marks };
}

/**
 * Which messages a mark reaches that earlier marks did not: from the newest message at or before the mark
 * down to the last one reached by an earlier mark of the same key (who, status, conversation), so a long
 * chat is walked once, not once per receipt. Marks are kept in memory: after a reload the first one walks
 * the whole conversation again (its effect is the same).
 */
export class MarkTracker {
  private readonly reached = new Map<string, ReceiptMark>();

  reach(key: string, list: readonly ChatMessage[], upTo: ReceiptMark): ChatMessage[] {
    const previous = this.reached.get(key);
    if (previous && !markBefore(previous, upTo)) return [];
    this.reached.set(key, upTo);
    const out: ChatMessage[] = [];
    for (let i = countUpTo(list, upTo.ts, upTo.message_id) - 1; i >= 0; i--) {
      const message = list[i] as ChatMessage;
      if (previous && !markBefore(previous, mark(message))) break; // reached before
      out.push(message);
    }
    return out;
  }
}
