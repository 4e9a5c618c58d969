/**
 * Times as the messenger shows them, with formatters made once: `toLocaleTimeString` and friends build a
 * new Intl.DateTimeFormat on every call, which a chat list redrawn per message paid for each row (issue 15).
 */
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DATE = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "numeric", day: "numeric" });
const FULL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

let today = { start: 0, end: 0 };

function todayAround(now: number): { start: number; end: number } {
  if (now < today.start || now >= today.end) {
    const midnight = new Date(now);
    midnight.setHours(0, 0, 0, 0);
    const next = new Date(midnight);
    next.setDate(next.getDate() + 1);
    today = { start: midnight.getTime(), end: next.getTime() };
  }
  return today;
}

/** The time of day for today's messages, the date for older ones. */
export function formatClock(ms: number, now = Date.now()): string {
  const { start, end } = todayAround(now);
  return ms >= start && ms < end ? CLOCK.format(ms) : DATE.format(ms);
}

/** Date and time ("26 Nov 2026, 01:02"). */
export function formatFull(ms: number): string {
  return FULL.format(ms);
}
