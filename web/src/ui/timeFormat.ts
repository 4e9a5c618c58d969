/**
 * Times as the messenger shows them, with formatters made once: `toLocaleTimeString` and friends build a
 * new Intl.DateTimeFormat on every call, which a chat list redrawn per message paid for each row (issue 15).
 */
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DATE = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "numeric", day: "numeric" });
const FULL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

let today = { start: 0, end: 0 };
/** What formatClock said, per minute of today and per earlier day: a format call costs ~30 µs, a look-up nothing. */
const said = new Map<number, string>();

function todayAround(now: number): { start: number; end: number } {
  if (now < today.start || now >= today.end) {
    const midnight = new Date(now);
    midnight.setHours(0, 0, 0, 0);
    const next = new Date(midnight);
    next.setDate(next.getDate() + 1);
    today = { start: midnight.getTime(), end: next.getTime() };
    said.clear(); // "today" moved on: yesterday's times now read as a date
  }
  return today;
}

/** The time of day for today's messages, the date for older ones. */
export function formatClock(ms: number, now = Date.now()): string {
  const { start, end } = todayAround(now);
  const isToday = ms >= start && ms < end;
  // Minutes of today are keyed as they are; an earlier day by its (negative) day number, so they never clash.
  const key = isToday ? Math.floor(ms / 60_000) : -1 - Math.floor(new Date(ms).setHours(0, 0, 0, 0) / 86_400_000);
  let text = said.get(key);
  if (text === undefined) {
    text = isToday ? CLOCK.format(ms) : DATE.format(ms);
    said.set(key, text);
  }
  return text;
}

/** Date and time ("26 Nov 2026, 01:02"). */
export function formatFull(ms: number): string {
  return FULL.format(ms);
}

/** "last seen today at 14:02", "… yesterday at 09:15", or "… on 24/11/2026 at 18:40" (§15.5). */
export function formatLastSeen(ms: number, now = Date.now()): string {
  const { start } = todayAround(now);
  const clock = CLOCK.format(ms);
  if (ms >= start) return `last seen today at ${clock}`;
  const yesterday = new Date(start);
  yesterday.setDate(yesterday.getDate() - 1);
  if (ms >= yesterday.getTime()) return `last seen yesterday at ${clock}`;
  return `last seen on ${DATE.format(ms)} at ${clock}`;
}
