/**
 * The scaler with a fake clock, a store in memory (whose save fails on demand) and a runner that
 * only records the commands it is asked to run: what needs many ticks or exact times.
 * - A state_dir that cannot be written refuses every decision (nothing runs without a record);
 *   the refusals are logged once, then once a minute with a count, and the first save that
 *   works again says so.
 * - A hello from a node this master terminated is refused for forget_after (admit).
 */
import { afterEach, expect, test } from "vitest";
import { parseConfig, type CommandRunner, type HostEntry, type Logger } from "@autoscaler/shared";
import type { HelloMessage } from "@autoscaler/shared/protocol";
import { createEventLog, type EventLog } from "./events.js";
import { createRegistry } from "./registry.js";
import type { Role } from "./role.js";
import { startScaler, type Scaler } from "./scaler.js";
import { emptyState, type DrainRecord, type DurableState, type LaunchRecord, type StateStore } from "./state-store.js";

const T0 = Date.parse("2026-11-24T00:00:00Z");

interface Harness {
  scaler: Scaler;
  clock: { t: number };
  disk: { full: boolean; saved: DurableState[] };
  events: EventLog;
  logged: { level: string; msg: string; fields: Record<string, unknown> }[];
  commands: string[];
}

const running: Scaler[] = [];
afterEach(() => {
  for (const s of running.splice(0)) s.stop();
});

/** A scaler on an ini with these [scaling] lines, starting from `initial` state. The interval is an hour: only the test's tick() calls decide. */
async function harness(scaling: string, initial: DurableState = emptyState(), role: Role = "decider", hosts: HostEntry[] = []): Promise<Harness> {
  const clock = { t: T0 };
  const now = () => clock.t;
  const ini = `[master]\ntoken = ${"t".repeat(32)}\ninterval = 1h\n[haproxy]\nservers = 127.0.0.1:22\n[machine]\nscale_up_command = launch\nscale_down_command = terminate\n[scaling]\n${scaling}\n`;
  const { config, errors } = parseConfig(ini, "/x/autoscaler.ini", { home: "/root" });
  expect(errors).toEqual([]);
  const disk = { full: false, saved: [] as DurableState[] };
  const store: StateStore = {
    file: "/x/state/state.json",
    load: async () => structuredClone(initial),
    save: async (state) => {
      if (disk.full) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      disk.saved.push(structuredClone(state));
    },
  };
  const logged: Harness["logged"] = [];
  const log =
    (level: string) =>
    (msg: string, fields: Record<string, unknown> = {}) =>
      void logged.push({ level, msg, fields });
  const logger: Logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  const commands: string[] = [];
  const runner: CommandRunner = {
    run: async (command) => {
      commands.push(command);
      return { code: 0, signal: null, stdout: "", stderr: "", timedOut: false, durationMs: 1 };
    },
  };
  const events = createEventLog(now, 500);
  const scaler = await startScaler({
    config: config!,
    role,
    store,
    registry: createRegistry({ nodeTimeoutMs: 30_000, forgetAfterMs: 600_000, keepMs: 120_000, isManual: () => false }),
    events,
    logger,
    runner,
    now,
    hosts: () => hosts,
    applyNow: async () => undefined,
    removeHost: async () => undefined,
    vouch: async () => undefined,
  });
  running.push(scaler);
  return { scaler, clock, disk, events, logged, commands };
}

test("capacity's active counts what serves: a hand-added backend does, a launched node whose agent is not heard does not; both count toward desired", async () => {
  const at = new Date(T0).toISOString();
  const { scaler } = await harness("min_nodes = 0", emptyState(), "decider", [
    { name: "static-1", address: "10.0.0.5", port: 8080, source: "manual", addedAt: at },
    { name: "web-1", address: "10.0.1.5", port: 80, source: "launched", addedAt: at },
  ]);
  expect(scaler.status().capacity).toMatchObject({ active: 1, pending: 0, leaving: 0, desired: 2 });
});

test("a save that keeps failing refuses every tick, logs it once a minute with a count, and the first save that works says how many were refused", async () => {
  const { scaler, clock, disk, events, logged, commands } = await harness("min_nodes = 1");
  disk.full = true;
  const refusals = () => events.latest().filter((e) => e.kind === "not_recorded");

  // Below min_nodes with a full disk: a refusal every tick, one second apart, for 90 s.
  for (let i = 0; i < 90; i++) {
    await scaler.tick();
    clock.t += 1000;
  }
  expect(commands).toEqual([]);
  expect(scaler.status().actions.not_recorded, JSON.stringify([scaler.status().last_decision, logged.slice(0, 5)])).toBe(90);
  // Logged at the first refusal and again 60 s later, with the count so far; the rest at debug.
  expect(refusals().map((e) => e.message)).toEqual([
    "not launching 1 node(s): the decision could not be recorded in /x/state/state.json (ENOSPC: no space left on device, write); nothing runs without a record",
    "not launching 1 node(s): the decision could not be recorded in /x/state/state.json (ENOSPC: no space left on device, write); nothing runs without a record (61 decisions refused since 2026-11-24T00:00:00.000Z)",
  ]);
  expect(logged.filter((l) => l.level === "error").map((l) => l.fields.refused)).toEqual([1, 61]);
  expect(logged.filter((l) => l.level === "debug" && l.fields.event === "not_recorded")).toHaveLength(88);
  expect(scaler.status().capacity.pending).toBe(0);

  // Space returns: the next decision is recorded, says how many were refused, and its command runs once.
  disk.full = false;
  await scaler.tick();
  await scaler.idle();
  expect(
    events
      .latest()
      .filter((e) => e.kind === "recorded")
      .map((e) => e.message),
  ).toEqual(["decisions are recorded in /x/state/state.json again (90 refused while it could not be written)"]);
  expect(commands).toEqual(["launch"]);
  expect(disk.saved.at(-1)!.launches).toHaveLength(1);
  expect(scaler.status().actions.not_recorded).toBe(90);
});

/** A scale-down of web-a (instance i-a at 10.0.0.1) that finished 60 s before T0. */
const drain = (d: Partial<DrainRecord> = {}): DrainRecord => ({
  id: "drain-1",
  node: "web-a",
  instanceId: "i-a",
  address: "10.0.0.1",
  decidedAt: T0 - 120_000,
  drainUntil: T0 - 90_000,
  status: "done",
  reason: "scale-down: every node < 10 % for 60 s",
  manual: false,
  finishedAt: T0 - 60_000,
  ...d,
});
const launch = (l: Partial<LaunchRecord> = {}): LaunchRecord => ({
  id: "launch-1",
  decidedAt: T0 - 10_000,
  count: 1,
  reason: "scale-up",
  status: "pending",
  instances: [],
  nodes: [],
  manual: false,
  ...l,
});
const hello = (name: string, address: string, instanceId?: string) => ({ name, address, ...(instanceId ? { instance_id: instanceId } : {}) }) as HelloMessage;

test.each<[string, { drains?: DrainRecord[]; launches?: LaunchRecord[]; role?: Role }, HelloMessage, RegExp | undefined]>([
  [
    "the terminated instance, 60 s later",
    {},
    hello("web-a", "10.0.0.1", "i-a"),
    /^instance i-a was terminated 60 s ago by this master \(scale-down drain-1\); a node shutting down is not put back in service .*forget_after, 600 s\)$/,
  ],
  ["the terminated instance under another name and address", {}, hello("web-z", "10.0.0.9", "i-a"), /^instance i-a was terminated/],
  ["a new instance with the old one's name and address", {}, hello("web-a", "10.0.0.1", "i-b"), undefined],
  ["a hello without an instance id, with the old name and address", {}, hello("web-a", "10.0.0.1"), /^instance i-a was terminated/],
  [
    "a node without an instance id, terminated",
    { drains: [drain({ instanceId: "" })] },
    hello("web-a", "10.0.0.1", "i-b"),
    /^web-a at 10\.0\.0\.1 was terminated 60 s ago/,
  ],
  ["a node without an instance id at another address", { drains: [drain({ instanceId: "" })] }, hello("web-a", "10.0.0.2"), undefined],
  ["the terminated instance, after forget_after", { drains: [drain({ finishedAt: T0 - 601_000 })] }, hello("web-a", "10.0.0.1", "i-a"), undefined],
  [
    "a terminate interrupted by a restart (taken as done at start)",
    { drains: [drain({ status: "terminating", finishedAt: undefined })] },
    hello("web-a", "10.0.0.1", "i-a"),
    /^instance i-a was terminated 0 s ago/,
  ],
  ["a node whose terminate failed (back in service)", { drains: [drain({ status: "failed" })] }, hello("web-a", "10.0.0.1", "i-a"), undefined],
  ["a pending launch that waits for any new node (a warm pool's start-instances)", { launches: [launch()] }, hello("web-a", "10.0.0.1", "i-a"), undefined],
  [
    "a pending launch that waits for this instance",
    { launches: [launch({ instances: [{ instanceId: "i-a" }] })] },
    hello("web-a", "10.0.0.1", "i-a"),
    undefined,
  ],
  [
    "a pending launch that waits for other instances",
    { launches: [launch({ instances: [{ instanceId: "i-c" }] })] },
    hello("web-a", "10.0.0.1", "i-a"),
    /^instance i-a was terminated/,
  ],
  [
    "a pending launch decided before the terminate",
    { launches: [launch({ decidedAt: T0 - 200_000 })] },
    hello("web-a", "10.0.0.1", "i-a"),
    /^instance i-a was terminated/,
  ],
  ["a launch already done", { launches: [launch({ status: "done", nodes: ["web-c"] })] }, hello("web-a", "10.0.0.1", "i-a"), /^instance i-a was terminated/],
  ["a follower (it terminates nothing)", { role: "follower" }, hello("web-a", "10.0.0.1", "i-a"), undefined],
])("admit: %s", async (_what, given, h, refused) => {
  const initial: DurableState = { ...emptyState(), drains: given.drains ?? [drain()], launches: given.launches ?? [] };
  const { scaler } = await harness("forget_after = 600", initial, given.role ?? "decider");
  const answer = scaler.admit(h);
  if (refused) expect(answer).toMatch(refused);
  else expect(answer).toBeUndefined();
});
