/**
 * The scaler's commands and durable state with a real master, real HAProxy and real shell
 * scripts as the cloud commands (scripts that start no node: what a launch does to the
 * cluster is tested in scaling.test.ts). Each script appends one line per run, so runs are counted.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { startNode, startProxy, type Daemon, type Proxy } from "./helpers/cluster.js";
import { serverLines } from "./helpers/haproxy.js";
import { Scope, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** A proxy (with its master) whose launch command is a script that logs each run with its COUNT, then does `body`. */
async function proxyWithLaunch(settings: string[], body = ""): Promise<Proxy & { runs: () => Promise<string[]> }> {
  const cloud = await scope.tempDir("autoscaler-launch-");
  await fs.writeFile(path.join(cloud, "launch.sh"), `#!/bin/sh\necho "COUNT=$COUNT" >> "${cloud}/runs.log"\n${body}\n`);
  const proxy = await startProxy(scope, { settings: [`machine.scale_up_command=sh '${cloud}/launch.sh'`, "master.interval=0.2", ...settings] });
  return Object.assign(proxy, { runs: async () => (await fs.readFile(path.join(cloud, "runs.log"), "utf8").catch(() => "")).split("\n").filter(Boolean) });
}

test("below min_nodes the master launches once; a launch that never brings a node fails after launch_timeout, stops counting, and the next waits for a backoff", async () => {
  const proxy = await proxyWithLaunch(["scaling.min_nodes=1", "machine.launch_timeout=3"]);
  // The first tick may come before the script was written (it then fails); restart so the count starts clean.

  const pending = await waitFor("a pending launch", async () => {
    const s = await status(proxy);
    return s.launches.find((l) => l.status === "pending") ? s : undefined;
  });
  expect(pending.capacity).toMatchObject({ active: 0, pending: 1, desired: 1, min: 1 });
  expect(pending.launches[0]!.reason).toMatch(/below min_nodes: 0 backends or pending < 1/);
  expect(await proxy.runs()).toEqual(["COUNT=1"]);

  const failed = await waitFor(
    "the launch to time out",
    async () => {
      const s = await status(proxy);
      return s.launches.find((l) => l.status === "failed") ? s : undefined;
    },
    8_000,
  );
  expect(failed.launches[0]!.error).toMatch(/launch_timeout: 0 of 1 node\(s\) registered within 3 s/);
  expect(failed.capacity.pending).toBe(0);
  expect(failed.events.map((e) => e.kind)).toContain("launch_timeout");
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^autoscaler_launches_total 1$/m);
  expect(metrics).toMatch(/^autoscaler_launch_timeouts_total 1$/m);
  expect(metrics).toMatch(/^autoscaler_capacity\{kind="pending"\} 0$/m);
  expect(metrics).toMatch(/^autoscaler_capacity\{kind="min"\} 1$/m);
  // Below min_nodes again, but a launch that brought nothing is followed by a 30 s backoff: the
  // decision says so (that it holds for the whole backoff is machine.test.ts's fake-clock table).
  await waitFor("the decision to name the backoff", async () => /below min_nodes.*backoff/.test((await status(proxy)).last_decision?.reason ?? ""));
  expect(await proxy.runs()).toEqual(["COUNT=1"]);
});

test("a failing launch command is an event with its exit code and stderr (secrets redacted), and is not retried before the backoff", async () => {
  const secret = "AKIAEXAMPLESECRET0123456789";
  const proxy = await proxyWithLaunch(
    ["scaling.min_nodes=1", `aws.aws_secret_key=${secret}`],
    'echo "quota exceeded for key $AWS_SECRET_ACCESS_KEY" >&2; exit 3',
  );

  const s = await waitFor("a failed launch", async () => {
    const st = await status(proxy);
    return st.launches.find((l) => l.status === "failed") ? st : undefined;
  });
  const failure = s.events.find((e) => e.kind === "launch_failed")!;
  expect(failure.message).toMatch(/exit code 3/);
  expect(failure.message).toMatch(/quota exceeded for key \[redacted\]/);
  expect(failure.message).not.toContain(secret);
  expect(await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text()).toMatch(/^autoscaler_launch_failures_total 1$/m);
  // A launch that failed starts no cooldown (300 s here): only the failure backoff holds the next.
  expect(s.cooldown.scale_up_seconds).toBe(0);
  expect(proxy.master.log()).not.toContain(secret);
  expect(await fs.readFile(path.join(proxy.inst.dir, "state", "state.json"), "utf8")).not.toContain(secret);
  await waitFor("the decision to name the backoff", async () => /backoff/.test((await status(proxy)).last_decision?.reason ?? ""));
  expect(await proxy.runs()).toEqual(["COUNT=1"]);
});

test("manual scale-up runs the command with COUNT, caps at max_nodes and says why, and refuses when there is no room", async () => {
  const proxy = await proxyWithLaunch(["scaling.max_nodes=2", "machine.launch_timeout=60"]);
  const up = await proxy.inst.cli("scale-up", "5");
  expect(up.code, up.stderr).toBe(0);
  expect(up.stdout).toMatch(/launching 2 node\(s\): manual scale-up of 5 \(capped 5 → 2 by max_nodes \(0 of 2 backends or pending\)\)/);
  await waitFor("the launch script to run", async () => (await proxy.runs()).length === 1);
  expect(await proxy.runs()).toEqual(["COUNT=2"]);
  const s = await status(proxy);
  expect(s.capacity).toMatchObject({ pending: 2, desired: 2, max: 2 });
  expect(s.launches.at(-1)).toMatchObject({ manual: true, count: 2 });

  const again = await proxy.inst.cli("scale-up");
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(/cannot scale up: capped 1 → 0 by max_nodes \(2 of 2 backends or pending\)/);
  expect(await proxy.runs()).toEqual(["COUNT=2"]);

  for (const bad of ["0", "-1", "two", "1001"]) {
    const r = await proxy.inst.cli("scale-up", bad);
    expect(r.code, `scale-up ${bad}`).toBe(2);
    expect(r.stderr).toMatch(/count .* is not valid; expected a whole number from 1 to 1000/);
  }
  const down = await proxy.inst.cli("scale-down");
  expect(down.code).toBe(1);
  expect(down.stderr).toMatch(/no \[machine\] scale_down_command is set/);
});

test("pause survives a restart and stops automatic launches; manual scale-up still works while paused; resume brings decisions back", async () => {
  const proxy = await proxyWithLaunch(["scaling.min_nodes=0"]);
  const pause = await proxy.inst.cli("pause");
  expect(pause.code, pause.stderr).toBe(0);
  expect(pause.stdout).toMatch(/paused \(persisted across restarts\)/);
  expect(JSON.parse(await fs.readFile(path.join(proxy.inst.dir, "state", "state.json"), "utf8")).paused).toBe(true);

  // Restart with min_nodes = 1: below min, but paused, so nothing runs.
  proxy.master.child.kill("SIGKILL");
  await new Promise((r) => proxy.master.child.once("exit", r));
  const ini = await fs.readFile(proxy.inst.ini, "utf8");
  await fs.writeFile(proxy.inst.ini, ini.replace(/^min_nodes = .*$/m, "min_nodes = 1"));
  proxy.master = await proxy.startMaster();
  const paused = await waitFor("a decision after the restart", async () => {
    const s = await status(proxy);
    return s.last_decision ? s : undefined;
  });
  expect(paused.paused).toBe(true);
  expect(paused.last_decision?.reason).toBe("paused");
  expect(await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text()).toMatch(/^autoscaler_paused 1$/m);
  expect(await proxy.runs()).toEqual([]);

  const manual = await proxy.inst.cli("scale-up", "1");
  expect(manual.code, manual.stderr).toBe(0);
  await waitFor("the manual launch to run", async () => (await proxy.runs()).length === 1);

  const resume = await proxy.inst.cli("resume");
  expect(resume.code, resume.stderr).toBe(0);
  expect((await status(proxy)).paused).toBe(false);
  // The manual launch is pending, so min_nodes is met: the first decision after resuming launches nothing more.
  const resumedAt = Date.now();
  await waitFor("a decision after resume", async () => Date.parse((await status(proxy)).last_decision?.at ?? "0") > resumedAt + 300);
  expect(await proxy.runs()).toEqual(["COUNT=1"]);
  expect((await status(proxy)).events.map((e) => e.kind)).toEqual(expect.arrayContaining(["scale_up", "resumed"]));
});

test("a follower refuses scale commands and names the decider's rule; a corrupt state.json stops the master with a message and is left as it was", async () => {
  const proxy = await proxyWithLaunch(["master.role=follower"]);
  const up = await proxy.inst.cli("scale-up");
  expect(up.code).toBe(1);
  expect(up.stderr).toMatch(/this master is a follower/);
  expect(await proxy.runs()).toEqual([]);

  proxy.master.child.kill("SIGTERM");
  await new Promise((r) => proxy.master.child.once("exit", r));
  const stateFile = path.join(proxy.inst.dir, "state", "state.json");
  await fs.writeFile(stateFile, "{ half a file");
  const run = await proxy.inst.cli("master");
  expect(run.code).not.toBe(0);
  expect(run.stderr + run.stdout).toMatch(/not valid JSON; refusing to start rather than forget launches/);
  expect(await fs.readFile(stateFile, "utf8")).toBe("{ half a file");
});

/** Stop a daemon with SIGTERM (by pid) and wait for it to exit. */
async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  const exited = new Promise((r) => d.child.once("exit", r));
  d.child.kill("SIGTERM");
  await exited;
}

test("a node this master terminated cannot register again while it shuts down, even after a master restart; a new instance with the same name and address can", async () => {
  // A terminate that returns at once, as `aws ec2 terminate-instances` does: the node's agent
  // keeps running for a while, as a real instance does while it shuts down.
  const cloud = await scope.tempDir("autoscaler-terminate-");
  await fs.writeFile(path.join(cloud, "terminate.sh"), `#!/bin/sh\necho "$INSTANCE_ID" >> "${cloud}/terminations.log"\n`);
  const proxy = await startProxy(scope, {
    settings: [`machine.scale_down_command=sh '${cloud}/terminate.sh'`, "master.interval=0.2", "scaling.min_nodes=0", "scaling.drain_seconds=0"],
  });
  expect((await proxy.inst.cli("pause")).code).toBe(0);
  const a = await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.21" });
  await a.agent.waitForLog(/connected to the master/, 20_000);
  const b = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.22" });
  await b.agent.waitForLog(/connected to the master/, 20_000);
  const hostsFiles = async () => (await fs.readdir(path.join(proxy.inst.dir, "hosts.d"))).sort();
  const configNames = async () => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).map((l) => l.split(" ")[1]);
  await waitFor("both nodes in hosts.d", async () => (await hostsFiles()).join() === "web-a.json,web-b.json", 10_000, 100);
  // Hand-started nodes: their instance ids are only their own word until the operator vouches for them.
  for (const name of ["web-a", "web-b"]) {
    const trust = await proxy.inst.cli("trust", name);
    expect(trust.code, trust.stderr).toBe(0);
    expect(trust.stdout).toBe(`${name}: instance id i-${name} is trusted; a scale-down of ${name} runs scale_down_command with INSTANCE_ID=i-${name}\n`);
  }
  expect(JSON.parse(await fs.readFile(path.join(proxy.inst.dir, "hosts.d", "web-a.json"), "utf8"))).toMatchObject({
    instance_id: "i-web-a",
    instance_id_from: "operator",
  });

  // Scale down by one: the oldest, web-a, is terminated; its agent carries on.
  const down = await proxy.inst.cli("scale-down", "1");
  expect(down.code, down.stderr).toBe(0);
  await waitFor("web-a terminated and out of hosts.d", async () => (await hostsFiles()).join() === "web-b.json", 10_000, 100);
  expect((await fs.readFile(path.join(cloud, "terminations.log"), "utf8")).split("\n").filter(Boolean)).toEqual(["i-web-a"]);
  expect(a.agent.child.exitCode).toBeNull();

  // The master restarts: both agents reconnect. web-b is back; web-a is refused with the reason.
  await stopDaemon(proxy.master);
  proxy.master = await proxy.startMaster();
  await waitFor(
    "web-a's reconnect refused",
    () => /the master refused this node: instance i-web-a was terminated \d+ s ago by this master/.test(a.agent.log()),
    40_000,
    200,
  );
  await waitFor("web-b live again", async () => (await proxy.status()).nodes.some((n) => n.name === "web-b" && n.state === "live"), 40_000, 200);
  expect(proxy.master.log()).toMatch(/agent connection closed: instance i-web-a was terminated/);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^autoscaler_connections_refused_total\{reason="terminated"\} [1-9]\d*$/m);
  expect(await hostsFiles()).toEqual(["web-b.json"]);
  expect(await configNames()).toEqual(["web-b"]);
  expect((await proxy.status()).nodes.map((n) => n.name)).toEqual(["web-b"]);

  // A new instance that got the same address and name (as AWS hostnames follow the address) registers.
  await stopDaemon(a.agent);
  await fs.writeFile(a.ini, (await fs.readFile(a.ini, "utf8")).replace(/^instance_id = i-web-a$/m, "instance_id = i-web-a2"));
  a.agent = a.startAgent();
  await waitFor("the new web-a in hosts.d", async () => (await hostsFiles()).join() === "web-a.json,web-b.json", 40_000, 200);
  expect(JSON.parse(await fs.readFile(path.join(proxy.inst.dir, "hosts.d", "web-a.json"), "utf8"))).toMatchObject({
    address: "127.0.0.21",
    instance_id: "i-web-a2",
  });
  await waitFor("HAProxy's config to hold both", async () => (await configNames()).join() === "web-a,web-b", 10_000, 100);
});
