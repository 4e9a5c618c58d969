/**
 * Message actions (messaging.md §15), the browser twin of lockstep.e2e.actions: replies, reactions, edits,
 * deletes, typing and presence. Pure: bodies are parsed (ActionError otherwise, an EnvelopeError), and what
 * a message shows is a function of the message and the *set* of actions naming it, never of their arrival
 * order, so every device of every member shows the same thing. Time limits are checked from the target's
 * signed ts, the action's signed ts and the server's queue time of the action, never this device's clock.
 * Checked against vectors/message-actions.json with Python (tests/webmsg/test_webmsg_actions_vectors.py).
 */
import { EnvelopeError } from "../crypto/envelope";

export const EDIT_LIMIT_MS = 15 * 60_000;
export const DELETE_LIMIT_MS = 60 * 3_600_000;
export const CLOCK_SLACK_MS = 60_000;
export const MAX_EMOJI_CODE_POINTS = 16;
export const TYPING_FRESH_MS = 10_000;
export const PRESENCE_ONLINE_MS = 75_000;
const MAX_TEXT = 65_536;
/** envelope.ts's MESSAGE_ID, not imported: envelope.ts checks action bodies with this module. */
const MESSAGE_ID = /^[A-Za-z0-9_-]{16,64}$/;

export type TargetedKind = "reaction" | "edit" | "delete";
export const TARGETED: readonly string[] = ["reaction", "edit", "delete"];
export const EPHEMERAL: readonly string[] = ["typing", "presence"];

export class ActionError extends EnvelopeError {
  override name = "ActionError";
}

export type Change =
  | { kind: "reaction"; target: string; emoji: string }
  | { kind: "edit"; target: string; text: string }
  | { kind: "delete"; target: string };

/** A reaction, edit or delete as every device keeps it: its envelope's routing and the queue time (§15.3). */
export interface Action {
  id: string;
  conversation: string;
  senderAccount: string;
  ts: number;
  /** The server's queue time; null only in history records from an older device. */
  serverTime: number | null;
  change: Change;
}

/** A text or media message, as far as actions care. */
export interface Target {
  id: string;
  conversation: string;
  senderAccount: string;
  ts: number;
}

export interface Outcome {
  /** The latest edit's text (or caption); null if never (validly) edited. */
  text: string | null;
  edited: boolean;
  deleted: boolean;
  /** Account id → emoji, one per account with a reaction, in account id order. */
  reactions: Record<string, string>;
}

function checkId(value: unknown, what: string): string {
  if (typeof value !== "string" || !MESSAGE_ID.test(value))
    throw new ActionError(`'${what}' is not a message id: a message id is 16 to 64 base64url characters`);
  return value;
}

/** Python's len(): code points, not UTF-16 units (a string iterates by code point). */
function codePoints(text: string): number {
  const pairs = text.match(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g)?.length ?? 0; // one code point in two units
  return text.length - pairs;
}

/** §15.2: none (a removal) or 1 to 16 code points, without controls, spaces or ASCII letters. */
function checkEmoji(value: unknown): string {
  if (typeof value !== "string") throw new ActionError("a reaction's 'emoji' must be a string");
  if (codePoints(value) > MAX_EMOJI_CODE_POINTS)
    throw new ActionError(`a reaction is at most ${MAX_EMOJI_CODE_POINTS} code points`);
  for (const char of value) {
    const point = char.codePointAt(0) ?? 0;
    if (point <= 0x20 || (point >= 0x7f && point <= 0x9f) || /^[A-Za-z]$/.test(char))
      throw new ActionError("a reaction is an emoji: no letters, spaces or control characters");
  }
  return value;
}

function checkText(value: unknown, what: string): string {
  // Python counts code points: so must we, for a text to be valid on both sides.
  if (typeof value !== "string" || value.length === 0 || codePoints(value) > MAX_TEXT)
    throw new ActionError(`${what} is a text of 1 to ${MAX_TEXT} characters`);
  return value;
}

export function parseChange(kind: string, body: Record<string, unknown>): Change {
  if (kind === "reaction") return { kind, target: checkId(body.target, "target"), emoji: checkEmoji(body.emoji) };
  if (kind === "edit")
    return { kind, target: checkId(body.target, "target"), text: checkText(body.text, "an edit's 'text'") };
  if (kind === "delete") return { kind, target: checkId(body.target, "target") };
  throw new ActionError(`a ${kind} message names no other message`);
}

export type Signal =
  { kind: "typing"; state: "composing" | "paused" } | { kind: "presence"; state: "online" | "offline" };

export function parseSignal(kind: string, body: Record<string, unknown>): Signal {
  const state = body.state;
  if (kind === "typing" && (state === "composing" || state === "paused")) return { kind, state };
  if (kind === "presence" && (state === "online" || state === "offline")) return { kind, state };
  throw new ActionError(`an unknown ${kind} state`);
}

/** The message a text or media body quotes (§15.1), if any. */
export function replyTo(body: Record<string, unknown>): string | null {
  return body.reply_to === undefined || body.reply_to === null ? null : checkId(body.reply_to, "reply_to");
}

export const MAX_VOICE_MS = 3 * 3_600_000;
export const WAVEFORM_BARS = 64;
export const WAVEFORM_TOP = 100;

/** A media message that is a voice note (§16): its length and a waveform of 0–100 bars. */
export interface VoiceNote {
  durationMs: number | null;
  waveform: number[];
}

/** The `voice` object of a media body (§16): null if not a voice note, ActionError if malformed. */
export function parseVoice(body: Record<string, unknown>): VoiceNote | null {
  const voice = body.voice;
  if (voice === undefined || voice === null) return null;
  if (typeof voice !== "object" || Array.isArray(voice)) throw new ActionError("'voice' must be an object");
  const { duration_ms: duration, waveform = [] } = voice as Record<string, unknown>;
  if (
    duration !== undefined &&
    duration !== null &&
    (!Number.isSafeInteger(duration) || (duration as number) < 0 || (duration as number) > MAX_VOICE_MS)
  )
    throw new ActionError(`a voice note's 'duration_ms' is 0 to ${MAX_VOICE_MS}`);
  if (
    !Array.isArray(waveform) ||
    waveform.length > WAVEFORM_BARS ||
    !waveform.every((v) => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= WAVEFORM_TOP)
  )
    throw new ActionError(`a voice note's 'waveform' is at most ${WAVEFORM_BARS} integers of 0 to ${WAVEFORM_TOP}`);
  return { durationMs: typeof duration === "number" ? duration : null, waveform: waveform as number[] };
}

/** Throws ActionError unless `body` is what §15 and §16 require of a message of `kind` (other kinds pass). */
export function checkBody(kind: string, body: Record<string, unknown>): void {
  if (kind === "text" || kind === "media") {
    replyTo(body);
    if (kind === "media") parseVoice(body);
  } else if (TARGETED.includes(kind)) parseChange(kind, body);
  else if (EPHEMERAL.includes(kind)) parseSignal(kind, body);
}

/** §15.4: past the limit by the sender's signed clock, or by the server's queue time plus slack. */
export function tooLate(action: Action, target: Target, limitMs: number): boolean {
  if (action.ts - target.ts > limitMs) return true;
  return action.serverTime !== null && action.serverTime - target.ts > limitMs + CLOCK_SLACK_MS;
}

/** Why `action` does not apply to `target` (§15.3), or null when it does. */
export function refusal(target: Target, action: Action): string | null {
  if (action.change.target !== target.id) return "it names another message";
  if (action.conversation !== target.conversation) return "it names a message of another conversation";
  if (action.change.kind === "reaction") return null;
  if (action.senderAccount !== target.senderAccount)
    return "only the account that sent a message can edit or delete it";
  if (action.change.kind === "edit" && tooLate(action, target, EDIT_LIMIT_MS))
    return "an edit more than 15 minutes after the message";
  if (action.change.kind === "delete" && tooLate(action, target, DELETE_LIMIT_MS))
    return "a delete more than 60 hours after the message";
  return null;
}

/** Later wins: by the sender's signed time, then by message id (compared as Python compares strings). */
function later(a: Action, b: Action): boolean {
  if (a.ts !== b.ts) return a.ts > b.ts;
  return a.id > b.id; // ids are ASCII: UTF-16 order is code point order
}

/** The outcome of a set of actions (§15.3): delete wins over edits, the latest edit, each account's latest reaction. */
export function outcome(target: Target, actions: Iterable<Action>): Outcome {
  const valid = [...actions].filter((a) => refusal(target, a) === null);
  if (valid.some((a) => a.change.kind === "delete")) return { text: null, edited: false, deleted: true, reactions: {} };
  let edit: Action | undefined;
  const byAccount = new Map<string, Action>();
  for (const action of valid) {
    if (action.change.kind === "edit" && (!edit || later(action, edit))) edit = action;
    if (action.change.kind === "reaction") {
      const held = byAccount.get(action.senderAccount);
      if (!held || later(action, held)) byAccount.set(action.senderAccount, action);
    }
  }
  const reactions: Record<string, string> = {};
  for (const account of [...byAccount.keys()].sort()) {
    const change = byAccount.get(account)?.change;
    if (change?.kind === "reaction" && change.emoji) reactions[account] = change.emoji;
  }
  const text = edit?.change.kind === "edit" ? edit.change.text : null;
  return { text, edited: text !== null, deleted: false, reactions };
}

/** An action kept as a history record (§12, §15.6); ActionError if it is not a well-formed one. */
export function actionFromRecord(record: Record<string, unknown>): Action {
  const kind = String(record.kind);
  const { body } = record;
  const sender = record.sender as Record<string, unknown> | null | undefined;
  if (
    !TARGETED.includes(kind) ||
    typeof body !== "object" ||
    body === null ||
    typeof sender !== "object" ||
    sender === null
  )
    throw new ActionError("not a reaction, edit or delete record");
  if (typeof sender.account_id !== "string" || typeof record.conversation !== "string")
    throw new ActionError("an action record without its sender or conversation");
  if (!Number.isSafeInteger(record.ts)) throw new ActionError("an action record's 'ts' is an integer");
  const serverTime = record.server_time ?? null;
  if (serverTime !== null && !Number.isSafeInteger(serverTime))
    throw new ActionError("an action record's 'server_time' is an integer");
  return {
    id: checkId(record.id, "id"),
    conversation: record.conversation,
    senderAccount: sender.account_id,
    ts: record.ts as number,
    serverTime: serverTime as number | null,
    change: parseChange(kind, body as Record<string, unknown>),
  };
}

/** The history record of an action (§15.6), as Python writes it. */
export function actionRecord(action: Action, senderDevice: string): Record<string, unknown> {
  const { kind, ...body } = action.change;
  return {
    id: action.id,
    kind,
    conversation: action.conversation,
    sender: { account_id: action.senderAccount, device_id: senderDevice },
    ts: action.ts,
    ...(action.serverTime === null ? {} : { server_time: action.serverTime }),
    body,
  };
}

/** Actions kept by target: whatever arrives first, the set decides (§15.3). */
export class ActionSet {
  private readonly byTarget = new Map<string, Map<string, Action>>();

  constructor(actions: Iterable<Action> = []) {
    for (const action of actions) this.add(action);
  }

  /** Keeps an action once per id; returns whether it was new. */
  add(action: Action): boolean {
    let kept = this.byTarget.get(action.change.target);
    if (!kept) this.byTarget.set(action.change.target, (kept = new Map<string, Action>()));
    if (kept.has(action.id)) return false;
    kept.set(action.id, action);
    return true;
  }

  of(targetId: string): Action[] {
    return [...(this.byTarget.get(targetId)?.values() ?? [])];
  }

  outcome(target: Target): Outcome {
    return outcome(target, this.of(target.id));
  }

  /** §15.3's last rule: once deleted, keep only the deletes (the target's content is dropped by the caller). */
  forgetDeleted(targetId: string): void {
    const kept = this.byTarget.get(targetId);
    if (!kept) return;
    for (const [id, action] of kept) if (action.change.kind !== "delete") kept.delete(id);
  }

  all(): Action[] {
    return [...this.byTarget.values()].flatMap((kept) => [...kept.values()]);
  }
}
