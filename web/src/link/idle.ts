/**
 * Idle logout (linking.md §4.5): the browser twin of src/lockstep/link/idle.py. Companions live on the
 * primary's signature: a list 14 days old logs them out (they check its age themselves), an online
 * primary re-signs its list once it is a day old, and companions count down once fewer than 3 days remain.
 */
import type { DeviceEntry, DeviceList } from "./deviceList";

export const DAY_MS = 86_400_000;
export const IDLE_LOGOUT_MS = 14 * DAY_MS;
export const REFRESH_AFTER_MS = DAY_MS;
export const COUNTDOWN_DAYS = 3;

/** Whole days (rounded up) until companions log out; 0 or less: now. */
export function daysLeft(issuedAt: number, now: number): number {
  return Math.ceil((issuedAt + IDLE_LOGOUT_MS - now) / DAY_MS);
}

/** Whole days since the primary last signed the list (its time offline, as a companion can tell). */
export function offlineDays(issuedAt: number, now: number): number {
  return Math.max(0, Math.floor((now - issuedAt) / DAY_MS));
}

export function expired(issuedAt: number, now: number): boolean {
  return now >= issuedAt + IDLE_LOGOUT_MS;
}

/** The days left to show a companion once less than COUNTDOWN_DAYS remain, else null. */
export function countdown(issuedAt: number, now: number): number | null {
  const remaining = issuedAt + IDLE_LOGOUT_MS - now;
  return remaining > 0 && remaining < COUNTDOWN_DAYS * DAY_MS ? daysLeft(issuedAt, now) : null;
}

/** The devices an online primary should sign now, or null: the same ones once the list is a day old, or,
 * 14 days after its last list, only the primary (the companions have logged themselves out). */
export function keepAlive(list: DeviceList, now: number): DeviceEntry[] | null {
  const companions = list.devices.filter((d) => d.role === "companion");
  if (companions.length === 0 || now - list.issued_at < REFRESH_AFTER_MS) return null;
  if (expired(list.issued_at, now)) return list.devices.filter((d) => d.role === "primary");
  return list.devices;
}
