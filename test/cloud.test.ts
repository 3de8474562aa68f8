/**
 * The fake cloud itself (test/helpers/cloud.ts and cloud-node.mjs), run the way the master will
 * run it: `/bin/sh -c` with COUNT or INSTANCE_ID in the environment. Its nodes are real agents
 * that register through the proxy's real sshd; HAProxy serves them.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { createCloud, isProcessOf, type Cloud } from "./helpers/cloud.js";
import { getThrough, startProxy, type Proxy } from "./helpers/cluster.js";
import { runCli, runProcess, Scope, sleep, waitFor } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** Run a cloud command as the master does: `/bin/sh -c COMMAND` with values only in the environment. */
function sh(command: string, env: Record<string, string> = {}) {
  return runProcess("/bin/sh", ["-c", command], { env, timeoutMs: 20_000 });
}

/** The live nodes in `status`, by name. */
async function liveNodes(proxy: Proxy) {
  return new Map((await proxy.status()).nodes.filter((n) => n.state === "live").map((n) => [n.name, n]));
}

/** Wait until every named node reports a CPU sample that satisfies `ok`. */
function waitForCpu(proxy: Proxy, names: string[], what: string, ok: (cpu: number) => boolean) {
  return waitFor(
    `${names.join(" and ")} to report CPU ${what}`,
    async () => {
      const live = await liveNodes(proxy);
      return names.every((n) => {
        const cpu = live.get(n)?.cpu_now;
        return typeof cpu === "number" && ok(cpu);
      });
    },
    12_000,
    250,
  );
}

/** A stand-in master: writes its pid to `pidFile`, runs the command with /bin/sh -c, says how it exited, lingers 1 s. */
const FAKE_MASTER = `
const { spawn } = require("node:child_process");
require("node:fs").writeFileSync(process.argv[2], process.pid + "\\n");
const c = spawn("/bin/sh", ["-c", process.argv[1]], { stdio: ["ignore", "inherit", "inherit"] });
c.on("exit", (code) => { process.stdout.write("command exited " + code + "\\n"); setTimeout(() => {}, 1000); });
`;

function runUnderFakeMaster(cloud: Cloud, command: string, env: Record<string, string> = {}) {
  return runProcess(process.execPath, ["-e", FAKE_MASTER, command, path.join(cloud.dir, "master.pid")], { env, timeoutMs: 20_000 });
}

test("a launch of COUNT=2 starts two real nodes that register and serve, burn moves their CPU, and terminate stops one by instance id", async () => {
  const proxy = await startProxy(scope);
  const cloud = await createCloud(scope, proxy);

  // The commands survive `autoscaler init --set` into an ini byte for byte; run the one read back.
  const instDir = await scope.tempDir("autoscaler-cloud-ini-");
  const init = await runCli(["init", "--config", path.join(instDir, "autoscaler.ini"), ...cloud.settings.flatMap((s) => ["--set", s])]);
  expect(init.code, init.stderr).toBe(0);
  const iniLines = (await fs.readFile(path.join(instDir, "autoscaler.ini"), "utf8")).split("\n");
  expect(iniLines).toContain(`scale_up_command = ${cloud.scaleUpCommand}`);
  expect(iniLines).toContain(`scale_down_command = ${cloud.scaleDownCommand}`);

  const launch = await sh(cloud.scaleUpCommand, { COUNT: "2" });
  expect(launch.code, launch.stderr).toBe(0);
  const instances = (JSON.parse(launch.stdout) as { Instances: { InstanceId: string; PrivateIpAddress: string }[] }).Instances;
  expect(instances.map((i) => i.PrivateIpAddress)).toEqual(["127.0.0.11", "127.0.0.12"]);
  for (const i of instances) expect(i.InstanceId).toMatch(/^i-[0-9a-f]{16}$/);
  const [run] = await cloud.launches();
  expect(run).toMatchObject({ count: 2, fail: false, startNodes: true });
  expect(run!.nodes.map((n) => [n.name, n.address, n.instanceId])).toEqual([
    ["cloud-1", "127.0.0.11", instances[0]!.InstanceId],
    ["cloud-2", "127.0.0.12", instances[1]!.InstanceId],
  ]);
  expect(await cloud.nodeNames()).toEqual(["cloud-1", "cloud-2"]);

  await waitFor(
    "cloud-1 and cloud-2 live with samples",
    async () => {
      const live = await liveNodes(proxy);
      return ["cloud-1", "cloud-2"].every((n) => live.get(n)?.cpu_now !== null && live.get(n)?.address === `127.0.0.${10 + Number(n.slice(6))}`);
    },
    15_000,
    200,
  );
  const seen = new Set<string>();
  await waitFor(
    "HAProxy to serve both cloud nodes",
    async () => {
      const body = await getThrough(proxy.inst.frontendPort);
      if (body) seen.add(body);
      return seen.has("cloud-1") && seen.has("cloud-2");
    },
    5_000,
    10,
  );

  // CPU is a percent of all cores of this machine: one busy thread on two cores is about 50
  // (less when other tests share the cores; idle is about 1). Only the named node burns.
  await cloud.burn(true, "cloud-1", 1);
  await waitForCpu(proxy, ["cloud-1"], "above 20", (cpu) => cpu > 20);
  await waitForCpu(proxy, ["cloud-2"], "below 10", (cpu) => cpu < 10);
  await cloud.burn(false);
  await waitForCpu(proxy, ["cloud-1", "cloud-2"], "below 10", (cpu) => cpu < 10);

  const [one] = await cloud.nodes();
  expect(await cloud.isRunning("cloud-1")).toBe(true);
  const down = await sh(cloud.scaleDownCommand, { INSTANCE_ID: one!.instanceId, NODE_NAME: "cloud-1", NODE_ADDRESS: "127.0.0.11" });
  expect(down.code, down.stderr).toBe(0);
  expect(down.stdout).toContain(one!.instanceId);
  expect(await cloud.isRunning("cloud-1")).toBe(false);
  for (const pid of [one!.webPid!, one!.agentPid!]) expect(await isProcessOf(pid, cloud.dir)).toBe(false);
  expect(await cloud.isRunning("cloud-2")).toBe(true);

  const unknown = await sh(cloud.scaleDownCommand, { INSTANCE_ID: "i-0000000000000000", NODE_NAME: "", NODE_ADDRESS: "" });
  expect(unknown.code).toBe(4);
  expect(unknown.stderr).toMatch(/no instance i-0000000000000000/);
  expect((await cloud.terminations()).map((t) => [t.instanceId, t.found])).toEqual([
    [one!.instanceId, true],
    ["i-0000000000000000", false],
  ]);

  // After the scope's cleanup no process the cloud started is left.
  const pids = await cloud.pids();
  expect(pids.length).toBeGreaterThanOrEqual(6); // two launch/terminate scripts + web app and agent per node
  await scope.cleanup();
  for (const pid of pids) expect(await isProcessOf(pid, cloud.dir)).toBe(false);
});

test("the cloud's knobs: fail exits 3 starting nothing, startNodes=false prints JSON but nothing registers, printJson=false prints no JSON", async () => {
  const proxy = await startProxy(scope);
  const cloud = await createCloud(scope, proxy, { fail: true });

  const failed = await sh(cloud.scaleUpCommand, { COUNT: "2" });
  expect(failed.code).toBe(3);
  expect(failed.stderr).toMatch(/set to fail/);
  expect(failed.stdout).toBe("");
  expect(await cloud.launches()).toMatchObject([{ count: 2, fail: true, nodes: [] }]);

  await cloud.setOptions({ fail: undefined, startNodes: false });
  const empty = await sh(cloud.scaleUpCommand);
  expect(empty.code, empty.stderr).toBe(0);
  expect(JSON.parse(empty.stdout)).toEqual({ Instances: [{ InstanceId: expect.stringMatching(/^i-[0-9a-f]{16}$/), PrivateIpAddress: "127.0.0.11" }] });

  await cloud.setOptions({ printJson: false });
  const plain = await sh(cloud.scaleUpCommand);
  expect(plain.code, plain.stderr).toBe(0);
  expect(plain.stdout).toMatch(/^launched cloud-2 \(i-[0-9a-f]{16}\) at 127\.0\.0\.12:\d+\n$/);

  // Two launches at once get distinct node numbers (the counter is taken under the lock).
  await cloud.setOptions({ printJson: undefined });
  const both = await Promise.all([sh(cloud.scaleUpCommand, { COUNT: "2" }), sh(cloud.scaleUpCommand, { COUNT: "2" })]);
  const addresses = both.flatMap((r) => (JSON.parse(r.stdout) as { Instances: { PrivateIpAddress: string }[] }).Instances.map((i) => i.PrivateIpAddress));
  expect(addresses.sort()).toEqual(["127.0.0.13", "127.0.0.14", "127.0.0.15", "127.0.0.16"]);

  expect(await cloud.nodeNames()).toEqual([]);
  expect((await cloud.nodes()).map((n) => [n.name, n.started])).toEqual([1, 2, 3, 4, 5, 6].map((n) => [`cloud-${n}`, false]));
  expect(await cloud.livePids()).toEqual([]);
  // Nothing registers: watch the master for 3 s.
  const until = Date.now() + 3_000;
  while (Date.now() < until) {
    expect((await proxy.status()).nodes).toEqual([]);
    await sleep(250);
  }

  await cloud.setOptions({ terminateFail: true });
  const refused = await sh(cloud.scaleDownCommand, { NODE_NAME: "cloud-1" });
  expect(refused.code).toBe(3);
  await cloud.setOptions({ terminateFail: false });
  // A launched instance that never came up can still be terminated: found, nothing to stop.
  const gone = await sh(cloud.scaleDownCommand, { NODE_NAME: "cloud-1" });
  expect(gone.code, gone.stderr).toBe(0);
  expect(await cloud.terminations()).toMatchObject([
    { name: "cloud-1", found: false, fail: true },
    { name: "cloud-1", found: true, fail: false, stopped: 0 },
  ]);
});

test("an armed master kill strikes its ancestor master once, at start or after exit, and is refused for a process that is not its master", async () => {
  const cloud = await createCloud(scope, undefined, { fail: true });

  await cloud.armKill("start");
  const atStart = await runUnderFakeMaster(cloud, cloud.scaleUpCommand);
  expect(atStart.code).toBeNull(); // SIGKILLed
  expect(atStart.stdout).not.toContain("command exited");
  const masterPid = Number(await fs.readFile(path.join(cloud.dir, "master.pid"), "utf8"));
  expect(await cloud.kills()).toMatchObject([{ point: "start", command: "launch", masterPid }]);
  // Like a real cloud CLI, the launch went on without its caller.
  expect(await cloud.launches()).toHaveLength(1);

  // The knob was consumed: the next master is not killed.
  const again = await runUnderFakeMaster(cloud, cloud.scaleUpCommand);
  expect(again.code).toBe(0);
  expect(again.stdout).toContain("command exited 3");
  expect(await cloud.kills()).toHaveLength(1);

  await cloud.armKill("after-exit", 100);
  const afterExit = await runUnderFakeMaster(cloud, cloud.scaleUpCommand);
  expect(afterExit.stdout).toContain("command exited 3");
  expect(afterExit.code).toBeNull();

  await cloud.armTerminateKill("end");
  const terminate = await runUnderFakeMaster(cloud, cloud.scaleDownCommand, { INSTANCE_ID: "i-0123456789abcdef" });
  expect(terminate.code).toBeNull();
  expect((await cloud.kills()).map((k) => [k.point, k.command])).toEqual([
    ["start", "launch"],
    ["after-exit", "launch"],
    ["end", "terminate"],
  ]);
  expect(await cloud.terminations()).toMatchObject([{ instanceId: "i-0123456789abcdef", found: false }]);

  // A master.pid that is not an ancestor of the command is never killed; the knob stays armed.
  const bystander = scope.track(spawn("sleep", ["infinity"], { stdio: "ignore" }));
  await cloud.setMasterPid(bystander.pid!);
  await cloud.armKill("start");
  const refused = await sh(cloud.scaleUpCommand);
  expect(refused.code).toBe(5);
  expect(refused.stderr).toMatch(/not an ancestor/);
  expect(bystander.exitCode).toBeNull();
  expect(await isProcessOf(bystander.pid!, "infinity")).toBe(true); // still running: its argv holds "infinity"
  expect(JSON.parse(await fs.readFile(path.join(cloud.dir, "cloud.json"), "utf8"))).toMatchObject({ killMasterAt: "start" });
  expect(await cloud.kills()).toHaveLength(3);
});
