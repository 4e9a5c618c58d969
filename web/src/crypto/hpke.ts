/**
 * HPKE (RFC 9180) for Lockstep's one suite, by hand on WebCrypto:
 *   KEM 0x0020 DHKEM(X25519, HKDF-SHA256), KDF 0x0001 HKDF-SHA256, AEAD 0x0001 AES-128-GCM.
 * Base (0x00) and PSK (0x01) modes, single context with sequence numbers (§5.2).
 *
 * WebCrypto's HKDF does Extract+Expand in one call, but HPKE needs LabeledExtract and LabeledExpand
 * separately (§4), so both are written on HMAC-SHA256 (RFC 5869 §2.2–2.3).
 *
 * Test hook: `ephemeral` in setupSender injects skE (RFC 9180 A.1 vectors); production callers omit it.
 * A context keeps neither the KEM shared secret nor the key schedule's `secret` (only key, base nonce,
 * exporter secret), and a PSK shorter than 32 bytes is refused (§5.1), as lockstep.link.hpke does.
 */
import { buf, concat, equalBytes, utf8 } from "./bytes";
import { keptPrivateKey } from "./keep";
import { pkcs8 } from "./pkcs8";

export class HpkeError extends Error {
  override name = "HpkeError";
}

export const Mode = { base: 0x00, psk: 0x01 } as const;
export type ModeId = (typeof Mode)[keyof typeof Mode];

const KEM_ID = 0x0020;
const KDF_ID = 0x0001;
const AEAD_ID = 0x0001;
const N_SECRET = 32; // DHKEM(X25519) Nsecret
const N_PK = 32;
const N_H = 32; // SHA-256
const N_K = 16; // AES-128-GCM
const N_N = 12;

function i2osp(value: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = length - 1, v = value; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v & 0xff;
  return out;
}

const KEM_SUITE_ID = concat(utf8("KEM"), i2osp(KEM_ID, 2));
const HPKE_SUITE_ID = concat(utf8("HPKE"), i2osp(KEM_ID, 2), i2osp(KDF_ID, 2), i2osp(AEAD_ID, 2));
const HPKE_V1 = utf8("HPKE-v1");

// --- HKDF-SHA256 on HMAC (RFC 5869) -------------------------------------------------------------

async function hmac(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey("raw", buf(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, buf(data)));
}

/** HKDF-Extract(salt, ikm); an empty salt means HashLen zero bytes (RFC 5869 §2.2). */
export async function extract(salt: Uint8Array, ikm: Uint8Array): Promise<Uint8Array> {
  return hmac(salt.length === 0 ? new Uint8Array(N_H) : salt, ikm);
}

/** HKDF-Expand(prk, info, L) (RFC 5869 §2.3). */
export async function expand(prk: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array> {
  if (length > 255 * N_H) throw new HpkeError("expand length too large");
  const out = new Uint8Array(length);
  let previous: Uint8Array = new Uint8Array(0);
  for (let i = 1, offset = 0; offset < length; i++) {
    previous = await hmac(prk, concat(previous, info, new Uint8Array([i])));
    out.set(previous.subarray(0, Math.min(previous.length, length - offset)), offset);
    offset += previous.length;
  }
  return out;
}

async function labeledExtract(suiteId: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array) {
  return extract(salt, concat(HPKE_V1, suiteId, utf8(label), ikm));
}

async function labeledExpand(suiteId: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, length: number) {
  return expand(prk, concat(i2osp(length, 2), HPKE_V1, suiteId, utf8(label), info), length);
}

// --- DHKEM(X25519, HKDF-SHA256) (RFC 9180 §4.1) ---------------------------------------------------

const X25519 = { name: "X25519" } as const;

/** The X25519 base point u = 9, used to derive a public key from any (even non-extractable) private key. */
const BASE_POINT = (() => {
  const u = new Uint8Array(32);
  u[0] = 9;
  return u;
})();

export async function importX25519Public(raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== N_PK) throw new HpkeError("X25519 public key must be 32 bytes");
  return crypto.subtle.importKey("raw", buf(raw), X25519, true, []);
}

/** Imports a raw 32-byte X25519 private key (PKCS#8 wrapping, RFC 8410). Used for test vectors only. */
export async function importX25519Private(raw: Uint8Array, extractable = false): Promise<CryptoKey> {
  if (raw.length !== 32) throw new HpkeError("X25519 private key must be 32 bytes");
  return crypto.subtle.importKey("pkcs8", pkcs8("X25519", raw), X25519, extractable, ["deriveBits"]);
}

export async function generateX25519(extractable = false): Promise<CryptoKeyPair> {
  if (extractable) return (await crypto.subtle.generateKey(X25519, true, ["deriveBits"])) as CryptoKeyPair;
  let publicKey: CryptoKey | undefined;
  const privateKey = await keptPrivateKey(async (exportable) => {
    const pair = (await crypto.subtle.generateKey(X25519, exportable, ["deriveBits"])) as CryptoKeyPair;
    publicKey = pair.publicKey;
    return pair.privateKey;
  });
  return { privateKey, publicKey: publicKey as CryptoKey };
}

/** X25519(sk, pk) as raw bytes; an all-zero result (small-order peer key) is an error (RFC 9180 §7.1.4). */
async function dh(privateKey: CryptoKey, publicKey: CryptoKey): Promise<Uint8Array> {
  let shared: Uint8Array;
  try {
    shared = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256));
  } catch {
    throw new HpkeError("X25519 failed (invalid or small-order public key)");
  }
  if (equalBytes(shared, new Uint8Array(32))) throw new HpkeError("X25519 produced the all-zero value");
  return shared;
}

/** pk(sk) = X25519(sk, 9); works for non-extractable keys. */
export async function publicKeyOf(privateKey: CryptoKey): Promise<Uint8Array> {
  return dh(privateKey, await importX25519Public(BASE_POINT));
}

async function extractAndExpand(dhValue: Uint8Array, kemContext: Uint8Array): Promise<Uint8Array> {
  const eaePrk = await labeledExtract(KEM_SUITE_ID, new Uint8Array(0), "eae_prk", dhValue);
  return labeledExpand(KEM_SUITE_ID, eaePrk, "shared_secret", kemContext, N_SECRET);
}

/** Encap (§4.1); exported for the Appendix A vectors. */
export async function encap(
  pkR: Uint8Array,
  ephemeral?: CryptoKey,
): Promise<{ sharedSecret: Uint8Array; enc: Uint8Array }> {
  // An ephemeral key that is never stored: plain non-extractable, not kept (./keep.ts).
  const skE =
    ephemeral ?? ((await crypto.subtle.generateKey(X25519, false, ["deriveBits"])) as CryptoKeyPair).privateKey;
  const enc = await publicKeyOf(skE);
  const dhValue = await dh(skE, await importX25519Public(pkR));
  return { sharedSecret: await extractAndExpand(dhValue, concat(enc, pkR)), enc };
}

/** Decap (§4.1); exported for the Appendix A vectors. */
export async function decap(enc: Uint8Array, skR: CryptoKey): Promise<Uint8Array> {
  if (enc.length !== N_PK) throw new HpkeError("enc must be 32 bytes");
  const dhValue = await dh(skR, await importX25519Public(enc));
  const pkR = await publicKeyOf(skR);
  return extractAndExpand(dhValue, concat(enc, pkR));
}

// --- Key schedule (RFC 9180 §5.1) ------------------------------------------------------------------

/** The outputs of KeySchedule (§5.1); the shared secret and `secret` do not outlive the call. */
export interface KeySchedule {
  keyScheduleContext: Uint8Array;
  secret: Uint8Array;
  key: Uint8Array;
  baseNonce: Uint8Array;
  exporterSecret: Uint8Array;
}

/** A PSK needs at least 32 bytes of entropy (RFC 9180 §5.1, "VerifyPSKInputs", and §9.5). */
export const MIN_PSK_LENGTH = 32;

function verifyPskInputs(mode: ModeId, psk: Uint8Array, pskId: Uint8Array): void {
  const gotPsk = psk.length > 0;
  const gotPskId = pskId.length > 0;
  if (gotPsk !== gotPskId) throw new HpkeError("inconsistent PSK inputs");
  if (gotPsk && mode === Mode.base) throw new HpkeError("PSK input provided when not needed");
  if (!gotPsk && mode === Mode.psk) throw new HpkeError("missing required PSK input");
  if (gotPsk && psk.length < MIN_PSK_LENGTH) throw new HpkeError(`a PSK must be at least ${MIN_PSK_LENGTH} bytes`);
}

/** KeySchedule (RFC 9180 §5.1). Exported for the Appendix A vectors; callers use setupSender/setupRecipient. */
export async function keySchedule(
  mode: ModeId,
  sharedSecret: Uint8Array,
  info: Uint8Array,
  psk: Uint8Array,
  pskId: Uint8Array,
): Promise<KeySchedule> {
  verifyPskInputs(mode, psk, pskId);
  const empty = new Uint8Array(0);
  const pskIdHash = await labeledExtract(HPKE_SUITE_ID, empty, "psk_id_hash", pskId);
  const infoHash = await labeledExtract(HPKE_SUITE_ID, empty, "info_hash", info);
  const keyScheduleContext = concat(new Uint8Array([mode]), pskIdHash, infoHash);
  const secret = await labeledExtract(HPKE_SUITE_ID, sharedSecret, "secret", psk);
  return {
    keyScheduleContext,
    secret,
    key: await labeledExpand(HPKE_SUITE_ID, secret, "key", keyScheduleContext, N_K),
    baseNonce: await labeledExpand(HPKE_SUITE_ID, secret, "base_nonce", keyScheduleContext, N_N),
    exporterSecret: await labeledExpand(HPKE_SUITE_ID, secret, "exp", keyScheduleContext, N_H),
  };
}

// --- Encryption context (RFC 9180 §5.2) ------------------------------------------------------------

/**
 * An encryption context keeps only what §5.2 and §5.3 need: the AEAD key as a non-extractable CryptoKey,
 * the base nonce, the exporter secret and the sequence number — never the shared secret or `secret`.
 */
class Context {
  protected seq = 0;

  protected constructor(
    private readonly aesKey: CryptoKey,
    private readonly baseNonce: Uint8Array,
    private readonly exporterSecret: Uint8Array,
  ) {}

  protected static async keysOf(schedule: KeySchedule): Promise<[CryptoKey, Uint8Array, Uint8Array]> {
    const aesKey = await crypto.subtle.importKey("raw", buf(schedule.key), { name: "AES-GCM" }, false, [
      "encrypt",
      "decrypt",
    ]);
    return [aesKey, Uint8Array.from(schedule.baseNonce), Uint8Array.from(schedule.exporterSecret)];
  }

  /** ComputeNonce(seq) (§5.2): base_nonce XOR I2OSP(seq, Nn). */
  protected nonceFor(seq: number): Uint8Array {
    if (seq >= 2 ** 32) throw new HpkeError("message limit reached");
    const nonce = Uint8Array.from(this.baseNonce);
    const seqBytes = i2osp(seq, N_N);
    for (let i = 0; i < N_N; i++) nonce[i] = (nonce[i] ?? 0) ^ (seqBytes[i] ?? 0);
    return nonce;
  }

  protected key(): CryptoKey {
    return this.aesKey;
  }

  /** Export interface (RFC 9180 §5.3). */
  async export(exporterContext: Uint8Array, length: number): Promise<Uint8Array> {
    return labeledExpand(HPKE_SUITE_ID, this.exporterSecret, "sec", exporterContext, length);
  }
}

export class SenderContext extends Context {
  static async create(schedule: KeySchedule): Promise<SenderContext> {
    return new SenderContext(...(await Context.keysOf(schedule)));
  }

  /**
   * Seal (§5.2). The sequence number is taken before the first await: two seals started together on one
   * context get different nonces, whatever order WebCrypto finishes them in. A failed seal uses up its
   * number (never reused), as the RFC allows.
   */
  seal(aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    let nonce: Uint8Array;
    try {
      nonce = this.nonceFor(this.seq);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    this.seq += 1;
    return crypto.subtle
      .encrypt({ name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad) }, this.key(), buf(plaintext))
      .then((ct) => new Uint8Array(ct));
  }
}

export class RecipientContext extends Context {
  static async create(schedule: KeySchedule): Promise<RecipientContext> {
    return new RecipientContext(...(await Context.keysOf(schedule)));
  }

  /** Open (§5.2): the sequence number moves only after a successful open. */
  async open(aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
    const seq = this.seq;
    const nonce = this.nonceFor(seq);
    let pt: ArrayBuffer;
    try {
      pt = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad) },
        this.key(),
        buf(ciphertext),
      );
    } catch {
      throw new HpkeError("decryption failed");
    }
    if (this.seq !== seq) throw new HpkeError("two opens at once on one context");
    this.seq += 1;
    return new Uint8Array(pt);
  }
}

export interface SetupOptions {
  mode: ModeId;
  info: Uint8Array;
  psk?: Uint8Array;
  pskId?: Uint8Array;
}

/** SetupBaseS / SetupPSKS (RFC 9180 §5.1.1–5.1.2). `ephemeral` injects skE (vector tests only). */
export async function setupSender(
  pkR: Uint8Array,
  options: SetupOptions,
  ephemeral?: CryptoKey,
): Promise<{ enc: Uint8Array; context: SenderContext }> {
  const { sharedSecret, enc } = await encap(pkR, ephemeral);
  const schedule = await keySchedule(
    options.mode,
    sharedSecret,
    options.info,
    options.psk ?? new Uint8Array(0),
    options.pskId ?? new Uint8Array(0),
  );
  return { enc, context: await SenderContext.create(schedule) };
}

/** SetupBaseR / SetupPSKR. */
export async function setupRecipient(
  enc: Uint8Array,
  skR: CryptoKey,
  options: SetupOptions,
): Promise<RecipientContext> {
  const sharedSecret = await decap(enc, skR);
  const schedule = await keySchedule(
    options.mode,
    sharedSecret,
    options.info,
    options.psk ?? new Uint8Array(0),
    options.pskId ?? new Uint8Array(0),
  );
  return RecipientContext.create(schedule);
}

/** Single-shot PSK-mode seal (the link grant, linking.md §5). */
export async function sealPsk(
  pkR: Uint8Array,
  info: Uint8Array,
  psk: Uint8Array,
  pskId: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  ephemeral?: CryptoKey,
): Promise<{ enc: Uint8Array; ciphertext: Uint8Array }> {
  const { enc, context } = await setupSender(pkR, { mode: Mode.psk, info, psk, pskId }, ephemeral);
  return { enc, ciphertext: await context.seal(aad, plaintext) };
}

/** Single-shot PSK-mode open; throws HpkeError on any failure. */
export async function openPsk(
  enc: Uint8Array,
  skR: CryptoKey,
  info: Uint8Array,
  psk: Uint8Array,
  pskId: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
): Promise<Uint8Array> {
  const context = await setupRecipient(enc, skR, { mode: Mode.psk, info, psk, pskId });
  return context.open(aad, ciphertext);
}
