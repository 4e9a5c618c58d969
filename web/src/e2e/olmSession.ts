/**
 * An Olm session: the Double Ratchet of olm.md "The Olm Algorithm" with Olm's KDFs, in the states
 * vodozemac keeps (so both sides make the same decisions on every message):
 *
 *   sending chain  active   (R_i, our ratchet key T_i, chain key C(i,j), j)  — we can encrypt now
 *                  inactive (R_i, their ratchet key T_i)                     — a fresh T_{i+1} is made on
 *                                                                            the next encrypt
 *   receiving chains, newest last, at most MAX_RECEIVING_CHAINS: (T_i, C(i,j), j, skipped message keys)
 *
 * KDFs (olm.md):
 *   "Initial setup"           R_0 ∥ C(0,0) = HKDF(0, S, "OLM_ROOT", 64), S = the triple Diffie-Hellman
 *   "Advancing the root key"  R_i ∥ C(i,0) = HKDF(R_{i-1}, ECDH(T_{i-1}, T_i), "OLM_RATCHET", 64)
 *   "Advancing the chain key" C(i,j) = HMAC(C(i,j-1), 0x02)
 *   "Creating a message key"  M(i,j) = HMAC(C(i,j), 0x01)
 */

import { encodeBase64, decodeBase64 } from "../crypto/base64";
import { Cipher } from "./cipher";
import { E2EError, MessageGapError, MissingMessageKeyError, PickleError } from "./errors";
import {
  MESSAGE_TYPE_NORMAL,
  MESSAGE_TYPE_PRE_KEY,
  OlmNormalMessage,
  PreKeyMessage,
  decodeOlmMessage,
  sessionIdOf,
  type OlmMessage,
  type SessionKeys,
} from "./olmMessage";
import {
  concatBytes,
  equalBytes,
  hkdfSha256,
  hmacSha256Sync,
  randomX25519,
  x25519,
  type X25519KeyPair,
  type X25519KeySource,
} from "./primitives";

/** At most this many receiving chains are kept (oldest dropped), as vodozemac does. */
export const MAX_RECEIVING_CHAINS = 5;
/** At most this many skipped message keys are kept per receiving chain (oldest dropped). */
export const MAX_MESSAGE_KEYS = 40;
/** A message more than this many indexes ahead of its chain is refused. */
export const MAX_MESSAGE_GAP = 2000;

const encoder = new TextEncoder();
const OLM_ROOT = encoder.encode("OLM_ROOT");
const OLM_RATCHET = encoder.encode("OLM_RATCHET");
const MESSAGE_KEY_SEED = Uint8Array.of(0x01);
const CHAIN_KEY_SEED = Uint8Array.of(0x02);

interface ActiveSender {
  readonly kind: "active";
  readonly rootKey: Uint8Array;
  readonly ratchetKey: X25519KeyPair;
  readonly chainKey: Uint8Array;
  readonly chainIndex: number;
}

interface InactiveSender {
  readonly kind: "inactive";
  readonly rootKey: Uint8Array;
  readonly remoteRatchetKey: Uint8Array;
}

type Sender = ActiveSender | InactiveSender;

interface SkippedKey {
  readonly index: number;
  readonly key: Uint8Array;
}

interface ReceiverChain {
  readonly ratchetKey: Uint8Array;
  readonly chainKey: Uint8Array;
  readonly chainIndex: number;
  readonly skipped: readonly SkippedKey[];
}

/** The stored form of a session: JSON-shaped, with the private ratchet key as a non-extractable CryptoKey. */
export interface OlmSessionPickle {
  /** "lockstep-olm-session-1"; a string type because a stored pickle may be of another version. */
  readonly format: string;
  readonly sessionKeys: { identityKey: string; baseKey: string; oneTimeKey: string };
  readonly sending:
    | {
        kind: "active";
        rootKey: string;
        ratchetKey: { privateKey: CryptoKey; publicKey: string };
        chainKey: string;
        chainIndex: number;
      }
    | { kind: "inactive"; rootKey: string; remoteRatchetKey: string };
  readonly receiving: {
    ratchetKey: string;
    chainKey: string;
    chainIndex: number;
    skipped: { index: number; key: string }[];
  }[];
}

/** Splits HKDF output into (root key, chain key). */
async function kdf(salt: Uint8Array, secret: Uint8Array, info: Uint8Array): Promise<[Uint8Array, Uint8Array]> {
  const out = await hkdfSha256(salt, secret, info, 64);
  return [out.slice(0, 32), out.slice(32, 64)];
}

/** olm.md "Advancing the root key". */
async function advanceRoot(
  rootKey: Uint8Array,
  ours: X25519KeyPair,
  theirs: Uint8Array,
): Promise<[Uint8Array, Uint8Array]> {
  return kdf(rootKey, await x25519(ours.privateKey, theirs), OLM_RATCHET);
}

// The symmetric ratchet runs synchronously (hmacSha256Sync): a message up to MAX_MESSAGE_GAP ahead costs
// up to 2000 chain steps, and as WebCrypto calls (two awaits each) a forged one cost tens of milliseconds
// per session before its MAC could fail; in-thread it costs about what vodozemac spends.
/** Chain steps taken by every session of this page since it loaded (what a forged message cost, in tests). */
export const chainWork = { steps: 0 };

function advanceChain(chainKey: Uint8Array): Uint8Array {
  chainWork.steps += 1;
  return hmacSha256Sync(chainKey, CHAIN_KEY_SEED);
}
const messageKeyOf = (chainKey: Uint8Array): Uint8Array => hmacSha256Sync(chainKey, MESSAGE_KEY_SEED);

async function decryptWith(messageKey: Uint8Array, message: OlmNormalMessage): Promise<Uint8Array> {
  const cipher = await Cipher.olm(messageKey);
  await cipher.verifyTruncatedMac(message.macInput(), message.mac);
  return cipher.decrypt(message.ciphertext);
}

/** Every CHECKPOINT_EVERY-th chain key ahead of a receiving chain is remembered while it is derived. */
const CHECKPOINT_EVERY = 50;

/**
 * Chain keys C(i,j) ahead of a receiving chain, every CHECKPOINT_EVERY indexes, as derived while
 * checking a message. They are a pure function of the chain (not session state, never stored), so a
 * forged message that fails leaves them valid: the next one on the same chain starts from the nearest
 * checkpoint instead of walking up to 2000 steps again. A chain that moves is a new object: its
 * checkpoints go with the old one.
 */
const checkpoints = new WeakMap<ReceiverChain, Map<number, Uint8Array>>();

/** C(i, index) for index ≥ chain.chainIndex, from the nearest checkpoint at or below `index`. */
function chainKeyAt(chain: ReceiverChain, index: number): Uint8Array {
  let marks = checkpoints.get(chain);
  if (!marks) checkpoints.set(chain, (marks = new Map<number, Uint8Array>()));
  let at = chain.chainIndex;
  let chainKey = chain.chainKey;
  for (let mark = index - (index % CHECKPOINT_EVERY); mark > chain.chainIndex; mark -= CHECKPOINT_EVERY) {
    const known = marks.get(mark);
    if (known) {
      [at, chainKey] = [mark, known];
      break;
    }
  }
  for (; at < index; at++) {
    chainKey = advanceChain(chainKey);
    if ((at + 1) % CHECKPOINT_EVERY === 0) marks.set(at + 1, chainKey);
  }
  return chainKey;
}

/**
 * olm.md "Receiving messages", within one chain; returns the plaintext and the chain to keep on success.
 * Cheapest first: only the chain key at the message's index and its one message key are derived before
 * the MAC is checked; the keys of the indexes it skips are derived only once it has verified.
 */
async function decryptInChain(chain: ReceiverChain, message: OlmNormalMessage): Promise<[Uint8Array, ReceiverChain]> {
  const target = message.chainIndex;
  if (target > chain.chainIndex && target - chain.chainIndex > MAX_MESSAGE_GAP) {
    throw new MessageGapError("message index too far ahead");
  }
  if (target < chain.chainIndex) {
    const found = chain.skipped.find((k) => k.index === target);
    if (!found) throw new MissingMessageKeyError("no message key for this (old or replayed) index");
    const plaintext = await decryptWith(found.key, message);
    return [plaintext, { ...chain, skipped: chain.skipped.filter((k) => k.index !== target) }];
  }
  const chainKey = chainKeyAt(chain, target);
  const plaintext = await decryptWith(messageKeyOf(chainKey), message);
  // Verified: keep the message keys of the last MAX_MESSAGE_KEYS indexes it skipped, oldest dropped.
  const skipped = [...chain.skipped];
  const first = Math.max(chain.chainIndex, target - MAX_MESSAGE_KEYS);
  for (let index = first, key = chainKeyAt(chain, first); index < target; index++, key = advanceChain(key)) {
    skipped.push({ index, key: messageKeyOf(key) });
  }
  return [
    plaintext,
    {
      ratchetKey: chain.ratchetKey,
      chainKey: advanceChain(chainKey),
      chainIndex: target + 1,
      skipped: skipped.slice(-MAX_MESSAGE_KEYS),
    },
  ];
}

export class OlmSession {
  /** Where new ratchet keys come from; tests replace it to reproduce vodozemac's transcripts. */
  keySource: X25519KeySource = randomX25519;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly sessionKeys: SessionKeys,
    readonly sessionId: string,
    private sending: Sender,
    private receiving: ReceiverChain[],
  ) {}

  /**
   * olm.md "Creating an outbound session": Alice's side. S = ECDH(I_A, E_B) ∥ ECDH(E_A, I_B) ∥ ECDH(E_A, E_B).
   * The base key E_A is used here and dropped; T_0 becomes the first sending ratchet key.
   */
  static async outbound(
    identityKey: X25519KeyPair,
    theirIdentityKey: Uint8Array,
    theirOneTimeKey: Uint8Array,
    keySource: X25519KeySource = randomX25519,
  ): Promise<OlmSession> {
    const baseKey = await keySource();
    const ratchetKey = await keySource();
    const secret = concatBytes(
      await x25519(identityKey.privateKey, theirOneTimeKey),
      await x25519(baseKey.privateKey, theirIdentityKey),
      await x25519(baseKey.privateKey, theirOneTimeKey),
    );
    const [rootKey, chainKey] = await kdf(Uint8Array.of(0), secret, OLM_ROOT);
    const sessionKeys = { identityKey: identityKey.publicKey, baseKey: baseKey.publicKey, oneTimeKey: theirOneTimeKey };
    const sending: ActiveSender = { kind: "active", rootKey, ratchetKey, chainKey, chainIndex: 0 };
    const session = new OlmSession(sessionKeys, await sessionIdOf(sessionKeys), sending, []);
    session.keySource = keySource;
    return session;
  }

  /**
   * olm.md "Creating an inbound session from a pre-key message": Bob's side, before decrypting.
   * S = ECDH(E_B, I_A) ∥ ECDH(I_B, E_A) ∥ ECDH(E_B, E_A) — the same bytes Alice computed.
   */
  static async inbound(
    identityKey: X25519KeyPair,
    oneTimeKey: X25519KeyPair,
    message: PreKeyMessage,
  ): Promise<OlmSession> {
    const keys = message.sessionKeys;
    const secret = concatBytes(
      await x25519(oneTimeKey.privateKey, keys.identityKey),
      await x25519(identityKey.privateKey, keys.baseKey),
      await x25519(oneTimeKey.privateKey, keys.baseKey),
    );
    const [rootKey, chainKey] = await kdf(Uint8Array.of(0), secret, OLM_ROOT);
    const remoteRatchetKey = message.message.ratchetKey;
    const sending: InactiveSender = { kind: "inactive", rootKey, remoteRatchetKey };
    const chain: ReceiverChain = { ratchetKey: remoteRatchetKey, chainKey, chainIndex: 0, skipped: [] };
    return new OlmSession(keys, await sessionIdOf(keys), sending, [chain]);
  }

  /** True once a message from the other side was decrypted: from then on we send normal messages. */
  hasReceivedMessage(): boolean {
    return this.receiving.length > 0;
  }

  /** Whether a pre-key message belongs to this session (same I_A, E_A, E_B). */
  matches(message: PreKeyMessage): boolean {
    const a = this.sessionKeys;
    const b = message.sessionKeys;
    return (
      equalBytes(a.identityKey, b.identityKey) &&
      equalBytes(a.baseKey, b.baseKey) &&
      equalBytes(a.oneTimeKey, b.oneTimeKey)
    );
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** olm.md "Sending normal messages": a pre-key message until the other side has answered. */
  encrypt(plaintext: Uint8Array): Promise<OlmMessage> {
    return this.exclusive(async () => {
      const sender = this.sending.kind === "active" ? this.sending : await this.activated(this.sending);
      const messageKey = messageKeyOf(sender.chainKey);
      this.sending = { ...sender, chainKey: advanceChain(sender.chainKey), chainIndex: sender.chainIndex + 1 };
      const cipher = await Cipher.olm(messageKey);
      const unsigned = new OlmNormalMessage(
        sender.ratchetKey.publicKey,
        sender.chainIndex,
        await cipher.encrypt(plaintext),
      );
      const message = unsigned.withMac(await cipher.truncatedMac(unsigned.macInput()));
      if (this.hasReceivedMessage()) return { type: MESSAGE_TYPE_NORMAL, body: message.encode() };
      return { type: MESSAGE_TYPE_PRE_KEY, body: new PreKeyMessage(this.sessionKeys, message).encode() };
    });
  }

  /** An inactive sending chain made active: a new ratchet key T_i and R_i ∥ C(i,0). Commits nothing. */
  private async activated(sender: InactiveSender): Promise<ActiveSender> {
    const ratchetKey = await this.keySource();
    const [rootKey, chainKey] = await advanceRoot(sender.rootKey, ratchetKey, sender.remoteRatchetKey);
    return { kind: "active", rootKey, ratchetKey, chainKey, chainIndex: 0 };
  }

  /** Whether this session holds a receiving chain for the message's ratchet key (only it can read it). */
  knowsRatchetKey(message: OlmNormalMessage): boolean {
    return this.receiving.some((chain) => equalBytes(chain.ratchetKey, message.ratchetKey));
  }

  /**
   * olm.md "Receiving messages". Nothing is committed before the message's MAC has verified: a message
   * that fails leaves the session exactly as it was (as vodozemac, which advances a copy of its ratchet).
   */
  decrypt(message: OlmMessage): Promise<Uint8Array> {
    return this.exclusive(async () => {
      const decoded = decodeOlmMessage(message);
      const inner = decoded.type === MESSAGE_TYPE_PRE_KEY ? decoded.message.message : decoded.message;
      const position = this.receiving.findIndex((chain) => equalBytes(chain.ratchetKey, inner.ratchetKey));
      if (position >= 0) {
        const [plaintext, chain] = await decryptInChain(this.receiving[position]!, inner);
        this.receiving[position] = chain;
        return plaintext;
      }
      // A new ratchet key from the other side: R_i ∥ C(i,0) from our current ratchet key and theirs (an
      // inactive sending chain is activated on a copy first; the copy is dropped, as in vodozemac).
      const sender = this.sending.kind === "active" ? this.sending : await this.activated(this.sending);
      const [rootKey, chainKey] = await advanceRoot(sender.rootKey, sender.ratchetKey, inner.ratchetKey);
      const fresh: ReceiverChain = { ratchetKey: inner.ratchetKey, chainKey, chainIndex: 0, skipped: [] };
      const [plaintext, chain] = await decryptInChain(fresh, inner);
      this.sending = { kind: "inactive", rootKey, remoteRatchetKey: inner.ratchetKey };
      this.receiving.push(chain);
      if (this.receiving.length > MAX_RECEIVING_CHAINS) this.receiving.shift();
      return plaintext;
    });
  }

  /** The session's state for storage (IndexedDB's structured clone keeps the CryptoKey non-extractable). */
  pickle(): OlmSessionPickle {
    const s = this.sending;
    const e = encodeBase64;
    return {
      format: "lockstep-olm-session-1",
      sessionKeys: {
        identityKey: e(this.sessionKeys.identityKey),
        baseKey: e(this.sessionKeys.baseKey),
        oneTimeKey: e(this.sessionKeys.oneTimeKey),
      },
      sending:
        s.kind === "active"
          ? {
              kind: "active",
              rootKey: e(s.rootKey),
              ratchetKey: { privateKey: s.ratchetKey.privateKey, publicKey: e(s.ratchetKey.publicKey) },
              chainKey: e(s.chainKey),
              chainIndex: s.chainIndex,
            }
          : { kind: "inactive", rootKey: e(s.rootKey), remoteRatchetKey: e(s.remoteRatchetKey) },
      receiving: this.receiving.map((c) => ({
        ratchetKey: e(c.ratchetKey),
        chainKey: e(c.chainKey),
        chainIndex: c.chainIndex,
        skipped: c.skipped.map((k) => ({ index: k.index, key: e(k.key) })),
      })),
    };
  }

  static async unpickle(pickle: OlmSessionPickle): Promise<OlmSession> {
    try {
      if (pickle.format !== "lockstep-olm-session-1") throw new PickleError("not an Olm session pickle");
      const d = decodeBase64;
      const keys = pickle.sessionKeys;
      const sessionKeys = {
        identityKey: d(keys.identityKey),
        baseKey: d(keys.baseKey),
        oneTimeKey: d(keys.oneTimeKey),
      };
      const s = pickle.sending;
      let sending: Sender;
      if (s.kind === "active") {
        if (!(s.ratchetKey.privateKey instanceof CryptoKey)) throw new PickleError("ratchet key is not a CryptoKey");
        sending = {
          kind: "active",
          rootKey: d(s.rootKey),
          ratchetKey: { privateKey: s.ratchetKey.privateKey, publicKey: d(s.ratchetKey.publicKey) },
          chainKey: d(s.chainKey),
          chainIndex: s.chainIndex,
        };
        // A stored pickle may be of another version.
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      } else if (s.kind === "inactive") {
        sending = { kind: "inactive", rootKey: d(s.rootKey), remoteRatchetKey: d(s.remoteRatchetKey) };
      } else {
        throw new PickleError("unknown sending chain state");
      }
      const receiving = pickle.receiving.map((c) => ({
        ratchetKey: d(c.ratchetKey),
        chainKey: d(c.chainKey),
        chainIndex: c.chainIndex,
        skipped: c.skipped.map((k) => ({ index: k.index, key: d(k.key) })),
      }));
      return new OlmSession(sessionKeys, await sessionIdOf(sessionKeys), sending, receiving);
    } catch (error) {
      if (error instanceof PickleError) throw error;
      throw new PickleError(error instanceof E2EError ? error.message : "damaged Olm session pickle");
    }
  }
}
