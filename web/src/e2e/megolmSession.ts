/**
 * Megolm sessions (megolm.md "The Megolm protocol"). An outbound group session owns the ratchet R(i) and
 * the Ed25519 key pair K; its id is K_pub in unpadded base64 (as vodozemac and Matrix name it). An inbound
 * group session holds the earliest ratchet it knows (it can decrypt from that index on) plus the latest
 * one it computed, so in-order reading costs one hash per message.
 */

import { decodeBase64, encodeBase64 } from "../crypto/base64";
import { Cipher } from "./cipher";
import { E2EError, PickleError, SignatureError, UnknownIndexError } from "./errors";
import { MegolmMessage } from "./megolmMessage";
import { MegolmRatchet, RATCHET_LENGTH } from "./megolmRatchet";
import {
  SESSION_KEY_VERSION,
  decodeExportedSessionKey,
  decodeSessionKey,
  encodeExportedSessionKey,
  encodeSessionKeyBody,
} from "./megolmSessionKey";
import {
  concatBytes,
  ed25519Sign,
  ed25519Verify,
  generateEd25519,
  importEd25519,
  randomBytes,
  type Ed25519KeyPair,
} from "./primitives";

export interface OutboundGroupSessionPickle {
  /** "lockstep-megolm-outbound-1"; a string type because a stored pickle may be of another version. */
  readonly format: string;
  readonly ratchet: string;
  readonly index: number;
  readonly signingKey: { privateKey: CryptoKey; publicKey: string };
}

export interface InboundGroupSessionPickle {
  /** "lockstep-megolm-inbound-1"; a string type because a stored pickle may be of another version. */
  readonly format: string;
  readonly initialRatchet: string;
  readonly initialIndex: number;
  readonly latestRatchet: string;
  readonly latestIndex: number;
  readonly signingKey: string;
  /** True when the key came signed (a session key), false when imported from an export. */
  readonly signingKeyVerified: boolean;
}

export class OutboundGroupSession {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly ratchet: MegolmRatchet,
    private readonly signing: Ed25519KeyPair,
  ) {}

  /** megolm.md "Session setup": i = 0, a fresh K, R(0) from 128 random bytes. */
  static async create(): Promise<OutboundGroupSession> {
    return new OutboundGroupSession(MegolmRatchet.fromBytes(randomBytes(RATCHET_LENGTH), 0), await generateEd25519());
  }

  /** A session from known secrets (vodozemac test vectors): R(i), i and K's 32-byte seed. */
  static async fromSecrets(ratchet: Uint8Array, index: number, signingSeed: Uint8Array): Promise<OutboundGroupSession> {
    return new OutboundGroupSession(MegolmRatchet.fromBytes(ratchet, index), await importEd25519(signingSeed));
  }

  get sessionId(): string {
    return encodeBase64(this.signing.publicKey);
  }

  /** The index the next message will use. */
  get messageIndex(): number {
    return this.ratchet.index;
  }

  /** The signed session key at the current index, to share over Olm ("Session sharing format"). */
  async sessionKey(): Promise<string> {
    const body = encodeSessionKeyBody(SESSION_KEY_VERSION, {
      index: this.ratchet.index,
      ratchet: this.ratchet.bytes(),
      signingKey: this.signing.publicKey,
    });
    return encodeBase64(concatBytes(body, await ed25519Sign(this.signing.privateKey, body)));
  }

  /** megolm.md "Message encryption": encrypt with R(i), MAC, sign, then advance the ratchet. */
  encrypt(plaintext: Uint8Array): Promise<Uint8Array> {
    const work = async () => {
      const cipher = await Cipher.megolm(this.ratchet.bytes());
      const unsigned = new MegolmMessage(this.ratchet.index, await cipher.encrypt(plaintext));
      const maced = new MegolmMessage(
        unsigned.messageIndex,
        unsigned.ciphertext,
        await cipher.truncatedMac(unsigned.macInput()),
      );
      const signature = await ed25519Sign(this.signing.privateKey, maced.signatureInput());
      await this.ratchet.advance();
      return new MegolmMessage(maced.messageIndex, maced.ciphertext, maced.mac, signature).encode();
    };
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  pickle(): OutboundGroupSessionPickle {
    return {
      format: "lockstep-megolm-outbound-1",
      ratchet: encodeBase64(this.ratchet.bytes()),
      index: this.ratchet.index,
      signingKey: { privateKey: this.signing.privateKey, publicKey: encodeBase64(this.signing.publicKey) },
    };
  }

  static unpickle(pickle: OutboundGroupSessionPickle): OutboundGroupSession {
    try {
      if (pickle.format !== "lockstep-megolm-outbound-1") throw new PickleError("not a Megolm outbound pickle");
      if (!(pickle.signingKey.privateKey instanceof CryptoKey)) throw new PickleError("signing key is not a CryptoKey");
      return new OutboundGroupSession(MegolmRatchet.fromBytes(decodeBase64(pickle.ratchet), pickle.index), {
        privateKey: pickle.signingKey.privateKey,
        publicKey: decodeBase64(pickle.signingKey.publicKey),
      });
    } catch (error) {
      if (error instanceof PickleError) throw error;
      throw new PickleError(error instanceof E2EError ? error.message : "damaged Megolm outbound pickle");
    }
  }
}

export class InboundGroupSession {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly initial: MegolmRatchet,
    private latest: MegolmRatchet,
    private readonly signingKey: Uint8Array,
    readonly signingKeyVerified: boolean,
  ) {}

  /** From a signed session key ("Session sharing format"); the signature is checked first. */
  static async fromSessionKey(sessionKey: string | Uint8Array): Promise<InboundGroupSession> {
    const data = await decodeSessionKey(sessionKey);
    const ratchet = MegolmRatchet.fromBytes(data.ratchet, data.index);
    return new InboundGroupSession(ratchet, ratchet.clone(), data.signingKey, true);
  }

  /** From an exported session key ("Session export format", unsigned). */
  static async importSession(exported: string | Uint8Array): Promise<InboundGroupSession> {
    const data = await decodeExportedSessionKey(exported);
    const ratchet = MegolmRatchet.fromBytes(data.ratchet, data.index);
    return new InboundGroupSession(ratchet, ratchet.clone(), data.signingKey, false);
  }

  get sessionId(): string {
    return encodeBase64(this.signingKey);
  }

  get firstKnownIndex(): number {
    return this.initial.index;
  }

  /** The ratchet at `index`, or null when it is before the first known index. */
  private async ratchetAt(index: number): Promise<MegolmRatchet | null> {
    if (this.initial.index === index) return this.initial;
    if (this.latest.index === index) return this.latest;
    if (this.initial.index < index) {
      // From the latest ratchet when it is not past the index, else from the first one.
      const next = (this.latest.index < index ? this.latest : this.initial).clone();
      await next.advanceTo(index);
      this.latest = next;
      return next;
    }
    return null;
  }

  /**
   * Checks the signature (by K), finds R(i), checks the MAC, decrypts. Replays decrypt again (megolm.md
   * "Message Replays"): the caller tracks the indexes it has seen.
   */
  decrypt(message: Uint8Array | string): Promise<{ plaintext: Uint8Array; messageIndex: number }> {
    const work = () => this.decryptNow(message);
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async decryptNow(message: Uint8Array | string): Promise<{ plaintext: Uint8Array; messageIndex: number }> {
    const bytes = typeof message === "string" ? decodeBase64(message) : message;
    const decoded = MegolmMessage.decode(bytes);
    if (!(await ed25519Verify(this.signingKey, decoded.signatureInput(), decoded.signature))) {
      throw new SignatureError("Megolm message signature does not verify");
    }
    const ratchet = await this.ratchetAt(decoded.messageIndex);
    if (!ratchet) throw new UnknownIndexError("message index is before the first known index");
    const cipher = await Cipher.megolm(ratchet.bytes());
    await cipher.verifyTruncatedMac(decoded.macInput(), decoded.mac);
    return { plaintext: await cipher.decrypt(decoded.ciphertext), messageIndex: decoded.messageIndex };
  }

  /** The exported session key at `index` (≥ the first known index), or null if that index is not known. */
  async exportAt(index: number): Promise<string | null> {
    if (!Number.isInteger(index) || index < this.initial.index || index > 0xffffffff) return null;
    const ratchet = this.initial.clone();
    await ratchet.advanceTo(index);
    return encodeExportedSessionKey({ index, ratchet: ratchet.bytes(), signingKey: this.signingKey });
  }

  pickle(): InboundGroupSessionPickle {
    return {
      format: "lockstep-megolm-inbound-1",
      initialRatchet: encodeBase64(this.initial.bytes()),
      initialIndex: this.initial.index,
      latestRatchet: encodeBase64(this.latest.bytes()),
      latestIndex: this.latest.index,
      signingKey: encodeBase64(this.signingKey),
      signingKeyVerified: this.signingKeyVerified,
    };
  }

  static unpickle(pickle: InboundGroupSessionPickle): InboundGroupSession {
    try {
      if (pickle.format !== "lockstep-megolm-inbound-1") throw new PickleError("not a Megolm inbound pickle");
      return new InboundGroupSession(
        MegolmRatchet.fromBytes(decodeBase64(pickle.initialRatchet), pickle.initialIndex),
        MegolmRatchet.fromBytes(decodeBase64(pickle.latestRatchet), pickle.latestIndex),
        decodeBase64(pickle.signingKey),
        pickle.signingKeyVerified,
      );
    } catch (error) {
      if (error instanceof PickleError) throw error;
      throw new PickleError(error instanceof E2EError ? error.message : "damaged Megolm inbound pickle");
    }
  }
}
