import { expect, test } from "vitest";
import { BACKOFF_CAP_MS, backoffDelay } from "./agent.js";

test.each([
  [0, 250, 500],
  [1, 500, 1000],
  [3, 2000, 4000],
  [6, 15_000, 30_000],
  [20, 15_000, 30_000],
])("attempt %i waits between %i and %i ms", (attempt, min, max) => {
  expect(backoffDelay(attempt, () => 0)).toBe(min);
  expect(backoffDelay(attempt, () => 1)).toBe(max);
});

test("no attempt ever waits longer than the 30 s cap, whatever the jitter", () => {
  for (let attempt = 0; attempt < 100; attempt++) expect(backoffDelay(attempt, Math.random)).toBeLessThanOrEqual(BACKOFF_CAP_MS);
  expect(BACKOFF_CAP_MS).toBe(30_000);
});

test("jitter spreads a reconnect burst: 1,000 agents at the same attempt do not all pick the same delay", () => {
  const delays = new Set(Array.from({ length: 1000 }, () => backoffDelay(4)));
  expect(delays.size).toBeGreaterThan(500);
});
