/**
 * `autoscaler teardown` with a real proxy (sshd, HAProxy, master) and the fake cloud, whose nodes
 * are real web apps and agents: the master is SIGKILLed in the middle of a terminate, started
 * again, and the teardown resumes; no terminate runs twice, none is forgotten, and the
 * hand-added host stays.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test, vi } from "vitest";
import { createCloud } from "./helpers/cloud.js";
import { startProxy } from "./helpers/cluster.js";
import { Scope, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());
vi.setConfig({ testTimeout: 90_000 });

test("teardown: without --yes only the plan (exit 1); with --yes a SIGKILL mid-terminate, a restart, and the teardown resumes: each launched node terminated once, the hand-added host kept, exit 0", async () => {
  const cloud = await createCloud(scope);
  const proxy = await startProxy(scope, {
    settings: [...cloud.settings, "master.interval=0.2", "scaling.min_nodes=2", "scaling.drain_seconds=1", "machine.launch_timeout=60"],
  });
  await cloud.attach(proxy);
  const cli = proxy.inst.cli;
  await waitFor("two live nodes", async () => (await status(proxy)).nodes.filter((n) => n.state === "live").length === 2, 30_000);
  const add = await cli("add-host", "127.0.0.5", "8080", "--name", "static-1");
  expect(add.code, add.stderr).toBe(0);
  const nodes = (await cloud.nodes()).filter((n) => n.started);
  expect(nodes).toHaveLength(2);

  const plan = await cli("teardown");
  expect(plan.code).toBe(1);
  for (const n of nodes) expect(plan.stdout).toContain(`${n.name}  ${n.address}  ${n.instanceId}`);
  expect(plan.stdout).toMatch(/it leaves alone: static-1 \(manual\)/);
  expect(plan.stdout).toMatch(/run it with --yes/);
  expect((await status(proxy)).paused).toBe(false);
  expect((await status(proxy)).drains).toEqual([]);

  // The master dies once the first terminate has done its work, before it could record the outcome.
  await cloud.armTerminateKill("end");
  const first = proxy.master;
  const interrupted = await cli("teardown", "--yes", "--timeout", "30");
  expect(interrupted.code).toBe(1);
  expect(interrupted.stderr).toMatch(/closed .* without answering|no master is running/);
  await waitFor("the master to be killed", () => first.child.signalCode !== null, 15_000);
  expect(first.child.signalCode).toBe("SIGKILL");
  expect(await cloud.kills()).toMatchObject([{ point: "end", command: "terminate" }]);
  const state = JSON.parse(await fs.readFile(path.join(proxy.inst.stateDir, "state.json"), "utf8")) as {
    paused: boolean;
    teardown?: { at: number };
    drains: { node: string; status: string }[];
  };
  expect(state.paused).toBe(true);
  expect(state.teardown).toBeDefined();
  expect(state.drains.map((d) => d.node).sort()).toEqual(nodes.map((n) => n.name).sort());
  expect(state.drains.some((d) => d.status === "terminating")).toBe(true);

  proxy.master = await proxy.startMaster();
  await cloud.setMasterPid(proxy.master.child.pid!);
  const resumed = await cli("teardown", "--yes", "--timeout", "30");
  expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
  expect(resumed.stdout).toMatch(/nothing the autoscaler launched is left; automatic scaling stays paused/);

  await waitFor("every node's processes to be gone", async () => !(await cloud.isRunning(nodes[0]!.name)) && !(await cloud.isRunning(nodes[1]!.name)), 15_000);
  const terminations = (await cloud.terminations()).filter((t) => t.found);
  expect(terminations.map((t) => t.instanceId).sort(), "each launched node terminated exactly once").toEqual(nodes.map((n) => n.instanceId).sort());
  const s = await status(proxy);
  expect(s.nodes.map((n) => n.name)).toEqual(["static-1"]);
  expect(s.paused).toBe(true);
  expect(s.teardown).not.toBeNull();
  expect(s.drains.map((d) => d.status)).toEqual(["done", "done"]);
  expect(s.launches.filter((l) => l.decided_at > new Date(state.teardown!.at).toISOString())).toEqual([]);
  expect(await fs.readdir(path.join(proxy.inst.dir, "hosts.d"))).toEqual(["static-1.json"]);
  const text = await cli("status");
  expect(text.stdout).toMatch(/^teardown since .*autoscaler resume ends it\)$/m);

  // resume ends the teardown: min_nodes launches again.
  expect((await cli("resume")).code).toBe(0);
  expect((await status(proxy)).teardown).toBeNull();
  await waitFor("a launch after resume", async () => (await cloud.launches()).length === 2, 10_000);
});
