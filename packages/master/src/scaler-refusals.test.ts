/**
 * A state_dir that cannot be written refuses every decision (nothing runs without a record);
 * the refusals are logged once, then once a minute with a count, and the first save that works
 * again says so. A real scaler with a fake clock, a store whose save fails on demand and a
 * runner that only records the commands it is asked to run.
 */
import { afterEach, expect, test } from "vitest";
import { parseConfig, type CommandRunner, type Logger } from "@autoscaler/shared";
import { createEventLog } from "./events.js";
import { createRegistry } from "./registry.js";
import { startScaler, type Scaler } from "./scaler.js";
import { emptyState, type DurableState, type StateStore } from "./state-store.js";

let scaler: Scaler | undefined;
afterEach(() => scaler?.stop());

test("a save that keeps failing refuses every tick, logs it once a minute with a count, and the first save that works says how many were refused", async () => {
  let t = Date.parse("2026-11-24T00:00:00Z");
  const now = () => t;
  // An interval of an hour: only the test's own tick() calls decide.
  const ini = `[master]\ntoken = ${"t".repeat(32)}\ninterval = 1h\n[haproxy]\nservers = 127.0.0.1:22\n[machine]\nscale_up_command = launch\n[scaling]\nmin_nodes = 1\n`;
  const { config, errors } = parseConfig(ini, "/x/autoscaler.ini", { home: "/root" });
  expect(errors).toEqual([]);

  let full = true;
  const saved: DurableState[] = [];
  const store: StateStore = {
    file: "/x/state/state.json",
    load: async () => emptyState(),
    save: async (state) => {
      if (full) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      saved.push(structuredClone(state));
    },
  };
  const logged: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => void logged.push({ level, msg, fields });
  const logger: Logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  const commands: string[] = [];
  const runner: CommandRunner = {
    run: async (command) => {
      commands.push(command);
      return { code: 0, signal: null, stdout: "", stderr: "", timedOut: false, durationMs: 1 };
    },
  };
  const events = createEventLog(now, 500);
  scaler = await startScaler({
    config: config!,
    role: "decider",
    store,
    registry: createRegistry({ nodeTimeoutMs: 30_000, forgetAfterMs: 600_000, keepMs: 120_000, isManual: () => false }),
    events,
    logger,
    runner,
    now,
    hosts: () => [],
    applyNow: async () => undefined,
    removeHost: async () => undefined,
  });
  const refusals = () => events.latest().filter((e) => e.kind === "not_recorded");

  // Below min_nodes with a full disk: a refusal every tick, one second apart, for 90 s.
  for (let i = 0; i < 90; i++) {
    await scaler.tick();
    t += 1000;
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
  full = false;
  await scaler.tick();
  await scaler.idle();
  expect(events.latest().filter((e) => e.kind === "recorded").map((e) => e.message)).toEqual([
    "decisions are recorded in /x/state/state.json again (90 refused while it could not be written)",
  ]);
  expect(commands).toEqual(["launch"]);
  expect(saved.at(-1)!.launches).toHaveLength(1);
  expect(scaler.status().actions.not_recorded).toBe(90);
});
