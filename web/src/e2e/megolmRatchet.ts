/**
 * The Megolm ratchet (megolm.md "The Megolm ratchet algorithm", "Advancing the ratchet"): four 32-byte
 * parts R(i,0..3) and a 32-bit counter i. H_k(A) = HMAC-SHA-256(A, byte k).
 * Every 2^8 steps R(i,3) is reseeded from R(i,2), every 2^16 steps R(i,2..3) from R(i,1), every 2^24
 * steps R(i,1..3) from R(i,0); otherwise only R(i,3) is hashed. advanceTo() reaches any later index in at
 * most 4 × 255 hashes, as the spec says.
 */

import { LocalE2EError, MalformedError } from "./errors";
import { hmacSha256 } from "./primitives";

export const RATCHET_LENGTH = 128;
const PART = 32;
const SEEDS = [Uint8Array.of(0), Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3)];

export class MegolmRatchet {
  private constructor(
    private readonly parts: Uint8Array[],
    private counter: number,
  ) {}

  static fromBytes(bytes: Uint8Array, index: number): MegolmRatchet {
    if (bytes.length !== RATCHET_LENGTH) throw new MalformedError("a Megolm ratchet is 128 bytes");
    if (!Number.isInteger(index) || index < 0 || index > 0xffffffff)
      throw new MalformedError("ratchet index out of range");
    const parts = [0, 1, 2, 3].map((k) => bytes.slice(k * PART, (k + 1) * PART));
    return new MegolmRatchet(parts, index);
  }

  get index(): number {
    return this.counter;
  }

  /** R(i) = R(i,0) ∥ R(i,1) ∥ R(i,2) ∥ R(i,3). */
  bytes(): Uint8Array {
    const out = new Uint8Array(RATCHET_LENGTH);
    this.parts.forEach((part, k) => out.set(part, k * PART));
    return out;
  }

  clone(): MegolmRatchet {
    return new MegolmRatchet(
      this.parts.map((p) => p.slice()),
      this.counter,
    );
  }

  /** R(to) = H_to(R(from)); when from == to the part hashes itself. */
  private async rehash(from: number, to: number): Promise<void> {
    this.parts[to] = await hmacSha256(this.parts[from]!, SEEDS[to]!);
  }

  /** One step: i+1. The slowest part h that rolls over reseeds h..3 (3 first, h itself last). */
  async advance(): Promise<void> {
    if (this.counter === 0xffffffff) throw new LocalE2EError("Megolm ratchet index exhausted");
    const next = this.counter + 1;
    let h = 3;
    if (next % 0x1000000 === 0) h = 0;
    else if (next % 0x10000 === 0) h = 1;
    else if (next % 0x100 === 0) h = 2;
    for (let k = 3; k >= h; k--) await this.rehash(h, k);
    this.counter = next;
  }

  /** Moves forward to `target` (≥ the current index) with at most 255 hashes of each part. */
  async advanceTo(target: number): Promise<void> {
    if (!Number.isInteger(target) || target < this.counter || target > 0xffffffff) {
      throw new LocalE2EError("a Megolm ratchet only moves forward");
    }
    for (let j = 0; j < 4; j++) {
      const shift = (3 - j) * 8;
      const steps = ((target >>> shift) - (this.counter >>> shift)) & 0xff;
      if (steps === 0) continue;
      // Parts j+1..3 are overwritten below, so only R(i,j) needs the first steps - 1 hashes.
      for (let s = 1; s < steps; s++) await this.rehash(j, j);
      for (let k = 3; k >= j; k--) await this.rehash(j, k);
      const mask = shift === 0 ? 0xffffffff : (0xffffffff << shift) >>> 0;
      this.counter = (target & mask) >>> 0;
    }
  }
}
