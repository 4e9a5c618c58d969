/**
 * What every part of the messenger shares (the twin of client/messaging/device.py): this device's identity,
 * its Olm and Megolm state, what it keeps (./messageStore.ts: state sections, one record per message, per
 * seen id and per peer device's Olm sessions, written once per batch; in memory the messages are indexed by
 * conversation, ./chatIndex.ts, and unsealed after the page starts, ./storedChats.ts), the socket, and the
 * one way requests go out. Operations that touch ratchets run one at a time (`serial`), so state is never
 * interleaved; `changed` tells the page to render again, with the messages that changed.
 */
import type { Party } from "../calls/machine";
import type { Envelope } from "../crypto/envelope";
import { type LockstepSocket } from "../net/socket";
import { encodeEnvelope } from "./envelope";
import { describe, MessengerError } from "./errors";
import { GroupSessions, type GroupSessionsPickle } from "./groupSessions";
import { ChatIndex } from "./chatIndex";
import { type Loaded, MessageStore } from "./messageStore";
import type { ChatMessage } from "./model";
import { OlmDevice, type OlmDevicePickle, type PeerSessionsPickle } from "./olmDevice";
import { StoredChats } from "./storedChats";

/** The longest request this app sends, in characters of JSON (the server takes 64 KiB frames). */
/** The longest request this client sends, in characters of JSON (the server takes 64 KiB frames). */
export const MAX_FRAME = 60_000;
export const TOO_LARGE = "this message is too large for one request to all devices; send it as a file";

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
  /** Accounts this device refuses as members: a device on probation added them, or made the group
   * (linking.md §4.6). They get no group key from this device. */
  refused?: string[];
}

/** A verified account, kept to pin its key and list version (./contacts.ts). */
export interface ContactRecord {
  handle: string;
  display_name: string;
  key: string;
  version: number;
}

/** The first version's one record: the state below, with the pickles and every seen id in it. */
interface LegacyState extends Omit<State, "v"> {
  v: 1;
  olm: OlmDevicePickle;
  megolm: GroupSessionsPickle;
  seen: string[];
}

/** What the messenger keeps besides messages, ratchets and seen ids (the store's `core` section). */
export interface State {
  v: 2;
  bundle: Envelope | null;
  lastSeq: number;
  handles: Record<string, string>;
  contacts: Record<string, ContactRecord>;
  groups: Record<string, GroupInfo>;
  chats: string[];
  historyNote?: string;
  /** Primary only: companions that got a history bundle from this device. */
  historySentTo?: string[];
  /** Reactions, edits and deletes whose message is not here yet (./messageChanges.ts). */
  pendingActions?: Record<string, unknown>[];
  /** Reactions, edits and deletes made while offline, as history records, oldest first (./messageChanges.ts). */
  unsentActions?: Record<string, unknown>[];
  /** "Share last seen and online" (§15.5); absent means on. */
  shareLastSeen?: boolean;
  /** `messages.send` requests written here before they went out and not yet answered (./outbox.ts,
   * `sendSaved`): sent again, these very ciphertexts, when the connection is back. */
  inFlight?: Record<string, unknown>[];
}

export class Device {
  socket: LockstepSocket | null = null;
  online = false;
  lastError = "";
  /** Each decrypted `call` envelope, in queue order (calls/phone.ts, docs/protocol/messaging.md §14). */
  onCall: ((body: unknown, sender: Party, conversation: string, ts: number) => void) | null = null;
  /** A direct message that could not be decrypted, by sending account (a call with it ends). */
  onUndecryptable: ((accountId: string, reason: string) => void) | null = null;
  /** The messages unsealed so far, by conversation (whole conversations only: see ./storedChats.ts). */
  readonly messages = new ChatIndex();
  /** The conversations in the store, with what the chat list shows of those not unsealed yet. */
  readonly chats: StoredChats;
  /** Message ids handled or sent here: a copy the server brings again is dropped unopened. */
  private readonly seen: Set<string>;
  /** Ids seen since the last save (each is a record of its own in the store). */
  private newlySeen: string[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  /** The `ts` of the envelopes this device wrote lately, by message id (see `stampOf`). */
  private stamps = new Map<string, number>();
  /** Messages changed since the last save. */
  private dirty = new Set<string>();
  /** Messages changed since listeners were last told. */
  private changedIds = new Set<string>();
  private listeners = new Set<(changed: ReadonlySet<string>) => void>();

  private constructor(
    readonly identity: Identity,
    private readonly db: MessageStore,
    readonly olm: OlmDevice,
    readonly megolm: GroupSessions,
    public state: State,
    seen: string[],
    stored: Pick<Loaded<ChatMessage>, "conversations" | "summaries"> = { conversations: [], summaries: new Map() },
  ) {
    this.seen = new Set(seen);
    this.chats = new StoredChats(db, this.messages, new Set(stored.conversations), stored.summaries, (ids) => {
      for (const id of ids) this.changedIds.add(id);
      this.changed();
    });
  }

  /**
   * The device with its state, ratchets and chat summaries: the page can draw the chat list now. Messages
   * are unsealed after (`loadAll` is the first thing `serial` runs), so all that changes them waits for it.
   * `existing`: open only a database that is there (MessageStore.open).
   */
  static async open(identity: Identity, existing = false): Promise<Device> {
    const db = await MessageStore.open(identity.deviceId, existing);
    const loaded = await db.load<ChatMessage>();
    // This device wrote it, perhaps an older version: the first version kept one record for everything.
    const legacy = loaded.legacy as Partial<LegacyState> | undefined;
    const sections = loaded.sections as { core?: Partial<State>; olm?: OlmDevicePickle; megolm?: GroupSessionsPickle };
    let device: Device;
    if (legacy?.v === 1 && legacy.olm && legacy.megolm) {
      const { olm, megolm, seen, ...rest } = legacy as LegacyState;
      const unpickled = await OlmDevice.unpickle(olm);
      device = new Device(identity, db, unpickled, GroupSessions.unpickle(megolm), { ...rest, v: 2 }, []);
      for (const id of seen) device.markSeen(id);
      for (const message of loaded.legacyMessages) device.put(message); // written again, with index fields
      await device.save(true);
    } else if (sections.core?.v === 2 && sections.olm && sections.megolm) {
      const olm = await OlmDevice.unpickle(sections.olm, loaded.olmSessions as Map<number, PeerSessionsPickle>);
      const megolm = GroupSessions.unpickle(sections.megolm);
      device = new Device(identity, db, olm, megolm, sections.core as State, loaded.seen, loaded);
      void device
        .serial(async () => {
          await device.chats.loadAll();
          performance.mark("lockstep:chats-unsealed");
          if (device.chats.hasStale) await device.save(); // summaries an older version did not write
        })
        .catch((error: unknown) => device.noteError(error)); // a record that does not open: say so
    } else {
      const fresh: State = { v: 2, bundle: null, lastSeq: 0, handles: {}, contacts: {}, groups: {}, chats: [] };
      device = new Device(identity, db, await OlmDevice.create(), new GroupSessions(), fresh, []);
      await device.save();
    }
    return device;
  }

  /** Deletes a device's messenger database (keys, sessions and messages), e.g. once it was unlinked. */
  static wipe(deviceId: string): Promise<void> {
    return MessageStore.wipe(deviceId);
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
  /** `listener` hears of every change, with the ids of the messages that changed (new ones included). */
  subscribe(listener: (changed: ReadonlySet<string>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed(): void {
    const changed = this.changedIds;
    this.changedIds = new Set();
    for (const listener of this.listeners) listener(changed);
  }

  noteError(error: unknown): void {
    this.lastError = describe(error);
    this.changed();
  }

  // --- persistence ----------------------------------------------------------------------------------
  /**
   * One transaction: the state, ratchets, changed messages and newly seen ids. The store leaves out a section
   * that did not change, so what a save writes depends on what changed, not on how much is kept.
   */
  async save(dropLegacy = false): Promise<void> {
    const messages = [...this.dirty]
      .map((id) => this.messages.get(id))
      .filter((m): m is ChatMessage => m !== undefined);
    const seen = this.newlySeen;
    const summaries = this.chats.takeSummaries();
    const olmSessions = this.olm.takeChangedSessions();
    this.dirty.clear();
    this.newlySeen = [];
    try {
      await this.db.commit({
        sections: { core: this.state, olm: this.olm.pickle(), megolm: this.megolm.pickle() },
        olmSessions: olmSessions.records,
        messages,
        summaries,
        seen,
        dropLegacy,
      });
    } catch (error) {
      for (const message of messages) this.dirty.add(message.id); // written with the next save
      this.newlySeen.push(...seen);
      this.chats.restore(summaries.keys());
      this.olm.restoreChanged(olmSessions.peers);
      throw error;
    }
  }

  /** Keeps `message` (written by the next `save`; listeners hear of it with the next `changed`). */
  put(message: ChatMessage): void {
    this.messages.put(message);
    this.chats.touch(message.conversation);
    this.dirty.add(message.id);
    this.changedIds.add(message.id);
  }

  /** Listeners redraw `id` with the next `changed` (it shows something that changed; nothing to save). */
  touch(id: string): void {
    this.changedIds.add(id);
  }

  /** Whether a message id was handled or sent here: a copy the server brings again is dropped unopened. */
  hasSeen(id: string): boolean {
    return this.seen.has(id);
  }

  markSeen(id: string): void {
    if (this.seen.has(id)) return;
    this.seen.add(id);
    this.newlySeen.push(id);
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
    if (JSON.stringify(fields).length > MAX_FRAME) throw new MessengerError(TOO_LARGE);
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
    this.markSeen(id);
    const ts = this.now();
    if (this.stamps.size >= 64) this.stamps.clear();
    this.stamps.set(id, ts);
    return encodeEnvelope({
      kind,
      id,
      conversation,
      senderAccount: this.accountId,
      senderDevice: this.deviceId,
      ts,
      body,
    });
  }

  /** The signed `ts` of the last envelope this device wrote under `id` (what every receiver saw). */
  stampOf(id: string): number | undefined {
    return this.stamps.get(id);
  }
}
