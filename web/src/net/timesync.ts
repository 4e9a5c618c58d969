/**
 * Server time over the app's WebSocket with the NTP on-wire math (RFC 5905 §8): the client sends t1, the
 * server answers t2 (its receive time) and t3 (its transmit time), the client notes t4; all ms since the
 * Unix epoch. Of a few samples, the one with the least delay wins (the clock filter's rule, §10).
 */

export interface TimeSample {
  /** Server clock minus ours: ((t2 - t1) + (t3 - t4)) / 2 */
  offset: number;
  /** Round trip spent on the network: (t4 - t1) - (t3 - t2) */
  delay: number;
}

export function onWire(t1: number, t2: number, t3: number, t4: number): TimeSample {
  return { offset: (t2 - t1 + (t3 - t4)) / 2, delay: t4 - t1 - (t3 - t2) };
}

/** The sample with the smallest non-negative delay, or null. */
export function bestSample(samples: TimeSample[]): TimeSample | null {
  let best: TimeSample | null = null;
  for (const s of samples) {
    if (!Number.isFinite(s.offset) || !Number.isFinite(s.delay) || s.delay < 0) continue;
    if (!best || s.delay < best.delay) best = s;
  }
  return best;
}

/** Our clock in ms since the epoch, with sub-millisecond resolution and no jumps within a page's life. */
export function localNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Beyond this, the page tells the user their clock is off (and keeps using server time). */
export const CLOCK_WARNING_MS = 60_000;

export function describeOffset(offsetMs: number): string {
  const seconds = Math.round(Math.abs(offsetMs) / 1000);
  const amount = seconds >= 120 ? `${Math.round(seconds / 60)} minutes` : `${seconds} seconds`;
  const direction = offsetMs > 0 ? "behind" : "ahead of";
  return (
    `This device's clock is ${amount} ${direction} the server's. ` +
    "Lockstep uses the server's time, but you may want to fix your clock."
  );
}
