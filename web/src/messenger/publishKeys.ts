/**
 * Publishing this device's keys (messaging.md §3), the twin of client/messaging/keys.py: the signed key
 * bundle and fallback key once, and fresh signed one-time keys whenever the server holds fewer than half of
 * ONE_TIME_KEYS_TARGET. Private halves reach disk before the public halves leave.
 */
import type { Device } from "./device";
import { sealBundle, signKeys } from "./keys";

export const ONE_TIME_KEYS_TARGET = 50;

/** Uploads what the server lacks; returns how many one-time keys it holds now. */
export async function publishKeys(device: Device): Promise<number> {
  const { identity, olm } = device;
  let fallback = null;
  if (device.state.bundle === null) {
    // device.state, never a copy held across an await: `save` replaces the record.
    device.state.bundle = await sealBundle(
      identity.deviceKey,
      olm.account,
      identity.accountId,
      identity.deviceId,
      device.now(),
    );
    await olm.account.generateFallbackKey();
    [fallback] = await signKeys(olm.account, olm.account.fallbackKey(), true);
    olm.account.markKeysAsPublished();
    await device.save();
  }
  let result = await device.request("keys.upload", {
    bundle: device.state.bundle,
    ...(fallback ? { fallback_key: fallback } : {}),
  });
  let left = Number(result.one_time_keys_left);
  if (left < ONE_TIME_KEYS_TARGET / 2) {
    await olm.account.generateOneTimeKeys(ONE_TIME_KEYS_TARGET - left);
    const fresh = await signKeys(olm.account, olm.account.oneTimeKeys(), false);
    olm.account.markKeysAsPublished();
    await device.save(); // private halves on disk before the public halves are out
    result = await device.request("keys.upload", { bundle: device.state.bundle, one_time_keys: fresh });
    left = Number(result.one_time_keys_left);
  }
  return left;
}
