/** What the messenger keeps and shows: messages, conversations, statuses (messaging.md §5, §10). */
import type { VoiceNote } from "./actions";
import type { MediaDescriptor } from "./media";

export type Status = "sending" | "sent" | "delivered" | "read" | "failed";

export interface ChatMessage {
  id: string;
  conversation: string;
  kind: "text" | "media" | "undecryptable" | "note";
  senderAccount: string;
  senderDevice: string;
  /** Sender's estimate of server time when written (ms). */
  ts: number;
  outgoing: boolean;
  text?: string;
  media?: MediaDescriptor;
  /** Outgoing only. */
  status?: Status;
  recipients?: string[];
  by?: Record<string, "delivered" | "read">;
  /** Incoming only: shown to the person (a read receipt went out). */
  read?: boolean;
  error?: string;
  /** The message this one replies to (messaging.md §15.1). */
  replyTo?: string;
  /** A voice note's length and waveform (§16). */
  voice?: VoiceNote;
  /** The reactions, edits and deletes naming this message, as history records (§15.3; ./messageChanges.ts). */
  actions?: Record<string, unknown>[];
  /** Shown as edited: `text` is the latest edit's. */
  edited?: boolean;
  /** Deleted for everyone: text, media and reactions are gone. */
  deleted?: boolean;
  /** Account id → emoji, one per account (§15.3). */
  reactions?: Record<string, string>;
}

export interface Conversation {
  id: string;
  title: string;
  kind: "direct" | "group";
  peer?: string;
  groupId?: string;
  left?: boolean;
  last?: ChatMessage;
  unread: number;
  updated: number;
}

const RANK: Record<Status, number> = { failed: -1, sending: 0, sent: 1, delivered: 2, read: 3 };

/** Sent → delivered (every recipient account said delivered or read) → read (every one said read). */
export function statusFrom(message: ChatMessage): Status {
  const current = message.status ?? "sent";
  if (current === "sending" || current === "failed") return current;
  const recipients = message.recipients ?? [];
  const by = message.by ?? {};
  if (recipients.length === 0) return current;
  let derived: Status = "sent";
  if (recipients.every((r) => by[r] === "read")) derived = "read";
  else if (recipients.every((r) => by[r] === "delivered" || by[r] === "read")) derived = "delivered";
  return RANK[derived] > RANK[current] ? derived : current;
}
