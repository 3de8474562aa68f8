import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import type { Logger } from "@autoscaler/shared";
import { createDemandStore } from "./demand-store.js";
import { emptyDemandHistory } from "./predictive.js";

let dir: string;
const warnings: string[] = [];
const logger: Logger = { debug: () => undefined, info: () => undefined, warn: (m) => void warnings.push(m), error: () => undefined };
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "demand-store-test-"));
  warnings.length = 0;
});
afterEach(() => fs.rm(dir, { recursive: true, force: true }));

test("a history is saved 0600 and loaded back, gaps (the master was down) included", async () => {
  const store = createDemandStore(path.join(dir, "state"));
  await store.save({ lastMinute: 1000, values: [120.04, Number.NaN, 60] });
  const loaded = await store.load(logger);
  expect(loaded.lastMinute).toBe(1000);
  expect(loaded.values.map((v) => (Number.isNaN(v) ? "gap" : v))).toEqual([120, "gap", 60]);
  expect((await fs.stat(path.join(dir, "state", "demand.json"))).mode & 0o777).toBe(0o600);
  expect(warnings).toEqual([]);
});

test("no file: an empty history, and no warning", async () => {
  expect(await createDemandStore(dir).load(logger)).toEqual(emptyDemandHistory());
  expect(warnings).toEqual([]);
});

test.each([
  ["not JSON", "{ half"],
  ["a wrong shape", JSON.stringify({ version: 1, lastMinute: -1, values: ["x"] })],
  ["an unknown version", JSON.stringify({ version: 9, lastMinute: 1, values: [] })],
])("a file that is %s only empties the floor's history, with a warning (it never repeats an action)", async (_what, text) => {
  await fs.writeFile(path.join(dir, "demand.json"), text);
  expect(await createDemandStore(dir).load(logger)).toEqual(emptyDemandHistory());
  expect(warnings).toHaveLength(1);
});
