/**
 * What a primary tells a person when a scan cannot link: the same file `lockstep primary` reads
 * (src/lockstep/link/wording.json), so the phone app and the terminal say the same words.
 */
import wording from "../../../src/lockstep/link/wording.json";

type CodeRefusal = keyof typeof wording.code;

/** The sentence for scanned text that is not a usable code, with its `{name}` fields filled in. */
export function codeRefusal(key: CodeRefusal, fields: Record<string, string | number> = {}): string {
  return wording.code[key].replace(/\{(\w+)\}/g, (_, name: string) => String(fields[name] ?? ""));
}

/** What a companion shows for `scanned` or a `link.declined` reason (anything unknown reads as a decline). */
export function companionNotice(event: string): string {
  const notices = wording.companion as Record<string, string>;
  return event === "number" ? wording.companion.declined : (notices[event] ?? wording.companion.declined);
}

/** What a companion shows with its matching number once its code was inspected (linking.md §6.5). */
export function numberNotice(number: string): string {
  return wording.companion.number.replace("{number}", number);
}

/** The different-network screen (linking.md §6.5): the warning naming the companion's address, the prompt. */
export function relayText(key: keyof typeof wording.relay, address = ""): string {
  return wording.relay[key].replace(/\{address\}/g, address);
}

/** Server error code met while linking → the sentence to show (every page reads it through ../net/refusals.ts). */
export const SERVER_REFUSALS = wording.server;

/** The code flow's fixed sentences: `warning` (wherever a code is typed), `companion_instructions` (beside a code). */
export function linkCodeText(key: keyof typeof wording.link_code): string {
  return wording.link_code[key];
}

/** Probation (linking.md §4.6): the banner (with `hours` and `address`) and what follows it, the line on the
 * device on probation (with `until`), and what other devices refuse it. */
export function probationText(
  key: keyof typeof wording.probation,
  fields: Record<string, string | number> = {},
): string {
  const chosen = key !== "banner" ? key : fields.hours === 0 ? "banner_new" : fields.hours === 1 ? "banner_one" : key;
  return wording.probation[chosen].replace(/\{(\w+)\}/g, (_, name: string) => String(fields[name] ?? ""));
}

/** Idle logout (linking.md §4.5): `logged_out`, or `offline` with the whole days the phone has been away
 * (`offline`) and the days left (`days`). */
export function idleText(key: "logged_out" | "offline", fields: { offline?: number; days?: number } = {}): string {
  const chosen = key === "offline" && fields.days === 1 ? "offline_one" : key;
  return wording.idle[chosen].replace(/\{(\w+)\}/g, (_, name: string) => String(fields[name as "days"] ?? ""));
}
