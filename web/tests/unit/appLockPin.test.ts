/** The app lock's PIN (src/lock/pin.ts): a slow salted hash, and a back-off driven by a clock the test moves. */
import { describe, expect, test } from "vitest";
import {
  FIRST_WAIT_S,
  FREE_ATTEMPTS,
  MAX_WAIT_S,
  PIN_ITERATIONS,
  type PinRecord,
  checkPin,
  makePin,
  pinProblem,
  secondsToWait,
  waitAfter,
} from "../../src/lock/pin";

const FAST = 1000; // iterations: the hash's cost is not what these tests are about

describe("pinProblem", () => {
  test.each([
    ["12345", "at least 6 digits"],
    ["", "at least 6 digits"],
    ["12345a", "digits only"],
    ["123 456", "digits only"],
    ["١٢٣٤٥٦", "digits only"], // Arabic-Indic digits: not what the numeric keypad types
  ])("%j: %s", (pin, words) => {
    expect(pinProblem(pin)).toContain(words);
  });

  test("six or more ASCII digits are a PIN", () => {
    expect(pinProblem("024680")).toBeNull();
    expect(pinProblem("0246801357")).toBeNull();
  });
});

describe("the stored record", () => {
  test("holds a salted hash, never the PIN, and is slow by default", async () => {
    const a = await makePin("246810", FAST);
    const b = await makePin("246810", FAST);
    expect(a.hash).not.toEqual(b.hash); // salted
    expect(JSON.stringify(Array.from(a.hash))).not.toContain("246810");
    expect(a.hash.length).toBe(32);
    expect(PIN_ITERATIONS).toBeGreaterThanOrEqual(600_000);
  });
});

describe("checkPin and the back-off", () => {
  const T0 = 1_700_000_000_000;

  async function wrongTimes(record: PinRecord, times: number, now: number): Promise<PinRecord> {
    for (let i = 0; i < times; i++) record = (await checkPin(record, "999999", now)).record;
    return record;
  }

  test("the right PIN opens and clears earlier mistakes", async () => {
    const record = await wrongTimes(await makePin("246810", FAST), 3, T0);
    expect(record.failures).toBe(3);
    const right = await checkPin(record, "246810", T0);
    expect(right.result).toBe("right");
    expect(right.record.failures).toBe(0);
  });

  test(`${String(FREE_ATTEMPTS)} wrong PINs, then ${String(FIRST_WAIT_S)} s in which even the right one is not checked`, async () => {
    let record = await makePin("246810", FAST);
    for (let i = 1; i < FREE_ATTEMPTS; i++) {
      const wrong = await checkPin(record, "135790", T0);
      expect(wrong).toMatchObject({ result: "wrong", wait: 0, freeLeft: FREE_ATTEMPTS - i });
      record = wrong.record;
    }
    const fifth = await checkPin(record, "135790", T0);
    expect(fifth).toMatchObject({ result: "wrong", wait: FIRST_WAIT_S, freeLeft: 0 });
    record = fifth.record;

    const during = await checkPin(record, "246810", T0 + 29_001);
    expect(during).toMatchObject({ result: "wait", wait: 1 });
    expect(during.record).toEqual(record); // nothing learnt, nothing counted

    expect((await checkPin(record, "246810", T0 + FIRST_WAIT_S * 1000)).result).toBe("right");
  });

  test("each wrong PIN after that doubles the wait, up to an hour", () => {
    expect([4, 5, 6, 7, 8].map(waitAfter)).toEqual([0, 30, 60, 120, 240]);
    expect(waitAfter(30)).toBe(MAX_WAIT_S);
  });

  test("a wrong PIN after a wait earns the doubled wait", async () => {
    let record = await wrongTimes(await makePin("246810", FAST), FREE_ATTEMPTS, T0);
    const later = T0 + FIRST_WAIT_S * 1000;
    const sixth = await checkPin(record, "135790", later);
    expect(sixth).toMatchObject({ result: "wrong", wait: 2 * FIRST_WAIT_S });
    record = sixth.record;
    expect(secondsToWait(record, later + 1000)).toBe(2 * FIRST_WAIT_S - 1);
  });

  test("setting the clock back restarts the wait instead of ending it", async () => {
    const record = await wrongTimes(await makePin("246810", FAST), FREE_ATTEMPTS, T0);
    expect(secondsToWait(record, T0 - 86_400_000)).toBe(FIRST_WAIT_S);
    expect((await checkPin(record, "246810", T0 - 86_400_000)).result).toBe("wait");
  });
});
