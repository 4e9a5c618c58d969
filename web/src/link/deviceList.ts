/**
 * Device certificates (linking.md §4.2) and signed device lists (§4.3): building, signing, validating.
 */
import { b64uDecode, b64uEncode } from "../crypto/base64";
import { equalBytes } from "../crypto/bytes";
import { keyId, pointProblem } from "../crypto/ed25519";
import { Context, type Envelope, EnvelopeError, openEnvelope, sealEnvelope } from "../crypto/envelope";

export const MAX_COMPANIONS = 4;
export const MAX_NAME_LENGTH = 64;

/** A device name as the primary writes it into lists and certificates: trimmed, 1 to 64 characters, no
 * control characters (the Python implementation refuses anything else). Returns null when not acceptable. */
export function checkName(name: string): string | null {
  const trimmed = name.trim();
  if (trimmed.length < 1 || trimmed.length > MAX_NAME_LENGTH) return null;
  // C0 controls, DEL and C1 controls: matching them is the point
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(trimmed)) return null;
  return trimmed;
}

export type Role = "primary" | "companion";

export interface DeviceEntry {
  device_id: string;
  device_key: string;
  role: Role;
  name: string;
  linked_at: number;
  /** A companion linked from another network is on probation until then (linking.md §4.6, version 2). */
  probation_until?: number;
  /** The address the server saw it at when it was linked from another network (§4.6). */
  linked_from?: string;
}

export const MAX_ADDRESS_LENGTH = 64;

export interface DeviceList {
  v: 1;
  type: "device-list";
  account_id: string;
  version: number;
  issued_at: number;
  devices: DeviceEntry[];
}

export interface DeviceCertificate {
  v: 1;
  type: "device-certificate";
  account_id: string;
  account_key: string;
  device_id: string;
  device_key: string;
  name: string;
  issued_at: number;
}

/** A device list or certificate that does not verify or breaks a rule of §4. */
export class InvalidDeviceList extends Error {
  override name = "InvalidDeviceList";
}
export class InvalidCertificate extends Error {
  override name = "InvalidCertificate";
}

function isInt(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value);
}

/** Why a device key and id are refused: the id is not derived from the key, or the key is weak. */
async function deviceKeyProblem(deviceKey: unknown, deviceId: unknown): Promise<string | null> {
  const mismatch = "id does not match its key";
  if (typeof deviceKey !== "string" || typeof deviceId !== "string") return mismatch;
  let raw: Uint8Array;
  try {
    raw = b64uDecode(deviceKey);
  } catch {
    return mismatch;
  }
  if (raw.length !== 32 || (await keyId(raw)) !== deviceId) return mismatch;
  const weak = pointProblem(raw);
  return weak ? `key ${weak}` : null;
}

/** Why an entry's version 2 fields are refused (§4.6): lists without them stay valid. devices.py's twin. */
function probationFieldsProblem(entry: Record<string, unknown>): string | null {
  const until = entry.probation_until;
  const from = entry.linked_from;
  if (until !== undefined && until !== null && !isInt(until)) return "'probation_until' must be an int";
  if (until !== undefined && until !== null && entry.role !== "companion")
    return "only a companion can be on probation";
  if (
    from !== undefined &&
    from !== null &&
    (typeof from !== "string" ||
      from.length < 1 ||
      from.length > MAX_ADDRESS_LENGTH ||
      !/^[0-9A-Za-z.:%_-]+$/.test(from))
  )
    return "'linked_from' must be an address as the server saw it";
  return null;
}

/**
 * §4.3 "valid": verifies under the account key, right type/v/account, one primary, ≤4 companions,
 * ids unique and derived.
 */
export async function verifyDeviceList(
  envelope: unknown,
  accountKey: Uint8Array,
  accountId: string,
): Promise<DeviceList> {
  let payload: Record<string, unknown>;
  try {
    payload = await openEnvelope(envelope, Context.deviceList, accountKey);
  } catch (error) {
    throw new InvalidDeviceList(
      error instanceof EnvelopeError ? `device list: ${error.message}` : "device list does not verify",
    );
  }
  if (payload.v !== 1 || payload.type !== "device-list" || payload.account_id !== accountId)
    throw new InvalidDeviceList("device list is for another account or format");
  if (!isInt(payload.version) || payload.version < 1 || !isInt(payload.issued_at) || !Array.isArray(payload.devices))
    throw new InvalidDeviceList("device list fields are missing");
  const seen = new Set<string>();
  let primaries = 0;
  let companions = 0;
  for (const item of payload.devices as unknown[]) {
    if (typeof item !== "object" || item === null) throw new InvalidDeviceList("device entry is not an object");
    const d = item as Record<string, unknown>;
    if (typeof d.name !== "string" || !isInt(d.linked_at))
      throw new InvalidDeviceList("device entry fields are missing");
    const probationProblem = probationFieldsProblem(d);
    if (probationProblem) throw new InvalidDeviceList(probationProblem);
    if (d.role === "primary") primaries++;
    else if (d.role === "companion") companions++;
    else throw new InvalidDeviceList("device has an unknown role");
    const problem = await deviceKeyProblem(d.device_key, d.device_id);
    if (problem) throw new InvalidDeviceList(`device ${problem}`);
    if (seen.has(d.device_id as string)) throw new InvalidDeviceList("device listed twice");
    seen.add(d.device_id as string);
  }
  if (primaries !== 1) throw new InvalidDeviceList("device list needs exactly one primary");
  if (companions > MAX_COMPANIONS)
    throw new InvalidDeviceList(`device list has more than ${MAX_COMPANIONS} companions`);
  return payload as unknown as DeviceList;
}

/** §4.2: verifies under the account key and checks it names `deviceKey` (when given). */
export async function verifyCertificate(
  envelope: unknown,
  accountKey: Uint8Array,
  accountId: string,
  deviceKey?: Uint8Array,
): Promise<DeviceCertificate> {
  let payload: Record<string, unknown>;
  try {
    payload = await openEnvelope(envelope, Context.deviceCertificate, accountKey);
  } catch (error) {
    throw new InvalidCertificate(
      error instanceof EnvelopeError ? `certificate: ${error.message}` : "certificate does not verify",
    );
  }
  if (payload.v !== 1 || payload.type !== "device-certificate" || payload.account_id !== accountId)
    throw new InvalidCertificate("certificate is for another account or format");
  if (payload.account_key !== b64uEncode(accountKey))
    throw new InvalidCertificate("certificate names another account key");
  if (typeof payload.name !== "string" || !isInt(payload.issued_at))
    throw new InvalidCertificate("certificate fields are missing");
  const problem = await deviceKeyProblem(payload.device_key, payload.device_id);
  if (problem) throw new InvalidCertificate(`certificate device ${problem}`);
  if (deviceKey) {
    let named: Uint8Array;
    try {
      named = b64uDecode(payload.device_key as string);
    } catch {
      throw new InvalidCertificate("certificate device key is not base64url");
    }
    if (!equalBytes(named, deviceKey)) throw new InvalidCertificate("certificate names another device");
  }
  return payload as unknown as DeviceCertificate;
}

export async function signDeviceList(accountPrivateKey: CryptoKey, list: DeviceList): Promise<Envelope> {
  return sealEnvelope(accountPrivateKey, Context.deviceList, list);
}

export async function signCertificate(accountPrivateKey: CryptoKey, certificate: DeviceCertificate): Promise<Envelope> {
  return sealEnvelope(accountPrivateKey, Context.deviceCertificate, certificate);
}

export function companions(list: DeviceList): DeviceEntry[] {
  return list.devices.filter((d) => d.role === "companion");
}

export function findDevice(list: DeviceList, deviceId: string): DeviceEntry | undefined {
  return list.devices.find((d) => d.device_id === deviceId);
}

/**
 * What a device does with a valid list it is offered, given the version it holds (§4.3): `take` a newer
 * one; `keep` its own on the same version (identical or not: a different list under a version already
 * seen comes only from a misbehaving server or a replay); refuse an older one (`stale`). The twin of
 * lockstep.link.devices.list_update; both run vectors/device-list-updates.json.
 */
export type ListUpdate = "take" | "keep" | "stale";

export function listUpdate(heldVersion: number, offered: DeviceList): ListUpdate {
  if (offered.version > heldVersion) return "take";
  return offered.version === heldVersion ? "keep" : "stale";
}

/** `name`, or `name (2)`, `name (3)`…: the first that no device of `list` has, so every device stays
 * reachable by name (two laptops both described as "Chrome 156 on Linux"). devices.py's unused_name. */
export function unusedName(list: DeviceList, name: string): string {
  const taken = new Set(list.devices.map((d) => d.name));
  let candidate = name;
  for (let counter = 2; taken.has(candidate); counter++) {
    const suffix = ` (${counter})`;
    candidate = name.slice(0, MAX_NAME_LENGTH - suffix.length) + suffix;
  }
  return candidate;
}

/** The next version of `list` with `devices` (the primary bumps version by one and re-signs). */
export function nextList(list: DeviceList, devices: DeviceEntry[], issuedAt: number): DeviceList {
  return {
    v: 1,
    type: "device-list",
    account_id: list.account_id,
    version: list.version + 1,
    issued_at: issuedAt,
    devices,
  };
}
