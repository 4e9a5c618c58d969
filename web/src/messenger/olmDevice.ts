/**
 * One device's Olm account and its sessions with peer devices, with messaging.md §4's session choice
 * (the twin of lockstep.e2e.olm.OlmDevice). No I/O: `pickle()` gives what IndexedDB stores.
 *
 * - Sending uses the peer's preferred session: the one that most recently decrypted a message from the
 *   peer or was most recently created; with none, the caller claims a one-time key and `startOutbound`s.
 * - A pre-key message that matches a session (same session id) is decrypted by it; otherwise a new
 *   inbound session is created from it (consuming the one-time key) and becomes preferred.
 * - A normal message is tried with the peer's sessions, preferred first; the one that works is preferred.
 *   One whose ratchet key a session already knows is tried with that session only; one under a ratchet
 *   key none knows is tried until NEW_CHAIN_BUDGET chain steps are spent (forged messages stay cheap).
 * - At most 5 sessions per peer, least recently used dropped first. Duplicates are dropped by message id
 *   before decrypting (by the caller): an Olm message key works once.
 *
 * The store keeps each peer's sessions as a record of its own (`takeChangedSessions`): a save writes the
 * peers this device encrypted to or decrypted from since the last one, not every session it holds.
 */
import { b64uEncode } from "../crypto/base64";
import {
  E2EError,
  MAX_MESSAGE_GAP,
  MESSAGE_TYPE_NORMAL,
  OlmAccount,
  type OlmAccountPickle,
  type OlmMessage,
  OlmSession,
  type OlmSessionPickle,
  PreKeyMessage,
  SessionMismatchError,
  decodeBase64,
  decodeOlmMessage,
} from "../e2e";

export const MAX_SESSIONS_PER_PEER = 5;
/**
 * Chain steps one normal message under an unknown ratchet key may cost across the peer's sessions: at
 * index 799 or below all five are tried; at the largest gap (2000), the two most recently used.
 */
export const NEW_CHAIN_BUDGET = 2 * (MAX_MESSAGE_GAP + 1);

/** One peer device's sessions, most recently used first, as the store keeps them. */
export type PeerSessionsPickle = { pickle: OlmSessionPickle; lastUsed: number }[];

/**
 * What the store keeps of the device besides the sessions: the account, and the number of each peer's
 * record (the store keeps each peer's sessions as a record of its own, written only when they changed:
 * a device in a group of 1,024 has a session with each of 2,047 devices, and a message moves one).
 * Numbers, not keys, name the records: which devices this one talks to stays sealed.
 */
export interface OlmDevicePickle {
  account: OlmAccountPickle;
  peers?: Record<string, number>;
  /** Before sessions were records of their own: every peer's sessions here (read, never written). */
  sessions?: Record<string, PeerSessionsPickle>;
  counter?: number;
}

interface Entry {
  session: OlmSession;
  lastUsed: number;
}

export class OlmDevice {
  private counter = 0;
  private readonly sessions = new Map<string, Entry[]>();
  private readonly peerNumbers = new Map<string, number>();
  /** Peers whose sessions may have changed since they were last taken for a save. */
  private changed = new Set<string>();

  private constructor(readonly account: OlmAccount) {}

  static async create(): Promise<OlmDevice> {
    return new OlmDevice(await OlmAccount.create());
  }

  /** The device from its pickle and its peers' session records (by number). */
  static async unpickle(
    pickle: OlmDevicePickle,
    peerRecords: ReadonlyMap<number, PeerSessionsPickle> = new Map(),
  ): Promise<OlmDevice> {
    const device = new OlmDevice(OlmAccount.unpickle(pickle.account));
    const byPeer = new Map<string, PeerSessionsPickle>();
    for (const [peer, number] of Object.entries(pickle.peers ?? {})) {
      device.peerNumbers.set(peer, number);
      byPeer.set(peer, peerRecords.get(number) ?? []);
    }
    for (const [peer, entries] of Object.entries(pickle.sessions ?? {})) {
      byPeer.set(peer, entries);
      device.changed.add(peer); // kept in the old section: written as a record of its own next time
    }
    let counter = pickle.counter ?? 0;
    for (const [peer, entries] of byPeer) {
      const restored: Entry[] = [];
      for (const entry of entries) {
        restored.push({ session: await OlmSession.unpickle(entry.pickle), lastUsed: entry.lastUsed });
        counter = Math.max(counter, entry.lastUsed);
      }
      device.sessions.set(peer, restored);
    }
    device.counter = counter; // the newest use anywhere: what comes next is used later
    return device;
  }

  /** The account and the numbers of the peers' records (the sessions are `takeChangedSessions`'s). */
  pickle(): OlmDevicePickle {
    for (const peer of this.sessions.keys()) this.numberOf(peer);
    return { account: this.account.pickle(), peers: Object.fromEntries(this.peerNumbers) };
  }

  /**
   * The sessions of every peer that may have changed since the last call, by record number: what a save
   * writes. If the save fails, `restoreChanged` puts them back for the next one.
   */
  takeChangedSessions(): { records: Map<number, PeerSessionsPickle>; peers: string[] } {
    const peers = [...this.changed];
    this.changed = new Set();
    const records = new Map<number, PeerSessionsPickle>();
    for (const peer of peers) {
      const entries = this.sessions.get(peer) ?? [];
      records.set(
        this.numberOf(peer),
        entries.map((e) => ({ pickle: e.session.pickle(), lastUsed: e.lastUsed })),
      );
    }
    return { records, peers };
  }

  restoreChanged(peers: Iterable<string>): void {
    for (const peer of peers) this.changed.add(peer);
  }

  private numberOf(peer: string): number {
    let number = this.peerNumbers.get(peer);
    if (number === undefined) {
      number = this.peerNumbers.size + 1;
      this.peerNumbers.set(peer, number);
    }
    return number;
  }

  /** The Curve25519 identity key, raw. */
  get identityKey(): Uint8Array {
    return decodeBase64(this.account.curve25519Key);
  }

  hasSession(peerIdentityKey: Uint8Array): boolean {
    return Boolean(this.sessions.get(b64uEncode(peerIdentityKey))?.length);
  }

  private touch(peer: string, entry: Entry): void {
    this.changed.add(peer);
    this.counter += 1;
    entry.lastUsed = this.counter;
    const entries = this.sessions.get(peer) ?? [];
    if (!entries.includes(entry)) entries.push(entry);
    entries.sort((a, b) => b.lastUsed - a.lastUsed);
    entries.length = Math.min(entries.length, MAX_SESSIONS_PER_PEER);
    this.sessions.set(peer, entries);
  }

  /** A new outbound session from the peer's (verified) one-time key; it becomes preferred. */
  async startOutbound(peerIdentityKey: Uint8Array, oneTimeKey: Uint8Array): Promise<void> {
    const session = await this.account.createOutboundSession(peerIdentityKey, oneTimeKey);
    this.touch(b64uEncode(peerIdentityKey), { session, lastUsed: 0 });
  }

  async encrypt(peerIdentityKey: Uint8Array, plaintext: Uint8Array): Promise<OlmMessage> {
    const peer = b64uEncode(peerIdentityKey);
    const entry = this.sessions.get(peer)?.[0];
    if (!entry) throw new SessionMismatchError("no Olm session with this device; claim a one-time key first");
    this.changed.add(peer); // encrypting moves the sending chain
    return entry.session.encrypt(plaintext);
  }

  async decrypt(peerIdentityKey: Uint8Array, type: 0 | 1, body: Uint8Array): Promise<Uint8Array> {
    const peer = b64uEncode(peerIdentityKey);
    // Whatever happens below, the peer's sessions are written with the next save: a failed attempt leaves
    // a session as it was, but being sure costs one small record.
    this.changed.add(peer);
    let entries = [...(this.sessions.get(peer) ?? [])];
    let newChainSteps = 0;
    if (type === 0) {
      const preKey = PreKeyMessage.decode(body);
      const matching = entries.filter((e) => e.session.matches(preKey));
      if (!matching.length) {
        const { session, plaintext } = await this.account.createInboundSession(peerIdentityKey, preKey);
        this.touch(peer, { session, lastUsed: 0 });
        return plaintext;
      }
      entries = matching;
    } else {
      // A ratchet key is drawn at random by one session's peer: a session that knows it is the only one
      // that can read the message, and trying the others would only cost a forged message more work.
      const normal = decodeOlmMessage({ type, body });
      const inner = normal.type === MESSAGE_TYPE_NORMAL ? normal.message : null;
      const knowing = inner ? entries.filter((e) => e.session.knowsRatchetKey(inner)) : [];
      if (knowing.length) entries = knowing;
      else if (inner) newChainSteps = inner.chainIndex + 1;
    }
    let last: unknown = new SessionMismatchError("no Olm session with this device");
    let budget = NEW_CHAIN_BUDGET;
    for (const entry of entries) {
      // Under a ratchet key no session knows, each try starts a chain from index 0: stop once the
      // budget is spent, so a forged message costs a bounded amount of work whatever its index.
      if ((budget -= newChainSteps) < 0) break;
      try {
        const plaintext = await entry.session.decrypt({ type, body });
        this.touch(peer, entry);
        return plaintext;
      } catch (error) {
        if (!(error instanceof E2EError)) throw error;
        last = error;
      }
    }
    throw last;
  }
}
