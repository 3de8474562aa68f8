/**
 * One schedule on the real clock (every other schedule test drives the state machine's fake
 * clock: packages/master/src/policies.test.ts): `* * * * *` with `grace = 0` runs its policy at
 * the next whole minute, once, through a real master and the real CLI. Waits up to about a minute.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { startProxy } from "./helpers/cluster.js";
import { Scope, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

test("a * * * * * schedule runs its policy at the next whole minute, once, and `autoscaler schedules` lists its next run", async () => {
  const cloud = await scope.tempDir("autoscaler-schedule-cloud-");
  const log = path.join(cloud, "runs.log");
  await fs.writeFile(path.join(cloud, "launch.sh"), `#!/bin/sh\necho "start $COUNT $(date +%s)" >> "${log}"\n`);
  const proxy = await startProxy(scope, {
    settings: [
      `machine.scale_up_command=sh '${cloud}/launch.sh'`,
      "master.interval=0.2",
      "scaling.mode=instance",
      "scaling.window=600",
      "scaling.scale_up_cooldown=0",
      "policy:tick.change=+1",
      "schedule:every-minute.cron=* * * * *",
      "schedule:every-minute.policy=tick",
      // Not the minute before the master started: only a run time that comes while it runs.
      "schedule:every-minute.grace=0",
    ],
  });
  const listed = await proxy.inst.cli("schedules", "--json");
  expect(listed.code, listed.stderr).toBe(0);
  const next = Date.parse((JSON.parse(listed.stdout) as { schedules: { next_run_at: string }[] }).schedules[0]!.next_run_at);
  expect(next % 60_000).toBe(0);
  expect(next - Date.now()).toBeLessThanOrEqual(60_000);

  const s = await waitFor(
    "the scheduled run",
    async () => {
      const st = await status(proxy);
      const x = st.schedules.find((y) => y.name === "every-minute");
      return x?.last_outcome === "executed" && Date.parse(x.last_run_at!) >= next ? st : undefined;
    },
    75_000,
    200,
  );
  const schedule = s.schedules[0]!;
  expect(Date.parse(schedule.last_run_at!) - next).toBeLessThan(5_000);
  expect(schedule.last_result).toMatch(/^the run of .*: policy tick; \+1 from \d+ to \d+$/);
  expect(s.policies[0]).toMatchObject({ name: "tick", last_via: "schedule every-minute", last_outcome: "executed" });
  expect(s.events.map((e) => e.kind)).toEqual(expect.arrayContaining(["schedule_executed", "policy_executed"]));
  // A master that started within 5 s after a whole minute also ran that minute's run (on time):
  // so one or two runs, each exactly once, one launch each.
  const executed = schedule.runs.executed ?? 0;
  expect([1, 2]).toContain(executed);
  const lines = async () => (await fs.readFile(log, "utf8").catch(() => "")).trim().split("\n").filter(Boolean);
  await waitFor("the launch commands to run", async () => (await lines()).length === executed);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
  expect(metrics).toMatch(new RegExp(`^autoscaler_schedule_runs_total\\{schedule="every-minute",result="executed"\\} ${executed}$`, "m"));
  expect(await lines()).toHaveLength(executed);
}, 120_000); // up to a minute for the next whole minute, plus the proxy's start
