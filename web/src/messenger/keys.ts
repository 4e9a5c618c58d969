/**
 * Device key bundles and signed one-time keys (messaging.md §3), and verifying an account's devices
 * from `accounts.lookup` against its primary-signed device list (linking.md §4.3).
 */
import { b64uDecode, b64uEncode } from "../crypto/base64";
import { concat, fromUtf8, utf8 } from "../crypto/bytes";
import { keyId, pointProblem, sign, verify } from "../crypto/ed25519";
import type { Envelope } from "../crypto/envelope";
import { type DeviceList, verifyDeviceList } from "../link/deviceList";
import { decodeBase64, type OlmAccount } from "../e2e";
import { isJsonObject } from "../net/json";

export const DEVICE_KEYS_CONTEXT = "lockstep/device-keys/v1";
export const ONE_TIME_KEY_CONTEXT = "lockstep/one-time-key/v1";

/** A key bundle, an account or a one-time key that does not verify: nothing is sent to or accepted from it. */
export class KeyBundleError extends Error {
  override name = "KeyBundleError";
}

export interface DeviceKeys {
  accountId: string;
  deviceId: string;
  identityKey: Uint8Array; // Curve25519 (Olm)
  signingKey: Uint8Array; // Ed25519 (signs one-time keys)
}

export interface OneTimeKeyJson {
  key_id: string;
  key: string;
  signature: string;
  fallback: boolean;
}

export interface AccountJson {
  id: string;
  handle: string;
  display_name: string;
  key: string;
}

export interface Contact {
  account: AccountJson;
  list: DeviceList;
  keys: Map<string, DeviceKeys>;
}

function signed(context: string, payload: Uint8Array): Uint8Array {
  return concat(utf8(context), new Uint8Array([0]), payload);
}

/** The bundle envelope for this device, signed by its Lockstep device key. */
export async function sealBundle(
  deviceKey: CryptoKey,
  account: OlmAccount,
  accountId: string,
  deviceId: string,
  issuedAt: number,
): Promise<Envelope> {
  const payload = utf8(
    JSON.stringify({
      v: 1,
      type: "device-keys",
      account_id: accountId,
      device_id: deviceId,
      identity_key: b64uEncode(decodeBase64(account.curve25519Key)),
      signing_key: b64uEncode(decodeBase64(account.ed25519Key)),
      issued_at: issuedAt,
    }),
  );
  return {
    payload: b64uEncode(payload),
    signature: b64uEncode(await sign(deviceKey, signed(DEVICE_KEYS_CONTEXT, payload))),
  };
}

function oneTimeMessage(keyIdText: string, key: Uint8Array): Uint8Array {
  return concat(utf8(ONE_TIME_KEY_CONTEXT), new Uint8Array([0]), utf8(keyIdText), new Uint8Array([0]), key);
}

/** Signs the account's unpublished one-time keys (or its fallback key) for keys.upload. */
export async function signKeys(
  account: OlmAccount,
  keys: Record<string, string>,
  fallback: boolean,
): Promise<OneTimeKeyJson[]> {
  const out: OneTimeKeyJson[] = [];
  for (const [id, publicKey] of Object.entries(keys)) {
    const raw = decodeBase64(publicKey);
    const signature = decodeBase64(await account.sign(oneTimeMessage(id, raw)));
    out.push({ key_id: id, key: b64uEncode(raw), signature: b64uEncode(signature), fallback });
  }
  return out;
}

/** A claimed one-time key, checked against the device's verified signing key; returns the raw key. */
export async function verifyOneTimeKey(value: unknown, signingKey: Uint8Array): Promise<Uint8Array> {
  if (typeof value !== "object" || value === null) throw new KeyBundleError("a one-time key is an object");
  const { key_id: id, key, signature } = value as Record<string, unknown>;
  if (
    typeof id !== "string" ||
    id.length < 1 ||
    id.length > 64 ||
    typeof key !== "string" ||
    typeof signature !== "string"
  ) {
    throw new KeyBundleError("a malformed one-time key");
  }
  let raw: Uint8Array;
  let sig: Uint8Array;
  try {
    raw = b64uDecode(key);
    sig = b64uDecode(signature);
  } catch {
    throw new KeyBundleError("a one-time key that is not base64url");
  }
  if (raw.length !== 32 || !(await verify(signingKey, oneTimeMessage(id, raw), sig)))
    throw new KeyBundleError("a one-time key's signature does not verify");
  return raw;
}

function key32(payload: Record<string, unknown>, name: string): Uint8Array {
  const value = payload[name];
  let raw: Uint8Array | null;
  try {
    raw = typeof value === "string" ? b64uDecode(value) : null;
  } catch {
    raw = null;
  }
  if (!raw || raw.length !== 32) throw new KeyBundleError(`'${name}' must be a 32-byte key`);
  return raw;
}

/**
 * Accepts a bundle only if its device is in the verified list and the envelope verifies under that entry's
 * device key.
 */
export async function verifyBundle(bundle: unknown, list: DeviceList, deviceId: string): Promise<DeviceKeys> {
  const entry = list.devices.find((d) => d.device_id === deviceId);
  if (!entry) throw new KeyBundleError(`device ${deviceId} is not in the account's signed device list`);
  const { payload, signature } = (bundle ?? {}) as Record<string, unknown>;
  if (typeof payload !== "string" || typeof signature !== "string") throw new KeyBundleError("a bundle is an envelope");
  let bytes: Uint8Array;
  let parsed: unknown;
  try {
    bytes = b64uDecode(payload);
    if (!(await verify(b64uDecode(entry.device_key), signed(DEVICE_KEYS_CONTEXT, bytes), b64uDecode(signature)))) {
      throw new KeyBundleError(`device ${deviceId}'s bundle is not signed by its device key`);
    }
    parsed = JSON.parse(fromUtf8(bytes)) as unknown;
  } catch (error) {
    if (error instanceof KeyBundleError) throw error;
    throw new KeyBundleError(`device ${deviceId}'s bundle does not decode`);
  }
  if (!isJsonObject(parsed) || parsed.v !== 1 || parsed.type !== "device-keys")
    throw new KeyBundleError("not a version 1 device-keys bundle");
  if (parsed.device_id !== deviceId || parsed.account_id !== list.account_id)
    throw new KeyBundleError("the bundle names another device or account");
  if (!Number.isInteger(parsed.issued_at)) throw new KeyBundleError("'issued_at' must be an integer");
  const signingKey = key32(parsed, "signing_key");
  const weak = pointProblem(signingKey); // it signs one-time keys: never one anyone can sign for
  if (weak) throw new KeyBundleError(`device ${deviceId}'s signing key ${weak}`);
  return { accountId: list.account_id, deviceId, identityKey: key32(parsed, "identity_key"), signingKey };
}

/** The account and its verified devices from an accounts.lookup result (every bundle must verify). */
export async function verifyLookup(result: Record<string, unknown>): Promise<Contact> {
  const account = result.account as AccountJson | undefined;
  if (
    !account ||
    typeof account.id !== "string" ||
    typeof account.key !== "string" ||
    typeof account.handle !== "string"
  ) {
    throw new KeyBundleError("the server sent an account without id, handle or key");
  }
  let accountKey: Uint8Array;
  try {
    accountKey = b64uDecode(account.key);
  } catch {
    throw new KeyBundleError("the account key is not base64url");
  }
  if (accountKey.length !== 32 || (await keyId(accountKey)) !== account.id)
    throw new KeyBundleError("the account id does not match its key");
  let list: DeviceList;
  try {
    list = await verifyDeviceList(result.device_list, accountKey, account.id);
  } catch {
    throw new KeyBundleError(`@${account.handle}'s device list does not verify`);
  }
  const keys = new Map<string, DeviceKeys>();
  const bundles = (result.device_keys ?? {}) as Record<string, unknown>;
  for (const [deviceId, bundle] of Object.entries(bundles)) {
    if (bundle === null) continue;
    try {
      keys.set(deviceId, await verifyBundle(bundle, list, deviceId));
    } catch {
      throw new KeyBundleError(`@${account.handle}'s device ${deviceId} has keys that do not verify`);
    }
  }
  return { account, list, keys };
}

/** How long after an unlink's list was signed a message of the unlinked device may still have been
 * accepted by the server (messaging.md §3.1; keys.py's UNLINK_GRACE_MS). */
export const UNLINK_GRACE_MS = 60_000;

/** A device its account unlinked, proven by two consecutive signed lists (messaging.md §3.1). */
export interface FormerDevice {
  keys: DeviceKeys;
  /** `issued_at` of the list that removed it (server time, signed by the account key). */
  removedAt: number;
}

/**
 * Checks `accounts.lookup`'s `former_device` record (keys.py's FormerDevice.verify): the list that had the
 * device as a companion and the next one, without it, both verify under the account key; the bundle
 * verifies under its key in the first; the unlink is not newer than the list the receiver holds.
 */
export async function verifyFormerDevice(record: unknown, contact: Contact, deviceId: string): Promise<FormerDevice> {
  const {
    device_id: named,
    listed_in: listedIn,
    removed_by: removedBy,
    bundle,
  } = (record ?? {}) as Record<string, unknown>;
  if (named !== deviceId) throw new KeyBundleError(`the server has no record of an unlinked device ${deviceId}`);
  const accountKey = b64uDecode(contact.account.key);
  let before: DeviceList;
  let after: DeviceList;
  try {
    before = await verifyDeviceList(listedIn, accountKey, contact.account.id);
    after = await verifyDeviceList(removedBy, accountKey, contact.account.id);
  } catch {
    throw new KeyBundleError(`the record of unlinked device ${deviceId} does not verify`);
  }
  const entry = before.devices.find((d) => d.device_id === deviceId);
  if (!entry || entry.role !== "companion")
    throw new KeyBundleError(`device ${deviceId} was never a companion of this account`);
  if (after.version !== before.version + 1 || after.devices.some((d) => d.device_id === deviceId)) {
    throw new KeyBundleError(`the lists given for device ${deviceId} do not show it being unlinked`);
  }
  if (after.version > contact.list.version)
    throw new KeyBundleError(`device ${deviceId}'s unlink is newer than the account's device list`);
  return { keys: await verifyBundle(bundle, before, deviceId), removedAt: after.issued_at };
}

/** The server queued it, and its device wrote it, before the unlink (within the grace). */
export function sentWhileListed(former: FormerDevice, serverTime: number, sentAt: number): boolean {
  const deadline = former.removedAt + UNLINK_GRACE_MS;
  return serverTime <= deadline && sentAt <= deadline;
}
