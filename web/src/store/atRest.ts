/**
 * Encryption at rest for everything the app keeps in IndexedDB (docs/protocol/messaging.md §11, SECURITY.md
 * "Data at rest on devices"), as Element Web does with its pickle key.
 *
 * One *store key* per origin: an AES-256-GCM CryptoKey, non-extractable, kept in the database
 * `lockstep-at-rest` (object store `keys`, key `store-key`), deleted when the last Lockstep database of
 * the origin is wiped (an unlinked companion); once a tab has logged out nothing makes a new one until the
 * page starts again or links again (a save landing late fails instead). Every record is stored *sealed*:
 *
 *   { sealed: 1, iv: 12 random bytes, data: AES-GCM(store key, iv, aad = UTF-8(label), UTF-8(JSON)),
 *     clearKeys: [CryptoKey…] }
 *
 * `label` names the record's place (database/object store/key), so a record cannot be moved to another
 * place. The JSON is the value with Uint8Arrays as {"$bytes": b64u} and private CryptoKeys as
 * {"$key": {format: "pkcs8", iv, wrapped, algorithm, usages}}: the key wrapped (AES-GCM) under the store
 * key when it was made (../crypto/keep.ts), unwrapped non-extractable on load. Any other CryptoKey (a
 * public key) stays a CryptoKey in `clearKeys`, named {"$clearKey": index}. Object keys that start with
 * "$" get one more "$", so a message body can never pose as a marker.
 *
 * Migration: a record that is not sealed (written before this version) is read as it is and written back
 * sealed at once. Private keys in it are non-extractable CryptoKeys and cannot be wrapped: they stay in
 * `clearKeys` until replaced (ratchet keys soon; identity keys only when the device is linked anew).
 */
import { b64uDecode, b64uEncode } from "../crypto/base64";
import { buf, fromUtf8, randomBytes, utf8 } from "../crypto/bytes";
import { setKeyKeeper } from "../crypto/keep";
import { deleteDatabase } from "./deleteDatabase";

const DATABASE = "lockstep-at-rest";
const KEYS = "keys";
const STORE_KEY = "store-key";
const subtle = globalThis.crypto.subtle;

/** A record as IndexedDB holds it. */
export interface SealedRecord {
  sealed: 1;
  iv: Uint8Array;
  data: Uint8Array;
  clearKeys: CryptoKey[];
}

/** A sealed record that does not open (another store key, damaged, or moved to another place). */
export class AtRestError extends Error {
  override name = "AtRestError";
}

interface WrappedKey {
  format: "pkcs8";
  iv: string;
  wrapped: string;
  algorithm: string;
  usages: KeyUsage[];
}

/** The wrapped form of every private key made or loaded while the store key is open. */
const wrappedKeys = new WeakMap<CryptoKey, WrappedKey>();

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB request failed"));
  });
}

/**
 * Whether a read may make the store key when there is none. False once this tab logs out (`stopAtRest`):
 * a save or a key made late, after the wipe, must not leave a fresh store key (and its database) behind
 * in a browser that says "logged out". The page's start, or linking again, allows it again (`openAtRest`).
 */
let mayCreate = true;

const WIPED = "this browser's stored data was wiped: nothing is sealed any more";

async function loadOrCreateStoreKey(): Promise<CryptoKey> {
  const create = mayCreate;
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const req = indexedDB.open(DATABASE, 1);
    req.onupgradeneeded = (event) => {
      // Aborting the upgrade of a database made by this open deletes it again (IndexedDB §5.8).
      if (!create && event.oldVersion === 0) (req.transaction as IDBTransaction).abort();
      else req.result.createObjectStore(KEYS);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(create ? (req.error ?? new Error("IndexedDB open failed")) : new AtRestError(WIPED));
  });
  try {
    const existing = await request(
      db.transaction(KEYS).objectStore(KEYS).get(STORE_KEY) as IDBRequest<CryptoKey | undefined>,
    );
    if (existing instanceof CryptoKey) return existing;
    if (!create) throw new AtRestError(WIPED);
    const candidate = await subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
      "encrypt",
      "decrypt",
      "wrapKey",
      "unwrapKey",
    ]);
    // One transaction reads again and, if still absent, writes: two tabs starting at once agree on one key.
    const keys = db.transaction(KEYS, "readwrite").objectStore(KEYS);
    const raced = await request(keys.get(STORE_KEY) as IDBRequest<CryptoKey | undefined>);
    if (raced instanceof CryptoKey) return raced;
    await request(keys.put(candidate, STORE_KEY));
    return candidate;
  } finally {
    db.close();
  }
}

/** The read of the store key under way, if one is: callers that ask meanwhile share it. */
let storeKeyRead: Promise<CryptoKey> | null = null;

/**
 * The store key as IndexedDB holds it now. Keys made side by side (a key share's new Olm sessions, 45 to a
 * request) share one read instead of opening the database once each: 2,047 opens for a key share to a
 * 1,024-member group, each a round trip to the browser's storage process.
 */
function currentStoreKey(): Promise<CryptoKey> {
  storeKeyRead ??= loadOrCreateStoreKey().finally(() => (storeKeyRead = null));
  return storeKeyRead;
}

/**
 * The origin's store key, made on first use. It is read from IndexedDB on every use (a tab never seals
 * under a key another tab has since deleted; uses at the same moment share a read), and from then on new
 * private keys are kept wrapped.
 */
export async function openAtRest(): Promise<CryptoKey> {
  mayCreate = true;
  return storeKeyNow();
}

/** The store key for sealing now (as `openAtRest`, but made only if this tab has not logged out). */
export async function storeKeyNow(): Promise<CryptoKey> {
  const storeKey = await currentStoreKey();
  setKeyKeeper(async (extractable) => keep(await currentStoreKey(), extractable));
  return storeKey;
}

async function keep(storeKey: CryptoKey, extractable: CryptoKey): Promise<CryptoKey> {
  const iv = randomBytes(12);
  const wrapped = new Uint8Array(
    await subtle.wrapKey("pkcs8", extractable, storeKey, { name: "AES-GCM", iv: buf(iv) }),
  );
  const entry: WrappedKey = {
    format: "pkcs8",
    iv: b64uEncode(iv),
    wrapped: b64uEncode(wrapped),
    algorithm: extractable.algorithm.name,
    usages: [...extractable.usages],
  };
  return unwrap(storeKey, entry);
}

async function unwrap(storeKey: CryptoKey, entry: WrappedKey): Promise<CryptoKey> {
  const key = await subtle.unwrapKey(
    "pkcs8",
    buf(b64uDecode(entry.wrapped)),
    storeKey,
    { name: "AES-GCM", iv: buf(b64uDecode(entry.iv)) },
    { name: entry.algorithm },
    false,
    entry.usages,
  );
  wrappedKeys.set(key, entry);
  return key;
}

/** This tab logs out: from now on nothing makes a store key (see `mayCreate`) until `openAtRest` again. */
export function stopAtRest(): void {
  mayCreate = false;
}

/**
 * Deletes the store key once no Lockstep database of this origin is left (a companion that was unlinked
 * and wiped): whatever Chromium still holds of the deleted records on disk can then never be opened.
 */
export async function forgetStoreKeyIfUnused(): Promise<void> {
  const left = (await indexedDB.databases()).filter((db) => db.name !== DATABASE && db.name?.startsWith("lockstep-"));
  if (left.length) return;
  await deleteDatabase(DATABASE).catch(() => undefined);
}

export function isSealed(value: unknown): value is SealedRecord {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { sealed?: unknown }).sealed === 1 &&
    (value as { data?: unknown }).data instanceof Uint8Array
  );
}

/** The JSON form of `value` (markers for bytes and keys); CryptoKeys that are not wrapped go to `clearKeys`. */
function encode(value: unknown, clearKeys: CryptoKey[]): unknown {
  if (value instanceof Uint8Array) return { $bytes: b64uEncode(value) };
  if (value instanceof CryptoKey) {
    const wrapped = wrappedKeys.get(value);
    if (wrapped) return { $key: wrapped };
    // A public key, or a private key from before this version (non-extractable: it cannot be wrapped).
    clearKeys.push(value);
    return { $clearKey: clearKeys.length - 1 };
  }
  if (Array.isArray(value)) return value.map((item) => encode(item, clearKeys));
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [name, item] of Object.entries(value)) {
      if (item !== undefined) out[name.startsWith("$") ? `$${name}` : name] = encode(item, clearKeys);
    }
    return out;
  }
  return value;
}

interface Decoding {
  storeKey: CryptoKey;
  clearKeys: CryptoKey[];
  unwrapping: Promise<void>[];
}

/** Decodes `item` into `container[name]`; a wrapped key is unwrapped asynchronously (see `unwrapping`). */
function decodeInto(
  container: Record<string | number, unknown>,
  name: string | number,
  item: unknown,
  d: Decoding,
): void {
  if (Array.isArray(item)) {
    const out: unknown[] = [];
    item.forEach((element, index) => decodeInto(out as unknown as Record<number, unknown>, index, element, d));
    container[name] = out;
    return;
  }
  if (typeof item !== "object" || item === null) {
    container[name] = item;
    return;
  }
  const record = item as Record<string, unknown>;
  const names = Object.keys(record);
  const only = names.length === 1 ? names[0] : undefined;
  if (only !== undefined && /^\$[a-zA-Z]/.test(only)) {
    const marker = record[only];
    if (only === "$bytes" && typeof marker === "string") container[name] = b64uDecode(marker);
    else if (only === "$clearKey" && typeof marker === "number" && d.clearKeys[marker])
      container[name] = d.clearKeys[marker];
    else if (only === "$key") {
      container[name] = null;
      d.unwrapping.push(unwrap(d.storeKey, marker as WrappedKey).then((key) => void (container[name] = key)));
    } else throw new AtRestError(`unknown marker ${only} in a sealed record`);
    return;
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record))
    decodeInto(out, key.startsWith("$") ? key.slice(1) : key, value, d);
  container[name] = out;
}

/** A value in the form `seal` encrypts: its JSON (markers for bytes and keys) and the keys kept as they are. */
export interface Encoded {
  json: string;
  clearKeys: CryptoKey[];
}

/** The form `value` is sealed in: two values with the same form are the same record (a wrapped key is
 * named by its wrapping, unique to it; a clear key by its place in `clearKeys`). */
export function encodeRecord(value: unknown): Encoded {
  const clearKeys: CryptoKey[] = [];
  return { json: JSON.stringify(encode(value, clearKeys)), clearKeys };
}

export function sameEncoding(a: Encoded | undefined, b: Encoded): boolean {
  return (
    a?.json === b.json && a.clearKeys.length === b.clearKeys.length && a.clearKeys.every((k, i) => k === b.clearKeys[i])
  );
}

/** `value` sealed under the store key for the place `label` (`storeKey`: one already read, for many records). */
export async function seal(value: unknown, label: string, storeKey?: CryptoKey): Promise<SealedRecord> {
  return sealEncoded(encodeRecord(value), label, storeKey);
}

/** A value already encoded (`encodeRecord`) sealed under the store key for the place `label`. */
export async function sealEncoded(
  { json, clearKeys }: Encoded,
  label: string,
  storeKey?: CryptoKey,
): Promise<SealedRecord> {
  storeKey ??= await storeKeyNow();
  const iv = randomBytes(12);
  const data = new Uint8Array(
    await subtle.encrypt({ name: "AES-GCM", iv: buf(iv), additionalData: buf(utf8(label)) }, storeKey, buf(utf8(json))),
  );
  return { sealed: 1, iv, data, clearKeys };
}

/** The value of a sealed record (AtRestError if it does not open for `label`). */
export async function unseal<T>(record: SealedRecord, label: string, storeKey?: CryptoKey): Promise<T> {
  storeKey ??= await storeKeyNow();
  let plain: Uint8Array;
  try {
    plain = new Uint8Array(
      await subtle.decrypt(
        { name: "AES-GCM", iv: buf(record.iv), additionalData: buf(utf8(label)) },
        storeKey,
        buf(record.data),
      ),
    );
  } catch {
    throw new AtRestError("a stored record does not open under this browser's store key");
  }
  const holder: Record<string, unknown> = {};
  // Records sealed before clearKeys existed lack it.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
  const decoding: Decoding = { storeKey, clearKeys: record.clearKeys ?? [], unwrapping: [] };
  decodeInto(holder, "value", JSON.parse(fromUtf8(plain)), decoding);
  await Promise.all(decoding.unwrapping);
  return holder.value as T;
}
