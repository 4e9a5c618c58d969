/**
 * An Olm account (olm.md "The Olm Protocol"): a Curve25519 identity key I, an Ed25519 signing key,
 * one-time keys E published for others to start sessions with, and an optional fallback key used when
 * the one-time keys ran out. Key ids are vodozemac's: the unpadded base64 of a big-endian u64 counter.
 */

import { decodeBase64, encodeBase64 } from "../crypto/base64";
import { E2EError, LocalE2EError, PickleError, SessionMismatchError, SignatureError } from "./errors";
import { MESSAGE_TYPE_PRE_KEY, PreKeyMessage, type OlmMessage } from "./olmMessage";
import { OlmSession } from "./olmSession";
import {
  ed25519Sign,
  ed25519Verify,
  equalBytes,
  generateEd25519,
  generateX25519,
  importEd25519,
  importX25519,
  randomX25519,
  type Ed25519KeyPair,
  type X25519KeyPair,
  type X25519KeySource,
} from "./primitives";

/** How many unpublished one-time keys a server should hold for us (vodozemac's value). */
export const MAX_NUMBER_OF_ONE_TIME_KEYS = 50;
/** How many one-time private keys we keep at most (vodozemac: 100 × 50); the oldest are forgotten first. */
export const MAX_STORED_ONE_TIME_KEYS = 100 * MAX_NUMBER_OF_ONE_TIME_KEYS;

interface StoredKey {
  readonly id: number;
  readonly pair: X25519KeyPair;
  published: boolean;
}

type StoredKeyPickle = { id: number; privateKey: CryptoKey; publicKey: string; published: boolean };

/** The stored form of an account: JSON-shaped; private keys are non-extractable CryptoKeys. */
export interface OlmAccountPickle {
  /** "lockstep-olm-account-1"; a string type because a stored pickle may be of another version. */
  readonly format: string;
  readonly identityKey: { privateKey: CryptoKey; publicKey: string };
  readonly signingKey: { privateKey: CryptoKey; publicKey: string };
  readonly oneTimeKeys: StoredKeyPickle[];
  readonly nextKeyId: number;
  readonly fallbackKey: StoredKeyPickle | null;
  readonly previousFallbackKey: StoredKeyPickle | null;
}

/** Secrets to build an account from (importing vodozemac test vectors, or migrating an account). */
export interface OlmAccountSecrets {
  readonly identityKey: Uint8Array; // Curve25519 secret, 32 bytes
  readonly signingSeed: Uint8Array; // Ed25519 seed, 32 bytes
  readonly oneTimeKeys?: ReadonlyArray<{ id: number; secret: Uint8Array; published?: boolean }>;
  readonly fallbackKey?: { id: number; secret: Uint8Array; published?: boolean };
}

/** vodozemac's KeyId: base64 of the id as 8 big-endian bytes. */
export function keyIdToString(id: number): string {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(id));
  return encodeBase64(bytes);
}

/**
 * Checks an Ed25519 signature made by an account's signing key (all three as the account gives them:
 * base64 key and signature, message as bytes or UTF-8 text); a bad one is a SignatureError.
 */
export async function verifyEd25519Signature(
  ed25519Key: string,
  message: Uint8Array | string,
  signature: string,
): Promise<void> {
  const bytes = typeof message === "string" ? new TextEncoder().encode(message) : message;
  if (!(await ed25519Verify(decodeBase64(ed25519Key), bytes, decodeBase64(signature)))) {
    throw new SignatureError("Ed25519 signature does not verify");
  }
}

function toBytes(key: string | Uint8Array): Uint8Array {
  return typeof key === "string" ? decodeBase64(key) : key;
}

export class OlmAccount {
  private constructor(
    private readonly identity: X25519KeyPair,
    private readonly signing: Ed25519KeyPair,
    private oneTimeKeysStore: StoredKey[],
    private nextKeyId: number,
    private fallback: StoredKey | null,
    private previousFallback: StoredKey | null,
  ) {}

  static async create(): Promise<OlmAccount> {
    return new OlmAccount(await generateX25519(), await generateEd25519(), [], 0, null, null);
  }

  static async fromSecrets(secrets: OlmAccountSecrets): Promise<OlmAccount> {
    const oneTimeKeys: StoredKey[] = [];
    for (const k of secrets.oneTimeKeys ?? []) {
      oneTimeKeys.push({ id: k.id, pair: await importX25519(k.secret), published: k.published ?? false });
    }
    const f = secrets.fallbackKey;
    const fallback = f ? { id: f.id, pair: await importX25519(f.secret), published: f.published ?? false } : null;
    const ids = [...oneTimeKeys.map((k) => k.id), ...(f ? [f.id] : [])];
    const nextKeyId = ids.length ? Math.max(...ids) + 1 : 0;
    return new OlmAccount(
      await importX25519(secrets.identityKey),
      await importEd25519(secrets.signingSeed),
      oneTimeKeys,
      nextKeyId,
      fallback,
      null,
    );
  }

  /** I, the Curve25519 identity key, as unpadded base64. */
  get curve25519Key(): string {
    return encodeBase64(this.identity.publicKey);
  }

  /** The Ed25519 signing key, as unpadded base64. */
  get ed25519Key(): string {
    return encodeBase64(this.signing.publicKey);
  }

  /** An Ed25519 signature of `message` (UTF-8 if a string), as unpadded base64. */
  async sign(message: Uint8Array | string): Promise<string> {
    const bytes = typeof message === "string" ? new TextEncoder().encode(message) : message;
    return encodeBase64(await ed25519Sign(this.signing.privateKey, bytes));
  }

  async generateOneTimeKeys(count: number): Promise<void> {
    if (!Number.isInteger(count) || count < 0 || count > MAX_STORED_ONE_TIME_KEYS)
      throw new LocalE2EError("bad one-time key count");
    for (let i = 0; i < count; i++) {
      this.oneTimeKeysStore.push({ id: this.nextKeyId++, pair: await generateX25519(), published: false });
      if (this.oneTimeKeysStore.length > MAX_STORED_ONE_TIME_KEYS) this.oneTimeKeysStore.shift();
    }
  }

  /** Unpublished one-time keys: key id → Curve25519 public key (base64). */
  oneTimeKeys(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const k of this.oneTimeKeysStore) if (!k.published) out[keyIdToString(k.id)] = encodeBase64(k.pair.publicKey);
    return out;
  }

  /** Makes a new fallback key; the previous one keeps working until the next rotation. */
  async generateFallbackKey(): Promise<void> {
    this.previousFallback = this.fallback;
    this.fallback = { id: this.nextKeyId++, pair: await generateX25519(), published: false };
  }

  /** The unpublished fallback key, if any: key id → public key (base64). */
  fallbackKey(): Record<string, string> {
    const f = this.fallback;
    return f && !f.published ? { [keyIdToString(f.id)]: encodeBase64(f.pair.publicKey) } : {};
  }

  markKeysAsPublished(): void {
    for (const k of this.oneTimeKeysStore) k.published = true;
    if (this.fallback) this.fallback.published = true;
  }

  /** Starts a session to a device from its identity key and one of its one-time (or fallback) keys. */
  createOutboundSession(
    identityKey: string | Uint8Array,
    oneTimeKey: string | Uint8Array,
    keySource: X25519KeySource = randomX25519,
  ): Promise<OlmSession> {
    return OlmSession.outbound(this.identity, toBytes(identityKey), toBytes(oneTimeKey), keySource);
  }

  /**
   * olm.md "Creating an inbound session from a pre-key message". `theirIdentityKey`, when given, must be
   * the message's I_A. On success the one-time key is removed (a fallback key stays).
   */
  async createInboundSession(
    theirIdentityKey: string | Uint8Array | null,
    message: OlmMessage | PreKeyMessage,
  ): Promise<{ session: OlmSession; plaintext: Uint8Array }> {
    let preKey: PreKeyMessage;
    if (message instanceof PreKeyMessage) preKey = message;
    else if (message.type === MESSAGE_TYPE_PRE_KEY) preKey = PreKeyMessage.decode(message.body);
    else throw new SessionMismatchError("an inbound session starts from a pre-key message");
    const keys = preKey.sessionKeys;
    if (theirIdentityKey !== null && !equalBytes(toBytes(theirIdentityKey), keys.identityKey)) {
      throw new SessionMismatchError("pre-key message from another identity key");
    }
    const stored =
      this.oneTimeKeysStore.find((k) => equalBytes(k.pair.publicKey, keys.oneTimeKey)) ??
      [this.fallback, this.previousFallback].find((k) => k !== null && equalBytes(k.pair.publicKey, keys.oneTimeKey));
    if (!stored) throw new SessionMismatchError("pre-key message for an unknown one-time key");
    const session = await OlmSession.inbound(this.identity, stored.pair, preKey);
    const plaintext = await session.decrypt({ type: MESSAGE_TYPE_PRE_KEY, body: preKey.encode() });
    this.oneTimeKeysStore = this.oneTimeKeysStore.filter((k) => k !== stored);
    return { session, plaintext };
  }

  pickle(): OlmAccountPickle {
    const key = (k: StoredKey): StoredKeyPickle => ({
      id: k.id,
      privateKey: k.pair.privateKey,
      publicKey: encodeBase64(k.pair.publicKey),
      published: k.published,
    });
    return {
      format: "lockstep-olm-account-1",
      identityKey: { privateKey: this.identity.privateKey, publicKey: encodeBase64(this.identity.publicKey) },
      signingKey: { privateKey: this.signing.privateKey, publicKey: encodeBase64(this.signing.publicKey) },
      oneTimeKeys: this.oneTimeKeysStore.map(key),
      nextKeyId: this.nextKeyId,
      fallbackKey: this.fallback ? key(this.fallback) : null,
      previousFallbackKey: this.previousFallback ? key(this.previousFallback) : null,
    };
  }

  static unpickle(pickle: OlmAccountPickle): OlmAccount {
    try {
      if (pickle.format !== "lockstep-olm-account-1") throw new PickleError("not an Olm account pickle");
      const pair = (k: { privateKey: CryptoKey; publicKey: string }) => {
        if (!(k.privateKey instanceof CryptoKey)) throw new PickleError("private key is not a CryptoKey");
        return { privateKey: k.privateKey, publicKey: decodeBase64(k.publicKey) };
      };
      const stored = (k: StoredKeyPickle): StoredKey => ({ id: k.id, pair: pair(k), published: k.published });
      return new OlmAccount(
        pair(pickle.identityKey),
        pair(pickle.signingKey),
        pickle.oneTimeKeys.map(stored),
        pickle.nextKeyId,
        pickle.fallbackKey ? stored(pickle.fallbackKey) : null,
        pickle.previousFallbackKey ? stored(pickle.previousFallbackKey) : null,
      );
    } catch (error) {
      if (error instanceof PickleError) throw error;
      throw new PickleError(error instanceof E2EError ? error.message : "damaged Olm account pickle");
    }
  }
}
