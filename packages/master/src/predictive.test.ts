import { describe, expect, test } from "vitest";
import { DEMAND_HISTORY_MINUTES, emptyDemandHistory, predictiveFloor, recordDemand } from "./predictive.js";

const MIN = 60_000;
const DAY = 1440;

/** A history whose minute m (from 0) holds f(m), ending at minute `end`. */
const history = (end: number, f: (m: number) => number) => ({ lastMinute: end, values: Array.from({ length: 8 * DAY }, (_, i) => f(end - 8 * DAY + 1 + i)) });

describe("recordDemand", () => {
  test("a minute is recorded as the mean of its ticks when the next minute starts", () => {
    let h = emptyDemandHistory();
    for (const [t, d] of [
      [0, 100],
      [20_000, 200],
      [40_000, 300],
    ] as const)
      h = recordDemand(h, 10 * MIN + t, d).history;
    expect(h.values).toEqual([]);
    const r = recordDemand(h, 11 * MIN, 50);
    expect(r).toMatchObject({ closed: true, history: { lastMinute: 10, values: [200] } });
  });

  test("minutes the master was down are gaps, so a look-back never lands on the wrong minute", () => {
    let h = recordDemand(emptyDemandHistory(), 10 * MIN, 100).history;
    h = recordDemand(h, 11 * MIN, 200).history;
    h = recordDemand(h, 14 * MIN, 300).history;
    expect(h.lastMinute).toBe(11);
    expect(h.values).toEqual([100, 200]);
    h = recordDemand(h, 15 * MIN, 0).history;
    expect(h.values.map((v) => (Number.isNaN(v) ? "gap" : v))).toEqual([100, 200, "gap", "gap", 300]);
  });

  test("the history stays bounded at eight days", () => {
    let h = emptyDemandHistory();
    for (let m = 0; m < DEMAND_HISTORY_MINUTES + 50; m++) h = recordDemand(h, m * MIN, m).history;
    expect(h.values.length).toBe(DEMAND_HISTORY_MINUTES);
    expect(h.values.at(-1)).toBe(DEMAND_HISTORY_MINUTES + 48);
  });
});

describe("predictiveFloor", () => {
  const now = 20 * DAY * MIN;
  const nowMinute = 20 * DAY;
  test("no history: no floor", () => {
    expect(predictiveFloor(emptyDemandHistory(), now, 120_000, 60)).toBeUndefined();
  });
  test("the floor is what both a day and a week earlier needed, at the target", () => {
    // A day earlier 300 %, a week earlier 240 %: both saw at least 240 % → ceil(240 / 60) = 4 nodes.
    const h = history(nowMinute - 1, (m) => (m === nowMinute + 1 - DAY ? 300 : m === nowMinute + 1 - 7 * DAY ? 240 : 10));
    expect(predictiveFloor(h, now, 120_000, 60)).toEqual({ nodes: 4, demand: 240 });
  });
  test("it looks ahead by the boot time: a ramp a day and a week ago at minute +2 counts now", () => {
    const h = history(nowMinute - 1, (m) => ((m - nowMinute) % DAY === 2 || (m - nowMinute) % DAY === 2 - DAY ? 600 : 10));
    expect(predictiveFloor(h, now, 120_000, 60)?.nodes).toBe(10);
    expect(predictiveFloor(h, now, 60_000, 60)?.nodes).toBe(1);
  });
});
