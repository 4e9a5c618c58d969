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

export interface OlmDevicePickle {
  account: OlmAccountPickle;
  counter: number;
  sessions: Record<string, { pickle: OlmSessionPickle; lastUsed: number }[]>;
}

interface Entry {
  session: OlmSession;
  lastUsed: number;
}

export class OlmDevice {
  private counter = 0;
  private readonly sessions = new Map<string, Entry[]>();

  private constructor(readonly account: OlmAccount) {}

  static async create(): Promise<OlmDevice> {
    return new OlmDevice(await OlmAccount.create());
  }

  static async unpickle(pickle: OlmDevicePickle): Promise<OlmDevice> {
    const device = new OlmDevice(OlmAccount.unpickle(pickle.account));
    device.counter = pickle.counter;
    for (const [peer, entries] of Object.entries(pickle.sessions)) {
      const restored: Entry[] = [];
      for (const entry of entries)
        restored.push({ session: await OlmSession.unpickle(entry.pickle), lastUsed: entry.lastUsed });
      device.sessions.set(peer, restored);
    }
    return device;
  }

  pickle(): OlmDevicePickle {
    const sessions: OlmDevicePickle["sessions"] = {};
    for (const [peer, entries] of this.sessions)
      sessions[peer] = entries.map((e) => ({ pickle: e.session.pickle(), lastUsed: e.lastUsed }));
    return { account: this.account.pickle(), counter: this.counter, sessions };
  }

  /** The Curve25519 identity key, raw. */
  get identityKey(): Uint8Array {
    return decodeBase64(this.account.curve25519Key);
  }

  hasSession(peerIdentityKey: Uint8Array): boolean {
    return Boolean(this.sessions.get(b64uEncode(peerIdentityKey))?.length);
  }

  private touch(peer: string, entry: Entry): void {
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
    const entry = this.sessions.get(b64uEncode(peerIdentityKey))?.[0];
    if (!entry) throw new SessionMismatchError("no Olm session with this device; claim a one-time key first");
    return entry.session.encrypt(plaintext);
  }

  async decrypt(peerIdentityKey: Uint8Array, type: 0 | 1, body: Uint8Array): Promise<Uint8Array> {
    const peer = b64uEncode(peerIdentityKey);
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
