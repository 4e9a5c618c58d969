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
  return notices[event] ?? wording.companion.declined;
}

/** The sentence for a server error code met while linking, if the shared wording has one. */
export function serverRefusal(code: string): string | undefined {
  return (wording.server as Record<string, string>)[code];
}
