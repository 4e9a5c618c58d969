/**
 * Sending (messaging.md §4, §6.1, §7.2), the twin of client/messaging/outbox.py: every message is encrypted
 * here, never on the server. A direct message goes as one Olm ciphertext per device of the recipient and per
 * other device of ours; a group message as one Megolm ciphertext that the server copies to every member
 * device, after the group session key went over Olm to each device that lacks it. The server refuses a send
 * that misses a device (`devices_changed`); `retryOnChangedDevices` is the one place that answers that, by
 * reading the device lists again and sending anew.
 *
 * A text or media message is kept first (status `sending`) and stays queued while there is no connection
 * (`resendPending` sends it once the socket is back); only a refusal makes it `failed`, with Retry.
 *
 * Saved before sent (messaging.md §11): every `messages.send` is written to IndexedDB, with the ratchet
 * steps that made its ciphertexts, before it leaves (`sendSaved`). A page that dies after that (closed,
 * crashed, reloaded) sends these same ciphertexts under the same message id when it is back
 * (`resendInFlight`), never fresh ones from ratchet steps its peers already used up.
 */
import { b64uEncode } from "../crypto/base64";
import type { VoiceNote } from "./actions";
import { ServerError, SocketClosed } from "../net/socket";
import type { Contacts } from "./contacts";
import { type Device, MAX_FRAME, TOO_LARGE } from "./device";
import {
  MAX_TEXT,
  textTooLong,
  type ReceiptStatus,
  directConversation,
  groupConversation,
  newMessageId,
  parseConversation,
} from "./envelope";
import { MessengerError, describe } from "./errors";
import { FanoutTooLarge, planRequests } from "./fanout";
import type { Groups } from "./groups";
import { type DeviceKeys, verifyOneTimeKey } from "./keys";
import { type Progress, kindForMimetype } from "./media";
import type { MediaTransfer } from "./mediaTransfer";
import { type ChatMessage, statusFrom } from "./model";
import { ReceiptQueue } from "./receipts";

export const SEND_ATTEMPTS = 3;
/** Receipts wait this long for more messages to cover (one receipt per sender for a whole burst). */
const RECEIPT_DELAY_MS = 250;
/** Olm payloads the server takes in one `messages.send` (messaging.md §7.2). */
const MAX_PAYLOADS = 1024;

/**
 * Runs `attempt(refresh)`, first with the device lists at hand (`refresh` false); each time the server
 * answers that they changed, again with fresh ones, SEND_ATTEMPTS times in all.
 */
export async function retryOnChangedDevices<T>(attempt: (refresh: boolean) => Promise<T>): Promise<T> {
  for (let number = 0; ; number++) {
    try {
      return await attempt(number > 0);
    } catch (error) {
      if (error instanceof ServerError && error.code === "devices_changed" && number + 1 < SEND_ATTEMPTS) continue;
      throw error;
    }
  }
}

export class Outbox {
  private readonly receipts = new ReceiptQueue();
  private receiptTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly device: Device,
    private readonly contacts: Contacts,
    private readonly groups: Groups,
    private readonly media: MediaTransfer,
  ) {}

  // --- Olm (§4) -------------------------------------------------------------------------------------
  /**
   * One Olm ciphertext of `plaintext` per target device, starting a session (with a claimed one-time key)
   * for each device this one has none with yet. The devices are encrypted for side by side: each step
   * awaits WebCrypto, and one device after another would leave the page waiting on each in turn (a key share
   * to 2,047 devices is some 30,000 such steps). Two targets with the same identity key (never two real
   * devices) go one after the other, so a session's ratchet only ever takes one step at a time.
   */
  async olmPayloads(targets: DeviceKeys[], plaintext: Uint8Array): Promise<Record<string, unknown>[]> {
    const olm = this.device.olm;
    const missing = new Set(targets.filter((t) => !olm.hasSession(t.identityKey)).map((t) => t.deviceId));
    let claimed: Record<string, Record<string, unknown> | undefined> = {};
    if (missing.size) {
      claimed = (await this.device.request("keys.claim", { device_ids: [...missing] })).devices as typeof claimed;
      if ([...missing].some((d) => !claimed[d]?.one_time_key))
        throw new MessengerError("A device of this contact has no one-time keys left; try again later.");
    }
    const sender = b64uEncode(olm.identityKey);
    const payloadFor = async (keys: DeviceKeys): Promise<Record<string, unknown>> => {
      const oneTimeKey = claimed[keys.deviceId]?.one_time_key;
      if (missing.has(keys.deviceId))
        await olm.startOutbound(keys.identityKey, await verifyOneTimeKey(oneTimeKey, keys.signingKey));
      const message = await olm.encrypt(keys.identityKey, plaintext);
      return {
        device_id: keys.deviceId,
        type: "olm",
        olm_type: message.type,
        sender_key: sender,
        ciphertext: b64uEncode(message.body),
      };
    };
    const before = new Map<string, Promise<unknown>>(); // by identity key: the previous target's work
    const work = targets.map((keys) => {
      const peer = b64uEncode(keys.identityKey);
      const done = (before.get(peer) ?? Promise.resolve()).then(() => payloadFor(keys));
      before.set(
        peer,
        done.catch(() => undefined),
      );
      return done;
    });
    // Every device's work ends before this does (a failure included): the next operation on the ratchets
    // (`serial`) must never overlap one still running here.
    const payloads: Record<string, unknown>[] = [];
    for (const result of await Promise.allSettled(work)) {
      if (result.status === "rejected") throw result.reason;
      payloads.push(result.value);
    }
    return payloads;
  }

  /**
   * Sends `plaintext` over Olm to every target as `messages.send` with `fields` (message id and routing), in
   * as many requests as it takes to keep each under the frame limit (messaging.md §6.3); one only, or
   * nothing at all, if `whole` (a direct message reaches all its devices at once).
   *
   * The split is planned before anything is encrypted (fanout.ts), and one-time keys are claimed per request
   * just before it is sent, so none is claimed for a request this client would refuse, nor for the requests
   * after one the server refused. Each request is saved, with the sessions it began, before it is sent
   * (`sendSaved`); each accepted one is reported to `accepted` (its devices and the server's answer), which
   * the next save writes. Every request carries the same message id, so the server queues a copy at most
   * once per device however often the rest is retried.
   */
  async fanOut(
    targets: DeviceKeys[],
    plaintext: Uint8Array,
    fields: Record<string, unknown>,
    options: { whole?: boolean; accepted?: (deviceIds: string[], answer: Record<string, unknown>) => void } = {},
  ): Promise<Record<string, unknown>[]> {
    const budget = MAX_FRAME - JSON.stringify({ ...fields, payloads: [] }).length;
    const byDevice = new Map(targets.map((keys) => [keys.deviceId, keys]));
    let requests: string[][];
    try {
      requests = planRequests([...byDevice.keys()], plaintext.length, budget, MAX_PAYLOADS);
    } catch (error) {
      throw error instanceof FanoutTooLarge ? new MessengerError(TOO_LARGE) : error;
    }
    if (options.whole && requests.length > 1) throw new MessengerError(TOO_LARGE);
    const answers: Record<string, unknown>[] = [];
    for (const deviceIds of requests) {
      const keys = deviceIds.flatMap((d) => byDevice.get(d) ?? []);
      const payloads = await this.olmPayloads(keys, plaintext);
      const answer = await this.sendSaved({ ...fields, payloads });
      answers.push(answer);
      options.accepted?.(deviceIds, answer);
    }
    return answers;
  }

  /**
   * Sends one `messages.send` after saving it, with the ratchet steps (Olm) or message index (Megolm)
   * its ciphertexts used, in the same transaction as whatever else changed. Answered, it is forgotten
   * (written by the next save: sent again meanwhile, its copies are dropped by id); refused, too (the
   * server queued none of it). Unanswered (the connection or the page went away), it stays, and
   * `resendInFlight` sends it as it is.
   */
  private async sendSaved(fields: Record<string, unknown>): Promise<Record<string, unknown>> {
    const device = this.device;
    const inFlight = (device.state.inFlight ??= []);
    inFlight.push(fields);
    await device.save();
    try {
      const answer = await device.request("messages.send", fields);
      forget(inFlight, fields);
      return answer;
    } catch (error) {
      if (error instanceof ServerError) forget(inFlight, fields);
      throw error;
    }
  }

  /** Sends again, as they are, the requests saved but never answered (the page or the connection went
   * away); a text or media message among them is `sent` once the server took it. */
  async resendInFlight(): Promise<void> {
    const device = this.device;
    const inFlight = device.state.inFlight ?? [];
    if (!inFlight.length) return; // nothing kept (nearly every connect): nothing to send or save
    for (const fields of [...inFlight]) {
      try {
        await device.request("messages.send", fields);
        const message = device.messages.get(String(fields.message_id));
        if (message?.outgoing && message.status === "sending") this.markSent(message, this.recipientsOf(fields));
      } catch (error) {
        if (!(error instanceof ServerError)) throw error; // offline again: kept for the next connection
        // Refused (a device list changed meanwhile): nothing was queued; the message goes anew, if pending.
      }
      forget(inFlight, fields);
    }
    await device.save();
  }

  /** The accounts whose receipts make a message `delivered` and `read` (not this account's own). */
  private recipientsOf(fields: Record<string, unknown>): string[] {
    const own = this.device.accountId;
    if (typeof fields.group_id === "string") return this.groups.get(fields.group_id).members.filter((m) => m !== own);
    return fields.to === own ? [] : [String(fields.to)];
  }

  // --- direct and group sends -----------------------------------------------------------------------
  /** Encrypts for every device of `peerId` and every other device of ours, and sends; returns the server time. */
  sendDirect(peerId: string, kind: string, body: Record<string, unknown>, id: string): Promise<number> {
    const device = this.device;
    const conversation = directConversation(device.accountId, peerId);
    return retryOnChangedDevices(async (refresh) => {
      const peer = await this.contacts.get({ accountId: peerId }, refresh);
      const me = await this.contacts.get({ accountId: device.accountId }, refresh);
      if (peer.keys.size === 0)
        throw new MessengerError(`@${peer.account.handle} has no device that can receive messages yet.`);
      const targets = new Map<string, DeviceKeys>();
      for (const c of [peer, me])
        for (const k of c.keys.values()) if (k.deviceId !== device.deviceId) targets.set(k.deviceId, k);
      // A receipt says so, so that it does not make the peer a known contact (SECURITY.md).
      const receipt = kind === "receipt" ? { receipt: true } : {};
      const plaintext = device.envelope(kind, conversation, body, id);
      const [result] = await this.fanOut(
        [...targets.values()],
        plaintext,
        { message_id: id, to: peerId, ...receipt },
        {
          whole: true,
        },
      );
      return Number(result?.server_time);
    });
  }

  /** Shares the group session key with devices that lack it (rotating first if a device left), then
   * sends one Megolm ciphertext that the server copies to every member device; returns the other members. */
  sendGroup(
    groupId: string,
    kind: string,
    body: Record<string, unknown>,
    id: string,
  ): Promise<{ members: string[]; serverTime: number }> {
    const device = this.device;
    const conversation = groupConversation(groupId);
    return retryOnChangedDevices(async (refresh) => {
      const group = await device.request("groups.get", { group_id: groupId });
      this.groups.note(group);
      const members = this.groups.trusted(
        groupId,
        (group.members as { account_id: string }[]).map((m) => m.account_id),
      );
      const published = (group.devices ?? {}) as Record<string, string[]>;
      const keyed = new Map(members.map((accountId) => [accountId, new Set(published[accountId] ?? [])]));
      const targets = new Map<string, DeviceKeys>();
      for (const contact of await this.contacts.getMany(keyed, refresh))
        for (const k of contact.keys.values()) if (k.deviceId !== device.deviceId) targets.set(k.deviceId, k);
      const share = await device.megolm.prepare(groupId, new Set(targets.keys()));
      if (share.devices.length) {
        await this.fanOut(
          share.devices.flatMap((d) => targets.get(d) ?? []),
          device.envelope("group-key", conversation, share.body, share.messageId),
          { message_id: share.messageId, group_id: groupId },
          { accepted: (deviceIds) => device.megolm.markShared(groupId, deviceIds) },
        );
      }
      const { sessionId, ciphertext } = await device.megolm.encrypt(
        groupId,
        device.envelope(kind, conversation, body, id),
      );
      const result = await this.sendSaved({
        message_id: id,
        group_id: groupId,
        megolm: { session_id: sessionId, ciphertext: b64uEncode(ciphertext) },
      });
      return { members: members.filter((m) => m !== device.accountId), serverTime: Number(result.server_time) };
    });
  }

  /** Sends into a conversation (a peer's, or a group); returns the server's queue time. */
  async sendInto(
    conversation: { peer?: string; groupId?: string },
    kind: string,
    body: Record<string, unknown>,
    id: string,
  ): Promise<number> {
    if (conversation.groupId) return (await this.sendGroup(conversation.groupId, kind, body, id)).serverTime;
    if (conversation.peer) return this.sendDirect(conversation.peer, kind, body, id);
    throw new MessengerError("unknown conversation");
  }

  /** Tells a group's members its name (names travel only end to end). */
  async sendGroupInfo(groupId: string): Promise<void> {
    const name = this.groups.get(groupId).name || "Group";
    await this.sendGroup(groupId, "group-info", { group_id: groupId, name }, newMessageId());
  }

  /** Sends to each device of this account alone (a history bundle's key). */
  async sendToOwnDevice(keys: DeviceKeys, kind: string, body: Record<string, unknown>): Promise<void> {
    const device = this.device;
    const own = device.accountId;
    const id = newMessageId();
    const plaintext = device.envelope(kind, directConversation(own, own), body, id);
    await this.fanOut([keys], plaintext, { message_id: id, to: own }, { whole: true });
  }

  // --- the person's messages ------------------------------------------------------------------------
  sendText(conversation: string, text: string, replyTo?: string): Promise<ChatMessage> {
    if (!text.trim()) return Promise.reject(new MessengerError("nothing to send"));
    if (textTooLong(text))
      return Promise.reject(new MessengerError(`messages are limited to ${MAX_TEXT} characters; send a file instead`));
    const message = this.outgoing(conversation, { kind: "text", text, replyTo });
    return this.device.serial(async () => {
      await this.deliver(message);
      return message;
    });
  }

  /** Encrypts and uploads the file (progress 0..1), then sends its key and hashes inside E2E. */
  async sendFile(
    conversation: string,
    file: File,
    caption: string,
    progress: Progress,
    extra: Pick<ChatMessage, "replyTo" | "voice"> = {},
  ): Promise<ChatMessage> {
    const mimetype = file.type || "application/octet-stream";
    const read = async (): Promise<Uint8Array> => new Uint8Array(await file.arrayBuffer());
    const { media, bytes } = await this.media.upload(
      { name: file.name, type: mimetype, size: file.size, read },
      kindForMimetype(mimetype),
      progress,
    );
    const message = this.outgoing(conversation, { kind: "media", media, text: caption || undefined, ...extra });
    this.media.keep(message.id, bytes, mimetype);
    return this.device.serial(async () => {
      await this.deliver(message);
      return message;
    });
  }

  /** Resends every message of this device still `sending` or `failed` (after the socket is back). */
  async resendPending(): Promise<void> {
    const device = this.device;
    for (const message of [...device.messages.values()]) {
      if (
        message.outgoing &&
        message.senderDevice === device.deviceId &&
        (message.status === "sending" || message.status === "failed")
      ) {
        await this.deliver(message);
      }
    }
  }

  /** Retries a failed message (same id: receivers that already have it drop the copy). */
  retry(messageId: string): Promise<void> {
    return this.device.serial(async () => {
      const message = this.device.messages.get(messageId);
      if (message && message.status === "failed") await this.deliver(message);
    });
  }

  private outgoing(
    conversation: string,
    content: Pick<ChatMessage, "kind" | "text" | "media" | "replyTo" | "voice">,
  ): ChatMessage {
    const device = this.device;
    const message: ChatMessage = {
      id: newMessageId(),
      conversation,
      senderAccount: device.accountId,
      senderDevice: device.deviceId,
      ts: device.now(),
      outgoing: true,
      status: "sending",
      by: {},
      ...content,
    };
    device.markSeen(message.id);
    device.put(message);
    device.changed();
    return message;
  }

  /** Sends a text or media message to its conversation; records what happened. */
  private async deliver(message: ChatMessage): Promise<void> {
    const device = this.device;
    const body: Record<string, unknown> = {
      ...(message.kind === "media"
        ? { media: message.media, ...(message.text ? { caption: message.text } : {}) }
        : { text: message.text ?? "" }),
      ...(message.replyTo ? { reply_to: message.replyTo } : {}),
      ...(message.voice ? { voice: voiceJson(message.voice) } : {}),
    };
    const conversation = parseConversation(message.conversation, device.accountId);
    try {
      if (conversation.groupId) {
        const { members } = await this.sendGroup(conversation.groupId, message.kind, body, message.id);
        this.markSent(message, members);
      } else if (conversation.peer) {
        await this.sendDirect(conversation.peer, message.kind, body, message.id);
        this.markSent(message, conversation.peer === device.accountId ? [] : [conversation.peer]);
      } else {
        throw new MessengerError("unknown conversation");
      }
    } catch (error) {
      // No connection (never had one, or it dropped mid-send): the message stays queued here, shown as
      // pending, and goes out when the socket is back (resendPending), as the banner says. Only a refusal
      // (the server or the contact's keys said no) makes it "failed", with Retry.
      const offline = error instanceof SocketClosed || !device.connected;
      message.status = offline ? "sending" : "failed";
      message.error = offline ? undefined : describe(error);
    }
    device.put(message);
    await device.save();
    device.changed();
  }

  /** The server took `message` for `recipients` (kept by the next save). */
  private markSent(message: ChatMessage, recipients: string[]): void {
    message.recipients = recipients;
    message.status = "sent";
    message.status = statusFrom(message);
    message.error = undefined;
    this.device.put(message);
  }

  // --- receipts (§5.3) ------------------------------------------------------------------------------
  /** Text and media of other accounts that arrived (`delivered`) or were seen (`read`): told a moment later. */
  noteReceipts(status: ReceiptStatus, messages: ChatMessage[]): void {
    this.receipts.note(status, messages, this.device.accountId);
    this.scheduleReceipts();
  }

  /** Receipts go out a moment later, so one receipt covers whatever else arrives or is read meanwhile. */
  scheduleReceipts(): void {
    if (this.receiptTimer !== null || this.receipts.empty) return;
    this.receiptTimer = setTimeout(() => {
      this.receiptTimer = null;
      void this.device.serial(() => this.flushReceipts()).catch((error: unknown) => this.device.noteError(error));
    }, RECEIPT_DELAY_MS);
  }

  /** At most one receipt per sender account and status: "up to" its newest message in each conversation. */
  private async flushReceipts(): Promise<void> {
    if (!this.device.connected) return; // kept until the connection is back (attach schedules them again)
    const receipts = this.receipts.take();
    for (const { account, body } of receipts) {
      try {
        await this.sendDirect(account, "receipt", { ...body }, newMessageId());
      } catch (error) {
        this.device.lastError = `A ${body.status} receipt could not be sent: ${describe(error)}`;
      }
    }
  }

  /** The person looked at a conversation: mark its messages read and tell their senders. */
  markRead(conversation: string): void {
    const device = this.device;
    const unread = device.messages.unread(conversation);
    if (!unread.length) return;
    for (const m of unread) {
      m.read = true;
      device.put(m);
    }
    device.changed();
    void device.serial(() => device.save()).catch((error: unknown) => device.noteError(error));
    this.noteReceipts("read", unread);
  }

  close(): void {
    if (this.receiptTimer !== null) clearTimeout(this.receiptTimer);
  }
}

/** Removes `fields` (the very object) from `inFlight`. */
function forget(inFlight: Record<string, unknown>[], fields: Record<string, unknown>): void {
  const at = inFlight.indexOf(fields);
  if (at >= 0) inFlight.splice(at, 1);
}

/** A voice note as its body carries it (§16). */
function voiceJson(voice: VoiceNote): Record<string, unknown> {
  return { waveform: voice.waveform, ...(voice.durationMs === null ? {} : { duration_ms: voice.durationMs }) };
}
