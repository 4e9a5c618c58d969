/**
 * Probation for new companions (linking.md §4.6), the browser twin of src/lockstep/link/probation.py. A
 * companion linked from another network has `probation_until` (24 hours after the link) in its entry of
 * the signed device list; until then the other devices send it no history, refuse its group changes and
 * show a banner naming it. Both languages run vectors/probation.json.
 */
import type { DeviceEntry, DeviceList } from "./deviceList";
import { probationText } from "./wording";

export const HOUR_MS = 3_600_000;
export const PROBATION_MS = 24 * HOUR_MS;

/** The time probation is judged at: the earlier of the server's clock and this device's own, so a server
 * (or a device) whose clock runs ahead cannot end it early. */
export function judgedNow(serverNow: number, ownNow: number): number {
  return Math.min(serverNow, ownNow);
}

/** `entry` as the primary lists a companion it links from another network at `now`. */
export function startProbation(entry: DeviceEntry, now: number, address: string): DeviceEntry {
  return { ...entry, probation_until: now + PROBATION_MS, linked_from: address };
}

export function onProbation(entry: DeviceEntry | undefined, now: number): boolean {
  return entry?.probation_until !== undefined && now < entry.probation_until;
}

/** The devices on probation that the device `seenFrom` shows a banner for (never itself). */
export function newcomers(list: DeviceList, now: number, seenFrom: string): DeviceEntry[] {
  return list.devices.filter((d) => d.device_id !== seenFrom && onProbation(d, now));
}

/** Whole hours since the link, for the banner; never negative. */
export function hoursSinceLink(entry: DeviceEntry, now: number): number {
  return Math.max(0, Math.floor((now - entry.linked_at) / HOUR_MS));
}

/** "New device linked 3 hours ago from 203.0.113.7 — not you?": the caller adds how to unlink. */
export function banner(entry: DeviceEntry, now: number): string {
  return probationText("banner", {
    hours: hoursSinceLink(entry, now),
    address: entry.linked_from ?? "another network",
  });
}

/** The primary's devices for its next list with `deviceId` off probation ("Send history now"). */
export function endedEarly(list: DeviceList, deviceId: string): DeviceEntry[] {
  return list.devices.map((d) => {
    if (d.device_id !== deviceId) return d;
    const lifted = { ...d };
    delete lifted.probation_until;
    delete lifted.linked_from;
    return lifted;
  });
}

/** When probation ends, as every device words it: `2026-11-27 03:20 UTC`. */
export function untilText(probationUntil: number): string {
  const iso = new Date(probationUntil).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}
