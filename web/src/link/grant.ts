/**
 * The link grant (linking.md §5): one HPKE PSK-mode message from primary to companion.
 *   pkR = QR ephemeral key, psk = QR link_secret, psk_id = ref, info = "lockstep/link/v1 " + origin, aad = ref.
 */
import { b64uDecode, b64uEncode } from "../crypto/base64";
import { fromUtf8, utf8 } from "../crypto/bytes";
import { keyId } from "../crypto/ed25519";
import type { Envelope } from "../crypto/envelope";
import { HpkeError, openPsk, sealPsk } from "../crypto/hpke";
import {
  type DeviceCertificate,
  type DeviceEntry,
  type DeviceList,
  InvalidCertificate,
  InvalidDeviceList,
  MAX_COMPANIONS,
  companions,
  nextList,
  signCertificate,
  signDeviceList,
  verifyCertificate,
  verifyDeviceList,
} from "./deviceList";
import { startProbation } from "./probation";
import type { DecodedLinkCode } from "./qr";
import { SERVER_REFUSALS } from "./wording";

export interface AccountInfo {
  id: string;
  handle: string;
  display_name: string;
  /** b64u Ed25519 account public key */
  key: string;
}

export interface GrantPlaintext {
  v: 1;
  type: "link-grant";
  origin: string;
  account: AccountInfo;
  device_name: string;
  certificate: Envelope;
  device_list: Envelope;
}

/** The grant does not open, or opens but fails a §5 check. Nothing may be stored. */
export class GrantError extends Error {
  override name = "GrantError";
}

/** The primary refuses locally: the account already has MAX_COMPANIONS companions. */
export class TooManyDevices extends Error {
  override name = "TooManyDevices";
  constructor() {
    super(SERVER_REFUSALS.too_many_devices);
  }
}

export function grantInfo(origin: string): Uint8Array {
  return utf8(`lockstep/link/v1 ${origin}`);
}

export interface BuiltGrant {
  enc: Uint8Array;
  ciphertext: Uint8Array;
  certificate: Envelope;
  deviceList: Envelope;
  list: DeviceList;
  deviceId: string;
}

/** Primary side: certificate + next device list + sealed grant, ready for `link.approve`. */
export async function buildGrant(args: {
  code: DecodedLinkCode;
  origin: string;
  account: AccountInfo;
  accountPrivateKey: CryptoKey;
  currentList: DeviceList;
  deviceName: string;
  now: number;
  /** The address the server saw a companion on another network at: it starts on probation (§4.6). */
  otherNetwork?: string;
  ephemeral?: CryptoKey;
}): Promise<BuiltGrant> {
  const { code, account, currentList, now } = args;
  if (companions(currentList).length >= MAX_COMPANIONS) throw new TooManyDevices();
  const deviceId = await keyId(code.deviceKey);
  const deviceKey = b64uEncode(code.deviceKey);
  const certificatePayload: DeviceCertificate = {
    v: 1,
    type: "device-certificate",
    account_id: account.id,
    account_key: account.key,
    device_id: deviceId,
    device_key: deviceKey,
    name: args.deviceName,
    issued_at: now,
  };
  const certificate = await signCertificate(args.accountPrivateKey, certificatePayload);
  const entry: DeviceEntry = {
    device_id: deviceId,
    device_key: deviceKey,
    role: "companion",
    name: args.deviceName,
    linked_at: now,
  };
  const listed = args.otherNetwork === undefined ? entry : startProbation(entry, now, args.otherNetwork);
  const list = nextList(currentList, [...currentList.devices, listed], now);
  const deviceList = await signDeviceList(args.accountPrivateKey, list);
  const plaintext: GrantPlaintext = {
    v: 1,
    type: "link-grant",
    origin: args.origin,
    account,
    device_name: args.deviceName,
    certificate,
    device_list: deviceList,
  };
  const { enc, ciphertext } = await sealPsk(
    code.ephemeralKey,
    grantInfo(args.origin),
    code.linkSecret,
    code.ref,
    code.ref,
    utf8(JSON.stringify(plaintext)),
    args.ephemeral,
  );
  return { enc, ciphertext, certificate, deviceList, list, deviceId };
}

export interface OpenedGrant {
  account: AccountInfo;
  accountKey: Uint8Array;
  deviceName: string;
  deviceId: string;
  certificate: Envelope;
  deviceList: Envelope;
  list: DeviceList;
  cert: DeviceCertificate;
}

/** Companion side: opens the grant and runs every check of §5; throws GrantError on any failure. */
export async function openGrant(args: {
  enc: Uint8Array;
  ciphertext: Uint8Array;
  ephemeralPrivateKey: CryptoKey;
  ref: Uint8Array;
  linkSecret: Uint8Array;
  origin: string;
  deviceKey: Uint8Array;
}): Promise<OpenedGrant> {
  let plaintext: Uint8Array;
  try {
    plaintext = await openPsk(
      args.enc,
      args.ephemeralPrivateKey,
      grantInfo(args.origin),
      args.linkSecret,
      args.ref,
      args.ref,
      args.ciphertext,
    );
  } catch (error) {
    throw new GrantError(
      error instanceof HpkeError ? "the grant does not open with this code's secret" : "the grant could not be opened",
    );
  }
  let grant: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(fromUtf8(plaintext));
    if (typeof parsed !== "object" || parsed === null) throw new TypeError();
    grant = parsed as Record<string, unknown>;
  } catch {
    throw new GrantError("the grant is not JSON");
  }
  if (grant.v !== 1 || grant.type !== "link-grant") throw new GrantError("the grant has an unknown format");
  if (grant.origin !== args.origin) throw new GrantError("the grant names another server");
  const account = grant.account as Record<string, unknown> | null;
  if (
    typeof account !== "object" ||
    account === null ||
    typeof account.id !== "string" ||
    typeof account.handle !== "string" ||
    typeof account.display_name !== "string" ||
    typeof account.key !== "string"
  ) {
    throw new GrantError("the grant's account is malformed");
  }
  if (typeof grant.device_name !== "string") throw new GrantError("the grant has no device name");
  let accountKey: Uint8Array;
  try {
    accountKey = b64uDecode(account.key);
  } catch {
    throw new GrantError("the account key is not base64url");
  }
  if (accountKey.length !== 32 || (await keyId(accountKey)) !== account.id)
    throw new GrantError("the account id does not match its key");
  let cert: DeviceCertificate;
  let list: DeviceList;
  try {
    cert = await verifyCertificate(grant.certificate, accountKey, account.id, args.deviceKey);
    list = await verifyDeviceList(grant.device_list, accountKey, account.id);
  } catch (error) {
    if (error instanceof InvalidCertificate || error instanceof InvalidDeviceList) throw new GrantError(error.message);
    throw new GrantError("the grant's signatures do not verify");
  }
  const deviceId = await keyId(args.deviceKey);
  const me = list.devices.find((d) => d.device_id === deviceId);
  if (!me || me.role !== "companion" || me.device_key !== b64uEncode(args.deviceKey))
    throw new GrantError("the device list does not include this device as a companion");
  return {
    account: { id: account.id, handle: account.handle, display_name: account.display_name, key: account.key },
    accountKey,
    deviceName: grant.device_name,
    deviceId,
    certificate: grant.certificate as Envelope,
    deviceList: grant.device_list as Envelope,
    list,
    cert,
  };
}
