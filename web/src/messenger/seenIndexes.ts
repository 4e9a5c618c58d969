/**
 * The Megolm message indexes a device already decrypted in one inbound session, in bounded space (the twin
 * of lockstep.e2e.replay, which explains the choice; messaging.md §6.1): sorted, disjoint ranges
 * [start, end), one range while messages arrive in order; past MAX_RANGES ranges the lowest gap is closed,
 * so the first range's end is a low-water mark below which everything counts as seen (RFC 4303 §3.4.3's
 * anti-replay window). Pure.
 */

/** Ranges kept per session. */
export const MAX_RANGES = 64;

export type SeenJson = [number, number][];

export class SeenIndexes {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** Ranges as `toJson` writes them, or a plain list of indexes (state from before ranges). */
  static fromJson(value: unknown): SeenIndexes {
    const seen = new SeenIndexes();
    if (!Array.isArray(value)) throw new TypeError("seen indexes are a list");
    if (value.every((i) => Number.isSafeInteger(i))) {
      for (const index of [...(value as number[])].sort((a, b) => a - b)) seen.add(index);
      return seen;
    }
    for (const pair of value as unknown[]) {
      const [start, end] = Array.isArray(pair) ? (pair as unknown[]) : [];
      const last = seen.ends[seen.ends.length - 1] ?? -1;
      if (
        !Array.isArray(pair) ||
        pair.length !== 2 ||
        !Number.isSafeInteger(start) ||
        !Number.isSafeInteger(end) ||
        !(last < (start as number) && (start as number) >= 0 && (start as number) < (end as number))
      )
        throw new TypeError("seen index ranges are sorted, disjoint [start, end) pairs");
      seen.starts.push(start as number);
      seen.ends.push(end as number);
    }
    if (seen.starts.length > MAX_RANGES) throw new TypeError(`more than ${MAX_RANGES} seen index ranges`);
    return seen;
  }

  has(index: number): boolean {
    const at = this.rangeAtOrBefore(index);
    return at >= 0 && index < (this.ends[at] as number);
  }

  /** Notes `index` as decrypted; false if it counts as seen already (a replay). */
  add(index: number): boolean {
    if (!Number.isSafeInteger(index) || index < 0) throw new RangeError("a message index is a whole number ≥ 0");
    const { starts, ends } = this;
    const at = this.rangeAtOrBefore(index);
    if (at >= 0 && index < (ends[at] as number)) return false;
    const joinsLower = at >= 0 && ends[at] === index;
    const joinsUpper = at + 1 < starts.length && starts[at + 1] === index + 1;
    if (joinsLower && joinsUpper) {
      ends[at] = ends[at + 1] as number;
      starts.splice(at + 1, 1);
      ends.splice(at + 1, 1);
    } else if (joinsLower) ends[at] = index + 1;
    else if (joinsUpper) starts[at + 1] = index;
    else {
      starts.splice(at + 1, 0, index);
      ends.splice(at + 1, 0, index + 1);
    }
    if (starts.length > MAX_RANGES) {
      // Close the lowest gap: the low-water mark moves up.
      ends[0] = ends[1] as number;
      starts.splice(1, 1);
      ends.splice(1, 1);
    }
    return true;
  }

  toJson(): SeenJson {
    return this.starts.map((start, i) => [start, this.ends[i] as number]);
  }

  /** The last range starting at or before `index`, or -1 (binary search). */
  private rangeAtOrBefore(index: number): number {
    let low = 0;
    let high = this.starts.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.starts[mid] as number) <= index) low = mid + 1;
      else high = mid;
    }
    return low - 1;
  }
}
