import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { createStateStore, emptyState, type DurableState } from "./state-store.js";

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "state-store-test-"));
});
afterEach(() => fs.rm(dir, { recursive: true, force: true }));

const full: DurableState = {
  version: 2,
  paused: true,
  lastScaleUpAt: 1_700_000_000_000,
  launches: [
    {
      id: "l-1",
      decidedAt: 1_700_000_000_000,
      count: 2,
      reason: "scale-up: node web-2 at 91 % ≥ 75 % for 60 s",
      status: "running",
      instances: [{ instanceId: "i-0123456789abcdef0", privateAddress: "10.0.1.21" }],
      nodes: [],
      manual: false,
    },
  ],
  drains: [
    {
      id: "d-1",
      node: "web-1",
      instanceId: "i-0fedcba9876543210",
      address: "10.0.1.11",
      decidedAt: 1_700_000_100_000,
      drainUntil: 1_700_000_130_000,
      status: "draining",
      reason: "manual scale-down",
      manual: true,
    },
  ],
  backoff: { up: { failures: 2, until: 1_700_000_060_000 } },
};

test("a master that never ran starts from the empty state", async () => {
  expect(await createStateStore(dir).load()).toEqual(emptyState());
});

test("what is saved is loaded back exactly, and the file is mode 0600 in a folder it creates", async () => {
  const store = createStateStore(path.join(dir, "state"));
  await store.save(full);
  expect(await store.load()).toEqual(full);
  expect((await fs.stat(store.file)).mode & 0o777).toBe(0o600);
});

test("a save replaces the file whole: no temp file is left and a reader never sees a mix", async () => {
  const store = createStateStore(dir);
  await store.save(full);
  await store.save({ ...full, paused: false });
  expect((await store.load()).paused).toBe(false);
  expect((await fs.readdir(dir)).filter((f) => f.startsWith("."))).toEqual([]);
});

test.each([
  ["not JSON", "{ half a file", /not valid JSON; refusing to start rather than forget launches/],
  ["an unknown version", JSON.stringify({ ...full, version: 3 }), /unexpected shape \(version/],
  [
    "a launch with an unknown status",
    JSON.stringify({ ...full, launches: [{ ...full.launches[0], status: "maybe" }] }),
    /unexpected shape \(launches\.0\.status/,
  ],
  ["an extra field", JSON.stringify({ ...full, shell: "rm -rf /" }), /unexpected shape/],
])("a state file that is %s is refused with a message, and left as it was", async (_what, text, message) => {
  const store = createStateStore(dir);
  await fs.writeFile(store.file, text);
  await expect(store.load()).rejects.toThrow(message);
  expect(await fs.readFile(store.file, "utf8")).toBe(text);
});

test("saving a state of the wrong shape throws before anything is written", async () => {
  const store = createStateStore(dir);
  await store.save(full);
  const before = await fs.readFile(store.file, "utf8");
  await expect(store.save({ ...full, launches: [{ ...full.launches[0]!, count: 0 }] })).rejects.toThrow();
  expect(await fs.readFile(store.file, "utf8")).toBe(before);
});

test("a state file of version 1 (before backoff was kept) is migrated forward, never reset", async () => {
  const store = createStateStore(dir);
  const { backoff: _, ...v1 } = { ...full, version: 1 };
  await fs.writeFile(store.file, JSON.stringify(v1));
  const loaded = await store.load();
  expect(loaded).toEqual({ ...full, backoff: {} });
  await store.save(loaded);
  expect(JSON.parse(await fs.readFile(store.file, "utf8"))).toMatchObject({ version: 2, launches: full.launches, drains: full.drains });
});
