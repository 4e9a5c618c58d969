/**
 * History bundles for a newly linked companion (the same JSON as messenger.py's `_send_history`):
 * the last 30 days, at most 1,000 text and media messages, what was not transferred, and the names of the
 * primary's groups (names travel only end to end: without them the companion's groups are nameless).
 * Pure: the messenger encrypts the bundle like a file and sends its key over Olm to that one companion.
 */
import { fromUtf8, utf8 } from "../crypto/bytes";
import { isJsonObject } from "../net/json";
import { parseVoice, replyTo } from "./actions";
import { before } from "./chatIndex";
import type { MediaDescriptor } from "./media";
import type { ChatMessage } from "./model";

export const HISTORY_DAYS = 30;
export const HISTORY_MAX = 1000;
const MAX_GROUPS = 1000;
const MAX_ACTIONS = 2000;

export interface HistoryBundle {
  bytes: Uint8Array;
  count: number;
  notTransferred: { older_than_30_days_or_dropped: number; over_1000_limit: number };
  note: string;
}

/** A group's name as the bundle carries it (messaging.md §12). */
export interface HistoryGroup {
  group_id: string;
  name: string;
}

/** What a history request names: the companion holds nothing before this time (and, with `beforeId`,
 * before this message at that time). */
export interface HistoryCursor {
  before: number;
  beforeId?: string;
}

/** Text and media messages in display order (time, then id). Bundles are cut in this order, so what a
 * companion holds is the newest part and a request can name exactly where it ends (§12.1): many messages
 * of a burst share one millisecond. */
function transferable(messages: Iterable<ChatMessage>): ChatMessage[] {
  return [...messages]
    .filter((m) => m.kind === "text" || m.kind === "media")
    .sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
}

export function buildHistory(messages: Iterable<ChatMessage>, now: number, groups: HistoryGroup[] = []): HistoryBundle {
  const all = transferable(messages);
  const recent = all.filter((m) => m.ts >= now - HISTORY_DAYS * 86_400_000);
  const older = all.length - recent.length;
  const overLimit = Math.max(0, recent.length - HISTORY_MAX);
  const records = recent.slice(-HISTORY_MAX);
  let note = `${records.length} messages from the last ${HISTORY_DAYS} days were transferred`;
  if (older || overLimit) note += `; ${older + overLimit} older messages stay only on the phone`;
  return bundle(records, now, groups, { older_than_30_days_or_dropped: older, over_1000_limit: overLimit }, note);
}

/**
 * What a companion asked for (§12.1): the newest `limit` messages older than `before`, however old, and
 * how many older ones still stay on the phone.
 */
export function buildOlderHistory(
  messages: Iterable<ChatMessage>,
  now: number,
  request: HistoryCursor & { limit: number },
  groups: HistoryGroup[] = [],
): HistoryBundle {
  const { before: ts, beforeId } = request;
  const older = transferable(messages).filter(
    (m) => m.ts < ts || (m.ts === ts && beforeId !== undefined && m.id < beforeId),
  );
  const records = older.slice(-request.limit);
  const left = older.length - records.length;
  let note = `${records.length} older messages were transferred`;
  if (left) note += `; ${left} older messages stay only on the phone`;
  return bundle(records, now, groups, { older_than_30_days_or_dropped: 0, over_1000_limit: left }, note);
}

function bundle(
  messages: ChatMessage[],
  now: number,
  groups: HistoryGroup[],
  notTransferred: HistoryBundle["notTransferred"],
  note: string,
): HistoryBundle {
  const records = messages.map((m) => ({
    id: m.id,
    kind: m.kind,
    conversation: m.conversation,
    sender: { account_id: m.senderAccount, device_id: m.senderDevice },
    ts: m.ts,
    body: m.deleted ? {} : bodyOf(m),
  }));
  // Reactions, edits and deletes travel beside the messages (§15.6): the companion shows what this one shows.
  const actions = messages.flatMap((m) => m.actions ?? []);
  const bytes = utf8(
    JSON.stringify({
      v: 1,
      type: "history-bundle",
      generated_at: now,
      messages: records,
      not_transferred: notTransferred,
      groups,
      actions,
    }),
  );
  return { bytes, count: records.length, notTransferred, note };
}

/** A text or media message's body as it is shown now (the latest edit's text). */
function bodyOf(m: ChatMessage): Record<string, unknown> {
  const content =
    m.kind === "media" ? { media: m.media, ...(m.text ? { caption: m.text } : {}) } : { text: m.text ?? "" };
  return {
    ...content,
    ...(m.replyTo ? { reply_to: m.replyTo } : {}),
    ...(m.voice
      ? {
          voice: {
            waveform: m.voice.waveform,
            ...(m.voice.durationMs === null ? {} : { duration_ms: m.voice.durationMs }),
          },
        }
      : {}),
  };
}

/** The messages of a bundle as this device keeps them (`me` = this account: its messages are outgoing),
 * the group names it carries (well-formed ones only) and its reactions, edits and deletes (§15.6). */
export function readHistory(
  bytes: Uint8Array,
  me: string,
): { messages: ChatMessage[]; groups: HistoryGroup[]; actions: Record<string, unknown>[] } {
  const bundle = JSON.parse(fromUtf8(bytes)) as unknown;
  const groups: HistoryGroup[] = [];
  const listed = isJsonObject(bundle) && Array.isArray(bundle.groups) ? (bundle.groups as unknown[]) : [];
  for (const group of listed.slice(0, MAX_GROUPS)) {
    const { group_id: groupId, name } = (group ?? {}) as Record<string, unknown>;
    if (typeof groupId === "string" && groupId.length <= 64 && typeof name === "string" && name)
      groups.push({ group_id: groupId, name: name.slice(0, 100) });
  }
  const records = isJsonObject(bundle) && Array.isArray(bundle.messages) ? (bundle.messages as unknown[]) : [];
  const out: ChatMessage[] = [];
  for (const record of records) {
    if (!isJsonObject(record)) continue;
    const { id, conversation } = record;
    const sender = record.sender as { account_id?: unknown; device_id?: unknown } | undefined;
    if (
      typeof id !== "string" ||
      typeof conversation !== "string" ||
      !/^(direct|group):/.test(conversation) ||
      typeof sender?.account_id !== "string"
    )
      continue;
    const body = (typeof record.body === "object" && record.body !== null ? record.body : {}) as Record<
      string,
      unknown
    >;
    const kind = record.kind === "media" ? "media" : "text";
    const outgoing = sender.account_id === me;
    out.push({
      id,
      conversation,
      kind,
      senderAccount: sender.account_id,
      senderDevice: typeof sender.device_id === "string" ? sender.device_id : "",
      ts: Number(record.ts) || 0,
      outgoing,
      text: typeof body.text === "string" ? body.text : typeof body.caption === "string" ? body.caption : undefined,
      media:
        kind === "media" && typeof body.media === "object" && body.media !== null
          ? (body.media as MediaDescriptor)
          : undefined,
      replyTo: valid(() => replyTo(body)),
      voice: kind === "media" ? valid(() => parseVoice(body)) : undefined,
      ...(outgoing ? { status: "sent" as const } : { read: true }),
    });
  }
  const actions = isJsonObject(bundle) && Array.isArray(bundle.actions) ? (bundle.actions as unknown[]) : [];
  return { messages: out, groups, actions: actions.filter(isJsonObject).slice(0, MAX_ACTIONS) };
}

/** What `read` finds, or undefined when the bundle's field is missing or malformed (it is then left out). */
function valid<T>(read: () => T | null): T | undefined {
  try {
    return read() ?? undefined;
  } catch {
    return undefined;
  }
}
