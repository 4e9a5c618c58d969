/**
 * What every part of the messenger shares (the twin of client/messaging/device.py): this device's identity,
 * its Olm and Megolm state, what it keeps (one state record and the messages, ./idb.ts), the socket, and
 * the one way requests go out. Operations that touch ratchets run one at a time (`serial`), so state is
 * never interleaved; `changed` tells the page to render again.
 */
import type { Party } from "../calls/machine";
import type { Envelope } from "../crypto/envelope";
import { type LockstepSocket } from "../net/socket";
import { encodeEnvelope } from "./envelope";
import { describe, MessengerError } from "./errors";
import { GroupSessions, type GroupSessionsPickle } from "./groupSessions";
import { MessengerDb } from "./idb";
import type { ChatMessage } from "./model";
import { OlmDevice, type OlmDevicePickle } from "./olmDevice";

const MAX_SEEN_IDS = 20_000;
/** The longest request this app sends, in characters of JSON (the server takes 64 KiB frames). */
const MAX_FRAME = 60_000;

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

/** A group as this device knows it (./groups.ts). */
export interface GroupInfo {
  name: string;
  members: string[];
  left: boolean;
  version: number;
}

/** A verified account, kept to pin its key and list version (./contacts.ts). */
export interface ContactRecord {
  handle: string;
  display_name: string;
  key: string;
  version: number;
}

/** The state record: everything but the messages, saved together with them. */
export interface State {
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

export class Device {
  socket: LockstepSocket | null = null;
  online = false;
  lastError = "";
  /** Each decrypted `call` envelope, in queue order (calls/phone.ts, docs/protocol/messaging.md §14). */
  onCall: ((body: unknown, sender: Party, conversation: string, ts: number) => void) | null = null;
  /** A direct message that could not be decrypted, by sending account (a call with it ends). */
  onUndecryptable: ((accountId: string, reason: string) => void) | null = null;
  readonly messages = new Map<string, ChatMessage>();
  /** Message ids handled or sent here: a copy the server brings again is dropped unopened. */
  seen: Set<string>;
  private queue: Promise<unknown> = Promise.resolve();
  private dirty = new Set<string>();
  private listeners = new Set<() => void>();

  private constructor(
    readonly identity: Identity,
    private readonly db: MessengerDb,
    readonly olm: OlmDevice,
    readonly megolm: GroupSessions,
    public state: State,
  ) {
    this.seen = new Set(state.seen);
  }

  static async open(identity: Identity): Promise<Device> {
    const db = await MessengerDb.open(identity.deviceId);
    const loaded = await db.load();
    const state = loaded.state as Partial<State> | undefined; // this device wrote it, perhaps an older version
    const messages = loaded.messages as ChatMessage[];
    let device: Device;
    if (state?.v === 1 && state.olm && state.megolm) {
      const olm = await OlmDevice.unpickle(state.olm);
      device = new Device(identity, db, olm, GroupSessions.unpickle(state.megolm), state as State);
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
      device = new Device(identity, db, olm, megolm, fresh);
      await device.save();
    }
    for (const message of messages) device.messages.set(message.id, message);
    return device;
  }

  close(): void {
    this.db.close();
  }

  get accountId(): string {
    return this.identity.accountId;
  }

  get deviceId(): string {
    return this.identity.deviceId;
  }

  // --- change notification ------------------------------------------------------------------------
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed(): void {
    for (const listener of this.listeners) listener();
  }

  noteError(error: unknown): void {
    this.lastError = describe(error);
    this.changed();
  }

  // --- persistence ----------------------------------------------------------------------------------
  async save(): Promise<void> {
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

  /** Keeps `message` (written by the next `save`). */
  put(message: ChatMessage): void {
    this.messages.set(message.id, message);
    this.dirty.add(message.id);
  }

  /** Lists a conversation among the chats, even before it has a message. */
  ensureChat(conversation: string): void {
    if (!this.state.chats.includes(conversation)) this.state.chats.push(conversation);
  }

  /** Runs `work` after everything queued before it (ratchets and state are never used concurrently). */
  serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // --- the server -----------------------------------------------------------------------------------
  async request(op: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const socket = this.socket;
    if (!socket || !socket.isOpen) throw new MessengerError("not connected to the server");
    if (JSON.stringify(fields).length > MAX_FRAME)
      throw new MessengerError("this message is too large for one request to all devices; send it as a file");
    return socket.request(op, fields);
  }

  get connected(): boolean {
    return this.socket?.isOpen === true;
  }

  /** Server time in ms, as well as this device knows it. */
  now(): number {
    return this.socket?.serverNow() ?? Date.now();
  }

  /** A message from this device, its id marked seen: the server never brings back what this device sent,
   * and a copy under this id is dropped unopened. */
  envelope(kind: string, conversation: string, body: Record<string, unknown>, id: string): Uint8Array {
    this.seen.add(id);
    return encodeEnvelope({
      kind,
      id,
      conversation,
      senderAccount: this.accountId,
      senderDevice: this.deviceId,
      ts: this.now(),
      body,
    });
  }
}
