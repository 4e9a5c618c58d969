import { describe, expect, test } from "vitest";
import { Slicer } from "../../src/messenger/yieldToPage";

describe("Slicer", () => {
  test("yields only once a slice has used its budget, and starts the next slice after the yield", async () => {
    let clock = 0;
    const yields: number[] = [];
    const slicer = new Slicer(
      8,
      () => clock,
      () => {
        yields.push(clock);
        clock += 3; // the page's turn takes time too: it does not count against the next slice
        return Promise.resolve();
      },
    );
    for (const step of [2, 2, 2, 2, 2, 2, 2, 2, 2]) {
      clock += step;
      await slicer.pause();
    }
    // 18 ms of steps in slices of 8 ms: a yield after the 4th step (8 ms) and after the 8th (8 more).
    expect(yields).toEqual([8, 19]);
  });

  test("a single step longer than the budget yields after it, every time", async () => {
    let clock = 0;
    let yields = 0;
    const slicer = new Slicer(
      8,
      () => clock,
      () => {
        yields++;
        return Promise.resolve();
      },
    );
    for (let i = 0; i < 3; i++) {
      clock += 20;
      await slicer.pause();
    }
    expect(yields).toBe(3);
  });
});
