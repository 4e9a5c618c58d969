/**
 * The plaintext inside every end-to-end ciphertext: one JSON object (messaging.md §5), the twin of
 * src/lockstep/e2e/envelope.py.
 *
 *   {"v": 1, "kind": "text", "id": "<message id>", "conversation": "direct:<account>:<account>",
 *    "sender": {"account_id": "…", "device_id": "…"}, "ts": 1764000000000, "body": {"text": "hi"}}
 *
 * The receiver checks `id` and `sender` against what the server routed (`checkRouting`: the server cannot
 * re-address a message), and `ts` is the sender's estimate of server time in milliseconds.
 *
 * One difference from envelope.py, kept on purpose: a kind this app does not know is decoded, not refused,
 * and the inbox drops it unshown, so a kind a newer client sends never shows here as undecryptable.
 */
import { b64uEncode } from "../crypto/base64";
import { fromUtf8, randomBytes, utf8 } from "../crypto/bytes";
import { EnvelopeError } from "../crypto/envelope";
import { checkBody as checkActionBody } from "./actions";
import { parseReceipt } from "./receipts";

export { EnvelopeError };

export const MESSAGE_ID = /^[A-Za-z0-9_-]{16,64}$/;
export const MAX_TEXT = 65_536;

/** Over MAX_TEXT characters, counted as envelope.py counts them (code points, not UTF-16 units). */
export function textTooLong(text: string): boolean {
  if (text.length <= MAX_TEXT) return false;
  const pairs = text.match(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g)?.length ?? 0; // one code point in two units
  return text.length - pairs > MAX_TEXT;
}

/** The kinds of messaging.md §5 (envelope.py's `Kind`, less `undecryptable`, which never travels). */
export const KINDS = [
  "text",
  "media",
  "receipt",
  "group-key",
  "group-info",
  "history",
  "history-request",
  "call",
  "reaction",
  "edit",
  "delete",
  "typing",
  "presence",
] as const;
export type Kind = (typeof KINDS)[number];
/** The most messages one `history-request` asks for (§12.1). */
export const MAX_HISTORY_REQUEST = 10_000;

export const RECEIPT_STATUSES = ["delivered", "read"] as const;
export type ReceiptStatus = (typeof RECEIPT_STATUSES)[number];

export interface MessageEnvelope {
  /** One of KINDS, or a kind of a newer client (see above). */
  kind: string;
  id: string;
  conversation: string;
  senderAccount: string;
  senderDevice: string;
  /** The sender's estimate of server time when it wrote the message (ms). */
  ts: number;
  body: Record<string, unknown>;
}

export function isKind(kind: string): kind is Kind {
  return (KINDS as readonly string[]).includes(kind);
}

/** A fresh message id: 128 random bits, base64url. */
export function newMessageId(): string {
  return b64uEncode(randomBytes(16));
}

/** The id both sides of a 1:1 chat compute alike: the two account ids in order. */
export function directConversation(a: string, b: string): string {
  const [low, high] = [a, b].sort();
  return `direct:${low}:${high}`;
}

export function groupConversation(groupId: string): string {
  return `group:${groupId}`;
}

/** Who a conversation is with, seen from account `self`: the other account of a direct chat, or a group. */
export function parseConversation(conversation: string, self: string): { peer?: string; groupId?: string } {
  if (conversation.startsWith("group:")) return { groupId: conversation.slice(6) };
  const parts = conversation.split(":");
  if (parts[0] !== "direct" || parts.length !== 3) return {};
  return { peer: parts[1] === self ? parts[2] : parts[1] };
}

export function checkMessageId(value: unknown): string {
  if (typeof value !== "string" || !MESSAGE_ID.test(value))
    throw new EnvelopeError("a message id is 16 to 64 base64url characters");
  return value;
}

export function encodeEnvelope(envelope: MessageEnvelope): Uint8Array {
  return utf8(
    JSON.stringify({
      v: 1,
      kind: envelope.kind,
      id: envelope.id,
      conversation: envelope.conversation,
      sender: { account_id: envelope.senderAccount, device_id: envelope.senderDevice },
      ts: envelope.ts,
      body: envelope.body,
    }),
  );
}

export function decodeEnvelope(plaintext: Uint8Array): MessageEnvelope {
  let value: unknown;
  try {
    value = JSON.parse(fromUtf8(plaintext));
  } catch {
    throw new EnvelopeError("message envelope is not UTF-8 JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new EnvelopeError("message envelope must be a JSON object");
  const fields = value as Record<string, unknown>;
  if (fields.v !== 1) throw new EnvelopeError("not a version 1 message envelope");
  const { kind, sender, body, ts, conversation } = fields;
  if (typeof kind !== "string" || kind === "undecryptable") throw new EnvelopeError("unknown message kind");
  const from = (typeof sender === "object" && sender !== null ? sender : {}) as Record<string, unknown>;
  if (typeof from.account_id !== "string" || typeof from.device_id !== "string")
    throw new EnvelopeError("'sender' must name an account and a device");
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new EnvelopeError("'body' must be an object");
  if (typeof ts !== "number" || !Number.isInteger(ts)) throw new EnvelopeError("'ts' must be an integer");
  if (typeof conversation !== "string" || !/^(direct|group):/.test(conversation))
    throw new EnvelopeError("'conversation' must be a direct: or group: id");
  const envelope: MessageEnvelope = {
    kind,
    id: checkMessageId(fields.id),
    conversation,
    senderAccount: from.account_id,
    senderDevice: from.device_id,
    ts,
    body: body as Record<string, unknown>,
  };
  checkBody(envelope);
  return envelope;
}

/** The fields each kind needs, with their types (extra fields are ignored). */
export function checkBody(envelope: MessageEnvelope): void {
  const body = envelope.body;
  const strings = (...names: string[]): boolean => names.every((name) => typeof body[name] === "string");
  switch (envelope.kind) {
    case "text":
      if (typeof body.text !== "string" || textTooLong(body.text))
        throw new EnvelopeError(`a text message has a 'text' of at most ${MAX_TEXT} characters`);
      break;
    case "media":
      if (typeof body.media !== "object" || body.media === null || Array.isArray(body.media))
        throw new EnvelopeError("a media message has a 'media' object");
      break;
    case "receipt":
      parseReceipt(body); // "up to" markers, or the first version's ids (§5.3)
      break;
    case "history-request":
      if (typeof body.before !== "number" || !Number.isSafeInteger(body.before) || body.before < 0)
        throw new EnvelopeError("a history request names 'before', a time in ms");
      if (
        typeof body.limit !== "number" ||
        !Number.isInteger(body.limit) ||
        body.limit < 1 ||
        body.limit > MAX_HISTORY_REQUEST
      )
        throw new EnvelopeError(`a history request asks for 1 to ${MAX_HISTORY_REQUEST} messages`);
      if (body.before_id !== undefined && (typeof body.before_id !== "string" || !MESSAGE_ID.test(body.before_id)))
        throw new EnvelopeError("a history request's 'before_id' is a message id");
      break;
    case "call":
      if (!strings("call_id", "type")) throw new EnvelopeError("a call signal names call_id and type");
      break;
    case "group-key":
      if (!strings("group_id", "session_id", "session_key"))
        throw new EnvelopeError("a group key names group_id, session_id and session_key");
      break;
    default:
      break;
  }
  checkActionBody(envelope.kind, body); // replies, reactions, edits, deletes, typing, presence, voice notes
}

/** The server's routing and the envelope, which travelled encrypted, must agree. */
export function checkRouting(
  envelope: MessageEnvelope,
  messageId: string,
  senderAccount: string,
  senderDevice: string,
): void {
  if (envelope.id !== messageId || envelope.senderAccount !== senderAccount || envelope.senderDevice !== senderDevice) {
    throw new EnvelopeError("the envelope's id or sender does not match how the message was routed");
  }
}
