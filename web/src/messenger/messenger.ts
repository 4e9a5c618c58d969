/**
 * The browser's messaging client (messaging.md), the equivalent of src/lockstep/client/messenger.py:
 * publishes this device's key bundle and one-time keys, verifies contacts against their primary-signed
 * device lists, fans every message out over Olm (every device of the recipient, every other device of
 * ours) or Megolm (groups), receives its queue in sequence order exactly once, answers with receipts,
 * and moves media through the server encrypted. Everything it keeps lives in IndexedDB (./idb.ts).
 *
 *   const messenger = await Messenger.open(identity);
 *   messenger.attach(socket);            // after `auth`; events go to messenger.onEvent(event)
 *   await messenger.sendText(conversationId, "hi");
 *
 * Operations that touch ratchets run one at a time (`serial`), so state is never interleaved.
 */
import { b64uDecode, b64uEncode } from "../crypto/base64";
import { fromUtf8, randomBytes, utf8 } from "../crypto/bytes";
import { type Envelope, EnvelopeError } from "../crypto/envelope";
import { E2EError } from "../e2e";
import { GroupSessions, type GroupSessionsPickle } from "./groupSessions";
import { buildHistory, readHistory } from "./history";
import { OlmDevice, type OlmDevicePickle } from "./olmDevice";
import { type LockstepSocket, ServerError, type ServerEvent, SocketClosed } from "../net/socket";
import { MessengerDb } from "./idb";
import {
  type Contact,
  type DeviceKeys,
  type FormerDevice,
  KeyBundleError,
  sealBundle,
  sentWhileListed,
  signKeys,
  verifyFormerDevice,
  verifyLookup,
  verifyOneTimeKey,
} from "./keys";
import {
  type MediaDescriptor,
  MediaError,
  type Progress,
  decryptMedia,
  describeMedia,
  downloadBlob,
  encryptMedia,
  encryptedSize,
  kindForMimetype,
  uploadBlob,
} from "./media";
import { type ChatMessage, type Conversation, directConversation, groupConversation, statusFrom } from "./model";
import { describeRefusal } from "../net/refusals";
import { isJsonObject } from "../net/json";

export const ONE_TIME_KEYS_TARGET = 50;
const SEND_ATTEMPTS = 3;
const FETCH_LIMIT = 200;
const MAX_SEEN_IDS = 20_000;
const MAX_FRAME = 60_000;
export const MAX_TEXT = 65_536;

export interface Identity {
  accountId: string;
  deviceId: string;
  role: "primary" | "companion";
  /** The Lockstep device key (Ed25519, non-extractable) that signs this device's key bundle. */
  deviceKey: CryptoKey;
  /** This account's public key as the device learnt it when it was made or linked (never from a lookup). */
  accountKey: Uint8Array;
  /** The version of this account's device list the page holds: a look-up may never return an older one. */
  listVersion: number;
  handle: string;
  displayName: string;
}

/** Something went wrong that the person should read (a missing account, a key that changed…). */
export class MessengerError extends Error {
  override name = "MessengerError";
}

interface GroupInfo {
  name: string;
  members: string[];
  left: boolean;
  version: number;
}

interface ContactRecord {
  handle: string;
  display_name: string;
  key: string;
  version: number;
}

interface State {
  v: 1;
  olm: OlmDevicePickle;
  megolm: GroupSessionsPickle;
  bundle: Envelope | null;
  lastSeq: number;
  seen: string[];
  handles: Record<string, string>;
  contacts: Record<string, ContactRecord>;
  groups: Record<string, GroupInfo>;
  chats: string[];
  historyNote?: string;
  /** Primary only: companions that got a history bundle from this device. */
  historySentTo?: string[];
}

interface ServerMessage {
  seq: number;
  message_id: string;
  sender: { account_id: string; device_id: string };
  group_id: string | null;
  payload: Record<string, unknown>;
  server_time: number;
}

interface Opened {
  kind: string;
  id: string;
  conversation: string;
  senderAccount: string;
  senderDevice: string;
  ts: number;
  body: Record<string, unknown>;
}

export function newMessageId(): string {
  return b64uEncode(randomBytes(16));
}

export class Messenger {
  private socket: LockstepSocket | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private seen: Set<string>;
  private contactCache = new Map<string, Contact>();
  private dirty = new Set<string>();
  readonly messages = new Map<string, ChatMessage>();
  private listeners = new Set<() => void>();
  /** Object URLs of media this device already decrypted or sent (message id → blob: URL). */
  readonly mediaUrls = new Map<string, string>();
  online = false;
  lastError = "";

  private constructor(
    readonly identity: Identity,
    private readonly db: MessengerDb,
    private readonly olm: OlmDevice,
    private readonly megolm: GroupSessions,
    private state: State,
  ) {
    this.seen = new Set(state.seen);
  }

  static async open(identity: Identity): Promise<Messenger> {
    const db = await MessengerDb.open(identity.deviceId);
    const loaded = await db.load();
    const state = loaded.state as Partial<State> | undefined; // this device wrote it, perhaps an older version
    const messages = loaded.messages as ChatMessage[];
    let messenger: Messenger;
    if (state?.v === 1 && state.olm && state.megolm) {
      messenger = new Messenger(
        identity,
        db,
        await OlmDevice.unpickle(state.olm),
        GroupSessions.unpickle(state.megolm),
        state as State,
      );
    } else {
      const olm = await OlmDevice.create();
      const megolm = new GroupSessions();
      const fresh: State = {
        v: 1,
        olm: olm.pickle(),
        megolm: megolm.pickle(),
        bundle: null,
        lastSeq: 0,
        seen: [],
        handles: {},
        contacts: {},
        groups: {},
        chats: [],
      };
      messenger = new Messenger(identity, db, olm, megolm, fresh);
      await messenger.save();
    }
    for (const message of messages) messenger.messages.set(message.id, message);
    return messenger;
  }

  /** Deletes this device's messenger database (used when the device is unlinked). */
  static wipe(deviceId: string): Promise<void> {
    return MessengerDb.wipe(deviceId);
  }

  close(): void {
    this.detach();
    this.db.close();
    for (const url of this.mediaUrls.values()) URL.revokeObjectURL(url);
  }

  // --- change notification ------------------------------------------------------------------------
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  // --- persistence ----------------------------------------------------------------------------------
  private async save(): Promise<void> {
    let seen = [...this.seen];
    if (seen.length > MAX_SEEN_IDS) {
      seen = seen.slice(-MAX_SEEN_IDS);
      this.seen = new Set(seen);
    }
    this.state = { ...this.state, olm: this.olm.pickle(), megolm: this.megolm.pickle(), seen };
    const dirty = [...this.dirty].map((id) => this.messages.get(id)).filter((m): m is ChatMessage => m !== undefined);
    this.dirty.clear();
    await this.db.save(this.state, dirty);
  }

  private put(message: ChatMessage): void {
    this.messages.set(message.id, message);
    this.dirty.add(message.id);
  }

  /** Runs `work` after everything queued before it (ratchets and state are never used concurrently). */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // --- connection -----------------------------------------------------------------------------------
  /** Use an authenticated socket: publish keys, fetch everything queued, resend what never left. */
  attach(socket: LockstepSocket): Promise<void> {
    this.socket = socket;
    this.online = true;
    this.changed();
    return this.serial(async () => {
      try {
        await this.publishKeys().catch((error: unknown) => {
          // On a full server disk, still fetch what is waiting (SECURITY.md, "Full disk").
          if (!(error instanceof ServerError && (error.code === "storage_full" || error.code === "unavailable")))
            throw error;
        });
        await this.fetchAll();
        await this.refreshGroups();
        await this.resendPending();
        await this.syncHistory();
        this.lastError = "";
      } catch (error) {
        this.lastError = describe(error);
      }
      this.changed();
    });
  }

  /** The page accepted a newer list of this account's devices: never accept an older one from a look-up. */
  noteListVersion(version: number): void {
    this.identity.listVersion = Math.max(this.identity.listVersion, version);
  }

  detach(): void {
    this.socket = null;
    this.online = false;
    this.changed();
  }

  private async request(op: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const socket = this.socket;
    if (!socket || !socket.isOpen) throw new MessengerError("not connected to the server");
    if (JSON.stringify(fields).length > MAX_FRAME)
      throw new MessengerError("this message is too large for one request to all devices; send it as a file");
    return socket.request(op, fields);
  }

  private now(): number {
    return this.socket?.serverNow() ?? Date.now();
  }

  onEvent(event: ServerEvent): void {
    switch (event.event) {
      case "message":
        void this.serial(async () => {
          if (event.seq === this.state.lastSeq + 1) await this.handleBatch([event]);
          else if (event.seq > this.state.lastSeq + 1) await this.fetchAll();
        }).catch((error: unknown) => this.noteError(error));
        break;
      case "keys.low":
        void this.serial(() => this.publishKeys()).catch((error: unknown) => this.noteError(error));
        break;
      case "groups.changed":
        void this.serial(() => this.onGroupChanged(event)).catch((error: unknown) => this.noteError(error));
        break;
      case "devices.changed":
        this.contactCache.delete(this.identity.accountId);
        // A newly linked companion publishes its keys only after it signed in: try a few times.
        if (this.identity.role === "primary") {
          for (const delay of [500, 2_000, 5_000, 10_000, 20_000, 40_000]) {
            setTimeout(() => {
              if (this.socket)
                void this.serial(() => this.syncHistory()).catch((error: unknown) => this.noteError(error));
            }, delay);
          }
        }
        break;
      default:
        break;
    }
  }

  private noteError(error: unknown): void {
    this.lastError = describe(error);
    this.changed();
  }

  // --- keys (§3) ------------------------------------------------------------------------------------
  private async publishKeys(): Promise<number> {
    let fallback = null;
    if (this.state.bundle === null) {
      this.state.bundle = await sealBundle(
        this.identity.deviceKey,
        this.olm.account,
        this.identity.accountId,
        this.identity.deviceId,
        this.now(),
      );
      await this.olm.account.generateFallbackKey();
      [fallback] = await signKeys(this.olm.account, this.olm.account.fallbackKey(), true);
      this.olm.account.markKeysAsPublished();
      await this.save();
    }
    let result = await this.request("keys.upload", {
      bundle: this.state.bundle,
      ...(fallback ? { fallback_key: fallback } : {}),
    });
    let left = Number(result.one_time_keys_left);
    if (left < ONE_TIME_KEYS_TARGET / 2) {
      await this.olm.account.generateOneTimeKeys(ONE_TIME_KEYS_TARGET - left);
      const fresh = await signKeys(this.olm.account, this.olm.account.oneTimeKeys(), false);
      this.olm.account.markKeysAsPublished();
      await this.save(); // private halves on disk before the public halves are out
      result = await this.request("keys.upload", { bundle: this.state.bundle, one_time_keys: fresh });
      left = Number(result.one_time_keys_left);
    }
    return left;
  }

  // --- contacts -------------------------------------------------------------------------------------
  /** An account's verified devices and keys, cached for this page unless `refresh`. */
  async contact(query: { handle?: string; accountId?: string }, refresh = false): Promise<Contact> {
    let accountId = query.accountId;
    const handle = query.handle?.replace(/^@/, "").trim().toLowerCase();
    if (handle !== undefined) accountId = accountId ?? this.state.handles[handle];
    if (accountId !== undefined && !refresh) {
      const cached = this.contactCache.get(accountId);
      if (cached) return cached;
    }
    let result: Record<string, unknown>;
    try {
      result = await this.request("accounts.lookup", accountId === undefined ? { handle } : { account_id: accountId });
    } catch (error) {
      if (error instanceof ServerError && error.code === "account_unknown")
        throw new MessengerError(`There is no account ${handle ? "@" + handle : accountId} on this server.`);
      throw error;
    }
    const contact = await verifyLookup(result);
    const info = contact.account;
    if ((accountId === undefined && info.handle !== handle) || (accountId !== undefined && info.id !== accountId)) {
      throw new KeyBundleError("the server answered a look-up with another account; nothing was sent");
    }
    if (info.id === this.identity.accountId && info.key !== b64uEncode(this.identity.accountKey)) {
      throw new KeyBundleError("the server sent a different key for this very account");
    }
    const pinned = this.state.handles[info.handle];
    if (pinned !== undefined && pinned !== info.id) {
      throw new KeyBundleError(
        `@${info.handle}'s account key changed since you first talked; this may be another person ` +
          "(or the server) using that handle, so nothing was sent",
      );
    }
    if (info.id === this.identity.accountId && contact.list.version < this.identity.listVersion) {
      throw new KeyBundleError("the server sent an older device list for this account (rollback)");
    }
    const known = this.state.contacts[info.id];
    if (known && known.key !== info.key)
      throw new KeyBundleError(`@${info.handle}'s account key changed; nothing was sent`);
    if (known && contact.list.version < known.version)
      throw new KeyBundleError(`the server sent an older device list for @${info.handle} (rollback)`);
    this.state.handles[info.handle] = info.id;
    this.state.contacts[info.id] = {
      handle: info.handle,
      display_name: info.display_name,
      key: info.key,
      version: contact.list.version,
    };
    this.contactCache.set(info.id, contact);
    return contact;
  }

  handleOf(accountId: string): string | undefined {
    return this.state.contacts[accountId]?.handle;
  }

  nameOf(accountId: string): string {
    if (accountId === this.identity.accountId) return "You";
    const c = this.state.contacts[accountId];
    return c ? c.display_name || `@${c.handle}` : "Someone";
  }

  // --- Olm (§4) -------------------------------------------------------------------------------------
  private async olmPayloads(targets: DeviceKeys[], plaintext: Uint8Array): Promise<Record<string, unknown>[]> {
    const missing = targets.filter((t) => !this.olm.hasSession(t.identityKey));
    if (missing.length) {
      const claimed = (await this.request("keys.claim", { device_ids: missing.map((k) => k.deviceId) }))
        .devices as Record<string, Record<string, unknown> | undefined>;
      for (const keys of missing) {
        const entry = claimed[keys.deviceId];
        if (!entry || entry.one_time_key === null || entry.one_time_key === undefined)
          throw new MessengerError("A device of this contact has no one-time keys left; try again later.");
        await this.olm.startOutbound(keys.identityKey, await verifyOneTimeKey(entry.one_time_key, keys.signingKey));
      }
    }
    const sender = b64uEncode(this.olm.identityKey);
    const payloads: Record<string, unknown>[] = [];
    for (const keys of targets) {
      const message = await this.olm.encrypt(keys.identityKey, plaintext);
      payloads.push({
        device_id: keys.deviceId,
        type: "olm",
        olm_type: message.type,
        sender_key: sender,
        ciphertext: b64uEncode(message.body),
      });
    }
    return payloads;
  }

  // --- envelopes (§5) -------------------------------------------------------------------------------
  private envelope(kind: string, conversation: string, body: Record<string, unknown>, id: string): Uint8Array {
    // The server never brings back what this device sent: a copy under this id is dropped unopened.
    this.seen.add(id);
    return utf8(
      JSON.stringify({
        v: 1,
        kind,
        id,
        conversation,
        sender: { account_id: this.identity.accountId, device_id: this.identity.deviceId },
        ts: this.now(),
        body,
      }),
    );
  }

  // --- sending --------------------------------------------------------------------------------------
  private async sendDirect(peerId: string, kind: string, body: Record<string, unknown>, id: string): Promise<number> {
    const conversation = directConversation(this.identity.accountId, peerId);
    for (let attempt = 0; ; attempt++) {
      const peer = await this.contact({ accountId: peerId }, attempt > 0);
      const me = await this.contact({ accountId: this.identity.accountId }, attempt > 0);
      if (peer.keys.size === 0)
        throw new MessengerError(`@${peer.account.handle} has no device that can receive messages yet.`);
      const targets = new Map<string, DeviceKeys>();
      for (const c of [peer, me])
        for (const k of c.keys.values()) if (k.deviceId !== this.identity.deviceId) targets.set(k.deviceId, k);
      try {
        const payloads = await this.olmPayloads([...targets.values()], this.envelope(kind, conversation, body, id));
        // A receipt says so, so that it does not make the peer a known contact (SECURITY.md).
        const receipt = kind === "receipt" ? { receipt: true } : {};
        const result = await this.request("messages.send", { message_id: id, to: peerId, payloads, ...receipt });
        return Number(result.server_time);
      } catch (error) {
        if (error instanceof ServerError && error.code === "devices_changed" && attempt + 1 < SEND_ATTEMPTS) continue;
        throw error;
      } finally {
        await this.save(); // the ratchets moved, whatever happened to the request
      }
    }
  }

  private async sendGroup(
    groupId: string,
    kind: string,
    body: Record<string, unknown>,
    id: string,
  ): Promise<{ members: string[] }> {
    const conversation = groupConversation(groupId);
    for (let attempt = 0; ; attempt++) {
      const group = await this.request("groups.get", { group_id: groupId });
      this.noteGroup(group);
      const members = (group.members as { account_id: string }[]).map((m) => m.account_id);
      const published = (group.devices ?? {}) as Record<string, string[]>;
      const targets = new Map<string, DeviceKeys>();
      for (const accountId of members) {
        let contact = await this.contact({ accountId }, attempt > 0);
        const expected = new Set(published[accountId] ?? []);
        if (expected.size !== contact.keys.size || [...contact.keys.keys()].some((d) => !expected.has(d)))
          contact = await this.contact({ accountId }, true);
        for (const k of contact.keys.values()) if (k.deviceId !== this.identity.deviceId) targets.set(k.deviceId, k);
      }
      const share = await this.megolm.prepare(groupId, new Set(targets.keys()));
      try {
        if (share.devices.length) {
          const keyId = newMessageId();
          const payloads = await this.olmPayloads(
            share.devices.map((d) => targets.get(d) as DeviceKeys),
            this.envelope("group-key", conversation, share.body, keyId),
          );
          await this.request("messages.send", { message_id: keyId, group_id: groupId, payloads });
          this.megolm.markShared(groupId, share.devices);
        }
        const { sessionId, ciphertext } = await this.megolm.encrypt(
          groupId,
          this.envelope(kind, conversation, body, id),
        );
        await this.request("messages.send", {
          message_id: id,
          group_id: groupId,
          megolm: { session_id: sessionId, ciphertext: b64uEncode(ciphertext) },
        });
        return { members: members.filter((m) => m !== this.identity.accountId) };
      } catch (error) {
        if (error instanceof ServerError && error.code === "devices_changed" && attempt + 1 < SEND_ATTEMPTS) continue;
        throw error;
      } finally {
        await this.save();
      }
    }
  }

  /** Sends a text or media message to a conversation, recording it first (status `sending`). */
  private async deliver(message: ChatMessage): Promise<void> {
    const body: Record<string, unknown> =
      message.kind === "media"
        ? { media: message.media, ...(message.text ? { caption: message.text } : {}) }
        : { text: message.text ?? "" };
    const conversation = this.conversationInfo(message.conversation);
    try {
      if (conversation.groupId) {
        const { members } = await this.sendGroup(conversation.groupId, message.kind, body, message.id);
        message.recipients = members;
      } else if (conversation.peer) {
        await this.sendDirect(conversation.peer, message.kind, body, message.id);
        message.recipients = conversation.peer === this.identity.accountId ? [] : [conversation.peer];
      } else {
        throw new MessengerError("unknown conversation");
      }
      message.status = "sent";
      message.status = statusFrom(message);
      message.error = undefined;
    } catch (error) {
      // No connection (never had one, or it dropped mid-send): the message stays queued here, shown as
      // pending, and goes out when the socket is back (resendPending), as the banner says. Only a refusal
      // (the server or the contact's keys said no) makes it "failed", with Retry.
      const offline = error instanceof SocketClosed || !this.socket?.isOpen;
      message.status = offline ? "sending" : "failed";
      message.error = offline ? undefined : describe(error);
    }
    this.put(message);
    await this.save();
    this.changed();
  }

  sendText(conversation: string, text: string): Promise<ChatMessage> {
    if (!text.trim()) return Promise.reject(new MessengerError("nothing to send"));
    if (text.length > MAX_TEXT)
      return Promise.reject(new MessengerError(`messages are limited to ${MAX_TEXT} characters; send a file instead`));
    const message = this.outgoing(conversation, { kind: "text", text });
    return this.serial(async () => {
      await this.deliver(message);
      return message;
    });
  }

  /** Encrypts and uploads the file (progress 0..1), then sends its key and hashes inside E2E. */
  async sendFile(conversation: string, file: File, caption: string, progress: Progress): Promise<ChatMessage> {
    const token = await this.request("media.token");
    if (encryptedSize(file.size) > Number(token.max_bytes))
      throw new MessengerError(
        `${file.name} is too large: this server accepts up to ${formatBytes(Number(token.max_bytes))}`,
      );
    const bytes = new Uint8Array(await file.arrayBuffer());
    const mimetype = file.type || "application/octet-stream";
    const encrypted = await encryptMedia(bytes, kindForMimetype(mimetype));
    const uploaded = await uploadBlob(String(token.token), encrypted.blob, progress);
    const media = describeMedia(uploaded, encrypted, { name: file.name, type: mimetype, size: file.size });
    const message = this.outgoing(conversation, { kind: "media", media, text: caption || undefined });
    this.mediaUrls.set(message.id, URL.createObjectURL(new Blob([bytes], { type: mimetype })));
    return this.serial(async () => {
      await this.deliver(message);
      return message;
    });
  }

  private outgoing(conversation: string, content: Pick<ChatMessage, "kind" | "text" | "media">): ChatMessage {
    const message: ChatMessage = {
      id: newMessageId(),
      conversation,
      senderAccount: this.identity.accountId,
      senderDevice: this.identity.deviceId,
      ts: this.now(),
      outgoing: true,
      status: "sending",
      by: {},
      ...content,
    };
    this.seen.add(message.id);
    this.put(message);
    this.changed();
    return message;
  }

  private async resendPending(): Promise<void> {
    for (const message of [...this.messages.values()]) {
      if (
        message.outgoing &&
        message.senderDevice === this.identity.deviceId &&
        (message.status === "sending" || message.status === "failed")
      ) {
        await this.deliver(message);
      }
    }
  }

  /** Retries a failed message (same id: receivers that already have it drop the copy). */
  retry(messageId: string): Promise<void> {
    return this.serial(async () => {
      const message = this.messages.get(messageId);
      if (message && message.status === "failed") await this.deliver(message);
    });
  }

  // --- receiving (§7.2) -----------------------------------------------------------------------------
  private async fetchAll(): Promise<void> {
    let after = 0; // from the start of what the server holds: it also re-offers what was never acknowledged
    for (;;) {
      const result = await this.request("messages.fetch", { after, limit: FETCH_LIMIT });
      const items = (result.messages ?? []) as ServerMessage[];
      await this.handleBatch(items);
      if (!result.more || !items.length) return;
      after = Math.max(...items.map((m) => m.seq));
    }
  }

  private async handleBatch(items: ServerMessage[]): Promise<void> {
    if (!items.length) return;
    const fresh: ChatMessage[] = [];
    for (const item of [...items].sort((a, b) => a.seq - b.seq)) {
      const seq = item.seq;
      if (seq <= this.state.lastSeq) continue; // handled before a reload or a lost acknowledgement
      if (!this.seen.has(item.message_id)) {
        const shown = await this.open(item);
        this.seen.add(item.message_id);
        if (shown && !shown.outgoing && (shown.kind === "text" || shown.kind === "media")) fresh.push(shown);
      }
      this.state.lastSeq = seq;
    }
    await this.save(); // ratchets and messages on disk before the server forgets the ciphertext
    await this.request("messages.ack", { up_to: this.state.lastSeq });
    this.changed();
    await this.sendReceipts(fresh, "delivered");
  }

  /**
   * Checks an Olm sender key against the account's signed list. A device unlinked since comes back as a
   * FormerDevice: its caller checks the message was sent before the unlink (§3.1).
   */
  private async senderKeyOk(accountId: string, deviceId: string, senderKey: Uint8Array): Promise<FormerDevice | null> {
    const sameKey = (keys: DeviceKeys | undefined): boolean =>
      keys !== undefined && b64uEncode(keys.identityKey) === b64uEncode(senderKey);
    if (sameKey((await this.contact({ accountId })).keys.get(deviceId))) return null;
    const contact = await this.contact({ accountId }, true);
    if (sameKey(contact.keys.get(deviceId))) return null;
    if (!contact.list.devices.some((d) => d.device_id === deviceId)) {
      const result = await this.request("accounts.lookup", { account_id: accountId, former_device: deviceId });
      if (result.former_device) {
        const former = await verifyFormerDevice(result.former_device, contact, deviceId);
        if (sameKey(former.keys)) return former;
      }
    }
    throw new KeyBundleError("the sending device's key is not in its account's signed device list");
  }

  private async open(item: ServerMessage): Promise<ChatMessage | null> {
    const sender = item.sender;
    const groupId = item.group_id ?? null;
    const payload = item.payload;
    try {
      let plaintext: Uint8Array;
      let senderKey = "";
      let former: FormerDevice | null = null;
      if (payload.type === "olm") {
        const key = b64uDecode(String(payload.sender_key));
        if (key.length !== 32) throw new EnvelopeError("a sender key is 32 bytes");
        former = await this.senderKeyOk(sender.account_id, sender.device_id, key);
        const type = payload.olm_type === 0 ? 0 : payload.olm_type === 1 ? 1 : null;
        if (type === null) throw new EnvelopeError("an unknown Olm message type");
        plaintext = await this.olm.decrypt(key, type, b64uDecode(String(payload.ciphertext)));
        senderKey = b64uEncode(key);
      } else if (payload.type === "megolm" && groupId !== null) {
        plaintext = await this.megolm.decrypt(
          sender.device_id,
          String(payload.session_id),
          b64uDecode(String(payload.ciphertext)),
          groupId,
        );
      } else {
        throw new EnvelopeError("an unknown payload type");
      }
      const opened = parseEnvelope(plaintext);
      if (
        opened.id !== item.message_id ||
        opened.senderAccount !== sender.account_id ||
        opened.senderDevice !== sender.device_id
      ) {
        throw new EnvelopeError("the envelope's id or sender does not match how the message was routed");
      }
      if (former && !sentWhileListed(former, item.server_time, opened.ts))
        throw new KeyBundleError("this message was sent after its device was unlinked");
      this.checkConversation(opened, groupId);
      return await this.act(opened, payload.type === "olm", senderKey, groupId);
    } catch (error) {
      // The connection failed (or the server refused a look-up): leave the copy queued and retry later.
      // Anything else is this message's fault: show it as undecryptable, with the reason, and move on.
      if (
        error instanceof SocketClosed ||
        error instanceof ServerError ||
        (error instanceof MessengerError && !this.socket?.isOpen)
      )
        throw error;
      const conversation = groupId
        ? groupConversation(groupId)
        : directConversation(this.identity.accountId, sender.account_id);
      if (!groupId && sender.account_id === this.identity.accountId) return null; // our own device's control message
      if (this.messages.has(item.message_id)) return null; // a placeholder never replaces a stored message
      const message: ChatMessage = {
        id: item.message_id,
        conversation,
        kind: "undecryptable",
        senderAccount: sender.account_id,
        senderDevice: sender.device_id,
        ts: item.server_time,
        outgoing: false,
        read: true,
        error: describe(error),
      };
      this.ensureChat(conversation);
      this.put(message);
      return message;
    }
  }

  private checkConversation(opened: Opened, groupId: string | null): void {
    if (groupId !== null) {
      if (opened.conversation !== groupConversation(groupId))
        throw new EnvelopeError("a group message that names another conversation");
      return;
    }
    const parts = opened.conversation.split(":");
    if (parts[0] !== "direct" || parts.length !== 3 || !parts.slice(1).includes(this.identity.accountId))
      throw new EnvelopeError("a direct message for a conversation this account is not in");
    if (!parts.slice(1).includes(opened.senderAccount))
      throw new EnvelopeError("a direct message from outside its conversation");
  }

  private async act(
    opened: Opened,
    overOlm: boolean,
    senderKey: string,
    groupId: string | null,
  ): Promise<ChatMessage | null> {
    const body = opened.body;
    switch (opened.kind) {
      case "group-key": {
        if (!overOlm) throw new EnvelopeError("group keys travel only over Olm");
        if (
          typeof body.group_id !== "string" ||
          typeof body.session_id !== "string" ||
          typeof body.session_key !== "string"
        )
          throw new EnvelopeError("a malformed group key");
        if (body.group_id !== groupId) throw new EnvelopeError("a group key routed through another group");
        await this.megolm.addInbound(opened.senderDevice, senderKey, {
          group_id: body.group_id,
          session_id: body.session_id,
          session_key: body.session_key,
        });
        return null;
      }
      case "group-info": {
        if (groupId && body.group_id === groupId && typeof body.name === "string") {
          const group = this.group(groupId);
          group.name = body.name.slice(0, 100);
          this.ensureChat(groupConversation(groupId));
        }
        return null;
      }
      case "receipt": {
        const status = body.status === "read" ? "read" : body.status === "delivered" ? "delivered" : null;
        if (!status || !Array.isArray(body.message_ids)) throw new EnvelopeError("a malformed receipt");
        if (opened.senderAccount === this.identity.accountId) {
          // Another device of ours read these (its receipt to the sender reaches us too): read here as well.
          if (status !== "read") return null;
          for (const id of (body.message_ids as unknown[]).slice(0, 1000)) {
            const message = typeof id === "string" ? this.messages.get(id) : undefined;
            if (message && !message.outgoing && message.read === false) {
              message.read = true;
              this.put(message);
            }
          }
          return null;
        }
        for (const id of (body.message_ids as unknown[]).slice(0, 1000)) {
          const message = typeof id === "string" ? this.messages.get(id) : undefined;
          if (!message || !message.outgoing) continue;
          const by = { ...(message.by ?? {}) };
          if (by[opened.senderAccount] !== "read") by[opened.senderAccount] = status;
          message.by = by;
          if (!message.recipients) message.recipients = this.recipientsOf(message.conversation);
          message.status = statusFrom(message);
          this.put(message);
        }
        return null;
      }
      case "history":
        await this.importHistory(opened);
        return null;
      case "text":
      case "media": {
        const outgoing = opened.senderAccount === this.identity.accountId;
        if (opened.kind === "text" && (typeof body.text !== "string" || body.text.length > MAX_TEXT))
          throw new EnvelopeError("a text message without text");
        if (opened.kind === "media" && (typeof body.media !== "object" || body.media === null))
          throw new EnvelopeError("a media message without media");
        // Message ids are random and name one message for good: one already stored (ours, or anyone's)
        // is never replaced, whoever sends it again.
        if (this.messages.has(opened.id)) throw new EnvelopeError("a message id that is already used");
        const message: ChatMessage = {
          id: opened.id,
          conversation: opened.conversation,
          kind: opened.kind,
          senderAccount: opened.senderAccount,
          senderDevice: opened.senderDevice,
          ts: opened.ts,
          outgoing,
          text: typeof body.text === "string" ? body.text : typeof body.caption === "string" ? body.caption : undefined,
          media: opened.kind === "media" ? (body.media as MediaDescriptor) : undefined,
          ...(outgoing
            ? { status: "sent" as const, by: {}, recipients: this.recipientsOf(opened.conversation) }
            : { read: false }),
        };
        if (!this.state.contacts[opened.senderAccount])
          await this.contact({ accountId: opened.senderAccount }).catch(() => undefined);
        const peer = this.conversationInfo(opened.conversation).peer;
        if (peer && !this.state.contacts[peer]) await this.contact({ accountId: peer }).catch(() => undefined);
        this.ensureChat(opened.conversation);
        this.put(message);
        return message;
      }
      default:
        return null;
    }
  }

  /** History from this account's primary (a Python primary sends it to new companions): a media bundle. */
  private async importHistory(opened: Opened): Promise<void> {
    const me = await this.contact({ accountId: this.identity.accountId });
    const entry = me.list.devices.find((d) => d.device_id === opened.senderDevice);
    if (opened.senderAccount !== this.identity.accountId || !entry || entry.role !== "primary")
      throw new EnvelopeError("history comes only from this account's primary");
    const { messages: records, groups } = readHistory(
      await this.fetchMedia(opened.body.media as MediaDescriptor, () => undefined),
      this.identity.accountId,
    );
    for (const record of records) {
      if (this.messages.has(record.id)) continue;
      this.ensureChat(record.conversation);
      this.put(record);
      this.seen.add(record.id);
    }
    for (const { group_id: groupId, name } of groups) {
      const group = this.group(groupId);
      if (!group.name) group.name = name; // a name this device learnt itself (group-info) is newer
    }
    // Who wrote, who the chats are with, and who is in each group: verified here, as for live messages.
    const people = new Set<string>();
    for (const record of records) {
      people.add(record.senderAccount);
      const peer = this.conversationInfo(record.conversation).peer;
      if (peer) people.add(peer);
    }
    await this.learnContacts(people);
    await this.refreshGroups();
    const note =
      typeof opened.body.note === "string"
        ? opened.body.note.slice(0, 500)
        : `${records.length} messages were transferred from your phone`;
    this.state.historyNote = note;
  }

  /**
   * Primary only: every companion that publishes keys and has not had one gets a history bundle (the last
   * 30 days, at most 1,000 messages), encrypted and uploaded like a file; its key goes to that companion
   * alone over Olm, with a note of what was not transferred (the same bundle as messenger.py's).
   */
  private async syncHistory(): Promise<void> {
    if (this.identity.role !== "primary") return;
    const me = await this.contact({ accountId: this.identity.accountId }, true);
    const sentTo = new Set(this.state.historySentTo ?? []);
    for (const keys of [...me.keys.values()].sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1))) {
      if (keys.deviceId === this.identity.deviceId || sentTo.has(keys.deviceId)) continue;
      await this.sendHistory(keys);
      sentTo.add(keys.deviceId);
      this.state.historySentTo = [...sentTo];
      await this.save();
    }
  }

  private async sendHistory(keys: DeviceKeys): Promise<void> {
    const names = Object.entries(this.state.groups)
      .filter(([, g]) => g.name)
      .map(([groupId, g]) => ({ group_id: groupId, name: g.name }));
    const history = buildHistory(this.messages.values(), this.now(), names);
    const bundle = history.bytes;
    const token = await this.request("media.token");
    const encrypted = await encryptMedia(bundle, "document");
    const uploaded = await uploadBlob(String(token.token), encrypted.blob, () => undefined);
    const media = describeMedia(uploaded, encrypted, {
      name: "history.json",
      type: "application/json",
      size: bundle.length,
    });
    const body = { media, count: history.count, not_transferred: history.notTransferred, note: history.note };
    const id = newMessageId();
    const own = this.identity.accountId;
    try {
      const payloads = await this.olmPayloads([keys], this.envelope("history", directConversation(own, own), body, id));
      await this.request("messages.send", { message_id: id, to: own, payloads });
    } finally {
      await this.save();
    }
  }

  get historyNote(): string | undefined {
    return this.state.historyNote;
  }

  /** One receipt per sender account, for the text and media messages of other accounts. */
  private async sendReceipts(messages: ChatMessage[], status: "delivered" | "read"): Promise<void> {
    const bySender = new Map<string, string[]>();
    for (const m of messages) {
      if (m.outgoing || m.senderAccount === this.identity.accountId || (m.kind !== "text" && m.kind !== "media"))
        continue;
      bySender.set(m.senderAccount, [...(bySender.get(m.senderAccount) ?? []), m.id]);
    }
    for (const [accountId, ids] of bySender) {
      try {
        await this.sendDirect(accountId, "receipt", { status, message_ids: ids }, newMessageId());
      } catch (error) {
        this.lastError = `A ${status} receipt could not be sent: ${describe(error)}`;
      }
    }
  }

  /** The person looked at a conversation: mark its messages read and tell their senders. */
  markRead(conversation: string): Promise<void> {
    const unread = [...this.messages.values()].filter(
      (m) => m.conversation === conversation && !m.outgoing && m.read === false,
    );
    if (!unread.length) return Promise.resolve();
    for (const m of unread) {
      m.read = true;
      this.put(m);
    }
    this.changed();
    return this.serial(async () => {
      await this.save();
      await this.sendReceipts(unread, "read");
      await this.save();
    }).catch((error: unknown) => this.noteError(error));
  }

  // --- media ----------------------------------------------------------------------------------------
  async fetchMedia(media: MediaDescriptor, progress: Progress): Promise<Uint8Array> {
    const token = await this.request("media.token");
    const blob = await downloadBlob(String(token.token), media.media_id, media.enc_length, progress);
    return decryptMedia(blob, media);
  }

  /** The decrypted file of a media message as a blob: URL (downloaded, checked and cached once). */
  async mediaUrl(message: ChatMessage, progress: Progress): Promise<string> {
    const cached = this.mediaUrls.get(message.id);
    if (cached) return cached;
    if (!message.media) throw new MediaError("not a media message");
    const bytes = await this.fetchMedia(message.media, progress);
    const url = URL.createObjectURL(new Blob([bytes.slice().buffer], { type: safeMime(message.media.mimetype) }));
    this.mediaUrls.set(message.id, url);
    return url;
  }

  // --- conversations and groups ---------------------------------------------------------------------
  private ensureChat(conversation: string): void {
    if (!this.state.chats.includes(conversation)) this.state.chats.push(conversation);
  }

  private group(groupId: string): GroupInfo {
    let group = this.state.groups[groupId];
    if (!group) {
      group = { name: "", members: [], left: false, version: 0 };
      this.state.groups[groupId] = group;
    }
    return group;
  }

  private noteGroup(value: Record<string, unknown>): void {
    const groupId = String(value.group_id);
    const group = this.group(groupId);
    const version = Number(value.version ?? 0);
    if (version >= group.version && Array.isArray(value.members)) {
      group.version = version;
      group.members = (value.members as { account_id: string }[]).map((m) => m.account_id);
      group.left = !group.members.includes(this.identity.accountId);
    }
    this.ensureChat(groupConversation(groupId));
  }

  /**
   * What the server says of this account's groups now (`groups.list`): their members, and which groups it
   * is no longer in. `groups.changed` reaches only live sockets, so a device that was away (a group made,
   * a removal and re-adding) or that got its groups from a history transfer learns them here.
   */
  private async refreshGroups(): Promise<void> {
    const listed = ((await this.request("groups.list")).groups ?? []) as Record<string, unknown>[];
    const current = new Set<string>();
    for (const group of listed) {
      this.noteGroup(group);
      current.add(String(group.group_id));
    }
    for (const [groupId, group] of Object.entries(this.state.groups)) if (!current.has(groupId)) group.left = true;
    await this.learnContacts(new Set(Object.values(this.state.groups).flatMap((g) => g.members)));
    await this.save();
    this.changed();
  }

  /** Looks up (and verifies) accounts this device has no contact record of yet; at most 100 at a time. */
  private async learnContacts(accounts: Set<string>): Promise<void> {
    const unknown = [...accounts].filter((id) => !this.state.contacts[id]).slice(0, 100);
    for (const accountId of unknown) await this.contact({ accountId }).catch(() => undefined);
  }

  private async onGroupChanged(event: Record<string, unknown>): Promise<void> {
    this.noteGroup(event);
    const change = (event.change ?? {}) as Record<string, unknown>;
    const groupId = String(event.group_id);
    if (change.kind === "removed" && change.account_id === this.identity.accountId) this.megolm.forgetOutbound(groupId);
    await this.learnContacts(new Set(this.group(groupId).members));
    await this.save();
    this.changed();
  }

  /** Opens (or finds) the 1:1 chat with a handle; the contact is verified first. */
  startDirect(handle: string): Promise<string> {
    return this.serial(async () => {
      const contact = await this.contact({ handle }, true);
      const conversation = directConversation(this.identity.accountId, contact.account.id);
      this.ensureChat(conversation);
      await this.save();
      this.changed();
      return conversation;
    });
  }

  createGroup(name: string, handles: string[]): Promise<string> {
    return this.serial(async () => {
      const members: string[] = [];
      for (const handle of handles) members.push((await this.contact({ handle }, true)).account.id);
      const group = await this.request("groups.create", { members });
      const groupId = String(group.group_id);
      this.noteGroup(group);
      this.group(groupId).name = name.slice(0, 100);
      await this.save();
      await this.sendGroup(groupId, "group-info", { group_id: groupId, name: name.slice(0, 100) }, newMessageId());
      this.changed();
      return groupConversation(groupId);
    });
  }

  addMember(groupId: string, handle: string): Promise<void> {
    return this.serial(async () => {
      const contact = await this.contact({ handle }, true);
      this.noteGroup(await this.request("groups.add", { group_id: groupId, account_id: contact.account.id }));
      const name = this.group(groupId).name || "Group";
      await this.sendGroup(groupId, "group-info", { group_id: groupId, name }, newMessageId());
      this.changed();
    });
  }

  removeMember(groupId: string, accountId: string): Promise<void> {
    return this.serial(async () => {
      this.noteGroup(await this.request("groups.remove", { group_id: groupId, account_id: accountId }));
      this.megolm.forgetOutbound(groupId); // rotate now, whatever the next send sees
      await this.save();
      this.changed();
    });
  }

  groupMembers(groupId: string): string[] {
    return this.state.groups[groupId]?.members ?? [];
  }

  private recipientsOf(conversation: string): string[] {
    const info = this.conversationInfo(conversation);
    if (info.groupId) return this.groupMembers(info.groupId).filter((m) => m !== this.identity.accountId);
    return info.peer && info.peer !== this.identity.accountId ? [info.peer] : [];
  }

  conversationInfo(conversation: string): { peer?: string; groupId?: string } {
    if (conversation.startsWith("group:")) return { groupId: conversation.slice(6) };
    const parts = conversation.split(":");
    if (parts[0] !== "direct" || parts.length !== 3) return {};
    const other = parts[1] === this.identity.accountId ? parts[2] : parts[1];
    return { peer: other };
  }

  conversations(): Conversation[] {
    const byConversation = new Map<string, ChatMessage[]>();
    for (const m of this.messages.values())
      byConversation.set(m.conversation, [...(byConversation.get(m.conversation) ?? []), m]);
    const ids = new Set([...this.state.chats, ...byConversation.keys()]);
    const out: Conversation[] = [];
    for (const id of ids) {
      const info = this.conversationInfo(id);
      const list = (byConversation.get(id) ?? []).sort((a, b) => a.ts - b.ts);
      const last = list[list.length - 1];
      const group = info.groupId ? this.state.groups[info.groupId] : undefined;
      const title = info.groupId
        ? group?.name || "Group"
        : info.peer
          ? this.state.contacts[info.peer]
            ? `${this.state.contacts[info.peer]?.display_name} (@${this.state.contacts[info.peer]?.handle})`
            : "Contact"
          : id;
      out.push({
        id,
        title,
        kind: info.groupId ? "group" : "direct",
        peer: info.peer,
        groupId: info.groupId,
        left: group?.left,
        last,
        unread: list.filter((m) => !m.outgoing && m.read === false).length,
        updated: last?.ts ?? 0,
      });
    }
    return out.sort((a, b) => b.updated - a.updated);
  }

  messagesOf(conversation: string): ChatMessage[] {
    return [...this.messages.values()]
      .filter((m) => m.conversation === conversation)
      .sort((a, b) => a.ts - b.ts || (a.id < b.id ? -1 : 1));
  }
}

function parseEnvelope(plaintext: Uint8Array): Opened {
  const parsed = JSON.parse(fromUtf8(plaintext)) as unknown;
  if (!isJsonObject(parsed)) throw new EnvelopeError("not a version 1 message envelope");
  const value = parsed;
  if (value.v !== 1) throw new EnvelopeError("not a version 1 message envelope");
  const sender = value.sender as Record<string, unknown> | undefined;
  if (!sender || typeof sender.account_id !== "string" || typeof sender.device_id !== "string")
    throw new EnvelopeError("'sender' must name an account and a device");
  if (typeof value.body !== "object" || value.body === null) throw new EnvelopeError("'body' must be an object");
  if (!Number.isInteger(value.ts)) throw new EnvelopeError("'ts' must be an integer");
  if (typeof value.conversation !== "string" || !/^(direct|group):/.test(value.conversation))
    throw new EnvelopeError("'conversation' must be a direct: or group: id");
  if (typeof value.id !== "string" || !/^[A-Za-z0-9_-]{16,64}$/.test(value.id))
    throw new EnvelopeError("a message id is 16 to 64 base64url characters");
  if (typeof value.kind !== "string") throw new EnvelopeError("unknown message kind");
  return {
    kind: value.kind,
    id: value.id,
    conversation: value.conversation,
    senderAccount: sender.account_id,
    senderDevice: sender.device_id,
    ts: value.ts as number,
    body: value.body as Record<string, unknown>,
  };
}

/** Only image types the browser renders safely inline keep their type; everything else is a download. */
function safeMime(mimetype: string): string {
  return /^(image\/(png|jpeg|gif|webp|avif)|video\/(mp4|webm)|audio\/(mpeg|ogg|webm|wav))$/.test(mimetype)
    ? mimetype
    : "application/octet-stream";
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${Math.round(n / 1024 / 1024)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}

export function describe(error: unknown): string {
  if (error instanceof MessengerError || error instanceof KeyBundleError || error instanceof MediaError)
    return error.message;
  if (error instanceof ServerError) return describeRefusal(error, "messaging");
  if (error instanceof E2EError) return `Could not decrypt: ${error.name}`;
  if (error instanceof Error && error.name === "SocketClosed") return "The connection to the server was lost.";
  return error instanceof Error ? error.name : "Something went wrong";
}
