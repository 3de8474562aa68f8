/**
 * Crash safety (SPEC behaviour 4–6): the master SIGKILLed at several points of a scale-up and
 * of a scale-down, then started again. Everything is real: the fake cloud's launch starts real
 * nodes (web app + agent through the proxy's real sshd), its terminate stops them, HAProxy
 * serves them. Actions are manual (`scale-up 1`, `scale-down 1`), which take the same
 * record-then-run path as automatic decisions, so each trial knows which action it is killing.
 *
 * Kill points: the cloud program's armed kills ("start": the decision is recorded and the
 * command has just started; "end": the command did its work, the master never sees it return;
 * "after-exit": N ms after it returned, racing the master's save of the outcome), plus kills by
 * the test itself (right after the CLI answers, i.e. once the record is saved; while a node is
 * draining; while the launch command still runs after its node has registered).
 *
 * Across all trials: no launch or terminate runs twice, none is forgotten (each ends `done`),
 * no host is lost (every other node stays in hosts.d, haproxy.cfg, and is served).
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { createCloud, shellQuote, type Cloud, type KillPoint } from "./helpers/cloud.js";
import { getThrough, startProxy, type Daemon, type Proxy } from "./helpers/cluster.js";
import { Scope, waitFor } from "./helpers/process.js";
import type { MasterStatus } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/**
 * Manual actions only: min_nodes 0 launches nothing by itself, and a 600 s window keeps any
 * automatic decision from ever having a full window of data (the master restarts every few
 * seconds here anyway); the thresholds are far apart besides. The test checks that every
 * recorded action is manual.
 */
const SETTINGS = [
  "master.interval=0.2",
  "scaling.min_nodes=0",
  "scaling.mode=instance",
  "scaling.scale_up_threshold=95",
  "scaling.scale_down_threshold=1",
  "scaling.window=600",
  // Long enough that a test kill just after `scale-down` answers still lands in the drain.
  "scaling.drain_seconds=2",
  "scaling.node_timeout=3",
  "machine.launch_timeout=30",
];
/** Bound for a node to come up and register, or for a drain to finish, after a restart (agents reconnect with backoff). */
const SETTLE_MS = 25_000;

/** The parts of state.json these trials read. */
interface StateFile {
  launches: { id: string; status: string; count: number; nodes: string[]; instances: { instanceId: string }[]; manual: boolean }[];
  drains: { id: string; node: string; instanceId: string; status: string; manual: boolean }[];
}

/** One master log line (the daemon logs JSON lines when its stdout is not a terminal). */
interface LogLine {
  msg: string;
  event?: string;
  launch?: string;
  drain?: string;
  node?: string;
}

/** A proxy, its cloud, and every master incarnation that ran on it, oldest first. */
interface Harness {
  proxy: Proxy;
  cloud: Cloud;
  masters: Daemon[];
  /** One row per trial, printed at the end of each test. */
  table: Record<string, string | number>[];
}

/** state.json as the master left it; a master that never recorded anything has none yet. */
async function readState(proxy: Proxy): Promise<StateFile> {
  const text = await fs.readFile(path.join(proxy.inst.dir, "state", "state.json"), "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return JSON.stringify({ launches: [], drains: [] });
    throw err;
  });
  return JSON.parse(text) as StateFile;
}

const hostFile = (proxy: Proxy, name: string) => path.join(proxy.inst.dir, "hosts.d", `${name}.json`);

async function inHostsD(proxy: Proxy, name: string): Promise<boolean> {
  return fs.access(hostFile(proxy, name)).then(
    () => true,
    () => false,
  );
}

async function inHaproxyCfg(proxy: Proxy, name: string): Promise<boolean> {
  const text = await fs.readFile(proxy.inst.haproxyConfig, "utf8");
  return new RegExp(`^\\s*server ${name.replace(/[.]/g, "\\.")} `, "m").test(text);
}

/** Send requests through HAProxy until each of `names` has answered; returns every body seen. */
async function waitServed(proxy: Proxy, names: string[], timeoutMs = 10_000): Promise<Set<string>> {
  const seen = new Set<string>();
  await waitFor(
    `HAProxy to serve ${names.join(", ")} (seen so far: ${[...seen].join(", ") || "none"})`,
    async () => {
      const body = await getThrough(proxy.inst.frontendPort);
      if (body) seen.add(body);
      return names.every((n) => seen.has(n));
    },
    timeoutMs,
    5,
  );
  return seen;
}

/** Every JSON log line of every master incarnation, with the incarnation's index. */
function masterLogs(h: Harness): (LogLine & { incarnation: number })[] {
  return h.masters.flatMap((m, incarnation) =>
    m
      .log()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => ({ ...(JSON.parse(l) as LogLine), incarnation })),
  );
}

/** Wait until the master was SIGKILLed (by the cloud or by the test). */
async function waitKilled(master: Daemon, timeoutMs = 15_000): Promise<void> {
  await waitFor("the master to be killed", () => master.child.exitCode !== null || master.child.signalCode !== null, timeoutMs, 5);
  expect(master.child.signalCode, `the master exited by itself (code ${master.child.exitCode}); its log: ${master.log().slice(-3000)}`).toBe("SIGKILL");
}

/** SIGKILL the master from the test, by its pid. */
function killMaster(h: Harness): void {
  process.kill(h.proxy.master.child.pid!, "SIGKILL");
}

/** Start the master again on the same folder, and point the cloud's kills at it. */
async function restartMaster(h: Harness): Promise<void> {
  h.proxy.master = await h.proxy.startMaster();
  h.masters.push(h.proxy.master);
  await h.cloud.setMasterPid(h.proxy.master.child.pid!);
}

/** A proxy with the cloud's commands (or `scaleUpCommand` instead of the cloud's launch). */
async function startHarness(scaleUpCommand?: (cloud: Cloud) => string): Promise<Harness> {
  const cloud = await createCloud(scope);
  const commands = scaleUpCommand
    ? [`machine.scale_up_command=${scaleUpCommand(cloud)}`, `machine.scale_down_command=${cloud.scaleDownCommand}`]
    : cloud.settings;
  const proxy = await startProxy(scope, { settings: [...commands, ...SETTINGS] });
  await cloud.attach(proxy);
  return { proxy, cloud, masters: [proxy.master], table: [] };
}

/** Names of the nodes still in hosts.d, among those the cloud started. */
async function nodesInHostsD(h: Harness): Promise<string[]> {
  const out: string[] = [];
  for (const name of await h.cloud.nodeNames()) if (await inHostsD(h.proxy, name)) out.push(name);
  return out;
}

/** Wait until `name` is live, in hosts.d and haproxy.cfg, and its launch is done with it; then check it is served along with `others`. */
async function waitNodeServing(h: Harness, launchId: string, name: string, others: string[]): Promise<MasterStatus> {
  const status = await waitFor(
    `${name} live, in hosts.d and haproxy.cfg, and launch ${launchId} done`,
    async () => {
      const s = await h.proxy.status();
      const launch = s.launches.find((l) => l.id === launchId);
      const live = s.nodes.some((n) => n.name === name && n.state === "live");
      return launch?.status === "done" && live && (await inHostsD(h.proxy, name)) && (await inHaproxyCfg(h.proxy, name)) ? s : undefined;
    },
    SETTLE_MS,
    100,
  ).catch(async (err: Error) => {
    const s = await h.proxy.status().catch(() => undefined);
    throw new Error(`${err.message}\nlaunch: ${JSON.stringify(s?.launches.find((l) => l.id === launchId))}\nmaster log: ${h.proxy.master.log().slice(-4000)}`);
  });
  expect(status.launches.find((l) => l.id === launchId)!.nodes).toEqual([name]);
  await waitServed(h.proxy, [name, ...others]);
  return status;
}

/** How a trial kills the master: a kill armed in the cloud's launch or terminate program, or the test's own SIGKILL. */
type Kill = { armed: KillPoint; afterExitMs?: number } | { test: "after-cli" | "on-record" };
const describeKill = (k: Kill) => ("armed" in k ? `cloud ${k.armed}${k.afterExitMs !== undefined ? ` +${k.afterExitMs} ms` : ""}` : `test ${k.test}`);

/**
 * One scale-up trial: kill, restart, then the launch must have run once and its node must serve,
 * with every node that was there before still there.
 */
async function scaleUpTrial(h: Harness, kill: Kill): Promise<void> {
  const started = Date.now();
  const runsBefore = (await h.cloud.launches()).length;
  const killsBefore = (await h.cloud.kills()).length;
  const launchIdsBefore = new Set((await readState(h.proxy)).launches.map((l) => l.id));
  const nodesBefore = await nodesInHostsD(h);
  const master = h.proxy.master;

  if ("armed" in kill) await h.cloud.armKill(kill.armed, kill.afterExitMs);
  const cli = await h.proxy.inst.cli("scale-up", "1");
  if ("test" in kill) {
    // The CLI answers once the launch is recorded: the command has been started by then.
    expect(cli.code, cli.stderr).toBe(0);
    killMaster(h);
  }
  // An armed kill may strike before the CLI's answer is written (it then exits 1): the record was
  // saved before the command started either way, which the checks below prove.
  await waitKilled(master);
  if ("armed" in kill) expect((await h.cloud.kills()).slice(killsBefore)).toMatchObject([{ point: kill.armed, command: "launch" }]);

  // The master is dead: what it left in state.json is final until the restart.
  const newRecords = (await readState(h.proxy)).launches.filter((l) => !launchIdsBefore.has(l.id));
  expect(newRecords, "exactly one launch recorded for one scale-up").toHaveLength(1);
  const record = newRecords[0]!;
  const atKill = `${record.status}${record.instances.length > 0 ? " +ids" : ""}${record.nodes.length > 0 ? " +node" : ""}`;

  await restartMaster(h);
  const run = await waitFor("the launch run in the cloud's log", async () => {
    const runs = await h.cloud.launches();
    return runs.length > runsBefore ? runs : undefined;
  });
  expect(run.slice(runsBefore), "the launch command ran exactly once").toHaveLength(1);
  const node = run[runsBefore]!.nodes[0]!.name;

  const status = await waitNodeServing(h, record.id, node, nodesBefore);
  const launch = status.launches.find((l) => l.id === record.id)!;
  // Settled: still one run, still one record for this trial, every earlier node still there.
  expect(await h.cloud.launches()).toHaveLength(runsBefore + 1);
  expect((await readState(h.proxy)).launches.filter((l) => !launchIdsBefore.has(l.id)).map((l) => l.id)).toEqual([record.id]);
  for (const n of nodesBefore) {
    expect(await inHostsD(h.proxy, n), `${n} still in hosts.d`).toBe(true);
    expect(await inHaproxyCfg(h.proxy, n), `${n} still in haproxy.cfg`).toBe(true);
  }
  h.table.push({
    trial: `scale-up, ${describeKill(kill)}`,
    cli: cli.code ?? "signal",
    "state at kill": atKill,
    outcome: `${launch.status} (${node})${launch.note ? ", recovered as pending" : ""}`,
    runs: 1,
    ms: Date.now() - started,
  });
}

/**
 * One scale-down trial: kill, restart, then the node's terminate must have run once, the node be
 * gone from everywhere, and every other node still be served.
 */
async function scaleDownTrial(h: Harness, kill: Kill): Promise<void> {
  const started = Date.now();
  const killsBefore = (await h.cloud.kills()).length;
  const drainIdsBefore = new Set((await readState(h.proxy)).drains.map((d) => d.id));
  const master = h.proxy.master;
  const newDrains = async () => (await readState(h.proxy)).drains.filter((d) => !drainIdsBefore.has(d.id));

  let cliCode: number | null;
  if ("armed" in kill) {
    await h.cloud.armTerminateKill(kill.armed, kill.afterExitMs);
    const cli = await h.proxy.inst.cli("scale-down", "1");
    expect(cli.code, cli.stderr).toBe(0);
    cliCode = cli.code;
  } else if (kill.test === "after-cli") {
    const cli = await h.proxy.inst.cli("scale-down", "1");
    expect(cli.code, cli.stderr).toBe(0);
    cliCode = cli.code;
    killMaster(h);
  } else {
    // Killed as soon as the decision is in state.json, while the drain itself is being applied.
    const pending = h.proxy.inst.cli("scale-down", "1");
    await waitFor("the drain to be recorded", async () => (await newDrains()).length > 0, 10_000, 2);
    killMaster(h);
    cliCode = (await pending).code;
  }
  await waitKilled(master);
  if ("armed" in kill) expect((await h.cloud.kills()).slice(killsBefore)).toMatchObject([{ point: kill.armed, command: "terminate" }]);

  const recorded = await newDrains();
  expect(recorded, "exactly one drain recorded for one scale-down").toHaveLength(1);
  const drain = recorded[0]!;
  const node = drain.node;
  // A test kill lands during the drain, an armed one once the terminate has started.
  if ("test" in kill) expect(drain.status).toBe("draining");
  else expect(["terminating", "done"]).toContain(drain.status);
  const survivors = (await nodesInHostsD(h)).filter((n) => n !== node);

  await restartMaster(h);
  const status = await waitFor(
    `the drain of ${node} to be done`,
    async () => {
      const s = await h.proxy.status();
      return s.drains.find((d) => d.id === drain.id)?.status === "done" ? s : undefined;
    },
    SETTLE_MS,
    100,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\nmaster log: ${h.proxy.master.log().slice(-4000)}`);
  });
  const terminationsOf = async () => (await h.cloud.terminations()).filter((t) => t.instanceId === drain.instanceId);
  // An armed "start" kill strikes before the terminate program logs; it finishes on its own.
  await waitFor(`the terminate of ${node} in the cloud's log`, async () => (await terminationsOf()).length > 0, 10_000);
  await waitFor(`${node}'s processes to be gone`, async () => !(await h.cloud.isRunning(node)), 10_000);
  expect(await terminationsOf(), "the terminate command ran exactly once").toMatchObject([
    { instanceId: drain.instanceId, name: node, found: true, fail: false },
  ]);
  expect(await inHostsD(h.proxy, node), `${node} out of hosts.d`).toBe(false);
  await waitFor(`${node} out of haproxy.cfg`, async () => !(await inHaproxyCfg(h.proxy, node)), 5_000);
  for (const n of survivors) {
    expect(await inHostsD(h.proxy, n), `${n} still in hosts.d`).toBe(true);
    expect(await inHaproxyCfg(h.proxy, n), `${n} still in haproxy.cfg`).toBe(true);
  }
  const seen = await waitServed(h.proxy, survivors);
  expect(seen.has(node), `${node} answered through HAProxy after its terminate`).toBe(false);
  const done = status.drains.find((d) => d.id === drain.id)!;
  h.table.push({
    trial: `scale-down, ${describeKill(kill)}`,
    cli: cliCode ?? "signal",
    "state at kill": drain.status,
    outcome: `${done.status} (${node})${done.note ? `, ${done.note.includes("not run again") ? "terminate not rerun" : "recovered"}` : ""}`,
    runs: 1,
    ms: Date.now() - started,
  });
}

/**
 * What must hold across all trials of one proxy: each launch run's nodes registered once, no
 * instance terminated twice, nothing left in flight in state.json, no launch started twice in
 * the masters' logs, and only manual actions.
 */
async function checkAcrossTrials(h: Harness): Promise<void> {
  const state = await readState(h.proxy);
  const logs = masterLogs(h);
  expect(
    state.launches.filter((l) => l.status === "running" || l.status === "pending"),
    "launches left in flight",
  ).toEqual([]);
  expect(
    state.drains.filter((d) => d.status === "draining" || d.status === "terminating"),
    "drains left in flight",
  ).toEqual([]);
  expect(state.launches.every((l) => l.manual) && state.drains.every((d) => d.manual), "only manual actions were recorded").toBe(true);
  for (const run of await h.cloud.launches()) {
    for (const n of run.nodes) {
      expect(
        state.launches.filter((l) => l.nodes.includes(n.name)),
        `${n.name} registered for exactly one launch`,
      ).toHaveLength(1);
      // At most once: a master killed right after saving the claim never writes its log line.
      expect(logs.filter((l) => l.event === "launch_registered" && l.node === n.name).length, `${n.name} claimed at most once in the logs`).toBeLessThanOrEqual(
        1,
      );
    }
  }
  expect(
    state.launches.every((l) => l.status === "done"),
    `every launch done: ${JSON.stringify(state.launches.map((l) => [l.id, l.status]))}`,
  ).toBe(true);
  for (const l of state.launches) {
    expect(
      logs.filter((x) => x.event === "scale_up" && x.launch === l.id),
      `"launching" logged once for ${l.id}`,
    ).toHaveLength(1);
  }
  const ids = (await h.cloud.terminations()).map((t) => t.instanceId);
  expect(new Set(ids).size, `no instance terminated twice: ${ids.join(" ")}`).toBe(ids.length);
  // Every incarnation but the running one was SIGKILLed by a trial.
  expect(h.masters.slice(0, -1).map((m) => m.child.signalCode)).toEqual(h.masters.slice(0, -1).map(() => "SIGKILL"));
  console.log(h.table.map((r) => Object.values(r).join(" | ")).join("\n"));
}

const SCALE_UP_KILLS: Kill[] = [
  { armed: "start" },
  { armed: "end" },
  { armed: "after-exit", afterExitMs: 0 },
  { armed: "after-exit", afterExitMs: 30 },
  { armed: "after-exit", afterExitMs: 100 },
  { armed: "after-exit", afterExitMs: 300 },
  { test: "after-cli" },
];

const SCALE_DOWN_KILLS: Kill[] = [
  { armed: "start" },
  { armed: "end" },
  { armed: "after-exit", afterExitMs: 0 },
  { armed: "after-exit", afterExitMs: 30 },
  { armed: "after-exit", afterExitMs: 100 },
  { armed: "after-exit", afterExitMs: 300 },
  { test: "on-record" },
  { test: "after-cli" },
];

test("a master SIGKILLed at each point of a scale-up and started again runs each launch once, forgets none, and loses no host", async () => {
  const h = await startHarness();
  for (const kill of SCALE_UP_KILLS) await scaleUpTrial(h, kill);
  const nodes = await h.cloud.nodeNames();
  expect(nodes).toHaveLength(SCALE_UP_KILLS.length);
  await waitServed(h.proxy, nodes);
  await checkAcrossTrials(h);
}, 150_000);

test("a master SIGKILLed at each point of a scale-down (draining, terminate running, just after it) and started again terminates each node once and loses no other host", async () => {
  const h = await startHarness();
  // Nodes to remove, and one to survive them all.
  const total = SCALE_DOWN_KILLS.length + 1;
  const up = await h.proxy.inst.cli("scale-up", String(total));
  expect(up.code, up.stderr).toBe(0);
  const launched = await waitFor(
    `${total} nodes launched and registered`,
    async () => {
      const s = await h.proxy.status();
      return s.launches.length === 1 && s.launches[0]!.status === "done" && s.nodes.filter((n) => n.state === "live").length === total
        ? s.launches[0]!
        : undefined;
    },
    40_000,
    200,
  );
  await waitServed(h.proxy, launched.nodes);

  for (const kill of SCALE_DOWN_KILLS) await scaleDownTrial(h, kill);
  const left = await nodesInHostsD(h);
  expect(left).toHaveLength(1);
  expect(await h.cloud.terminations()).toHaveLength(SCALE_DOWN_KILLS.length);
  await checkAcrossTrials(h);
}, 150_000);

test("a master SIGKILLed while the launch command still runs, after its node registered, counts the launch done once restarted", async () => {
  // A launch command that goes on after the cloud program (like `aws ec2 wait instance-running`)
  // while a flag file exists: its node registers while the launch is still `running`.
  let linger = "";
  const h = await startHarness((cloud) => {
    linger = path.join(cloud.dir, "linger");
    return `${cloud.scaleUpCommand}; rc=$?; while [ -e ${shellQuote(linger)} ]; do sleep 0.1; done; exit $rc`;
  });
  await fs.writeFile(linger, "");
  const started = Date.now();
  const up = await h.proxy.inst.cli("scale-up", "1");
  expect(up.code, up.stderr).toBe(0);
  const registered = await waitFor(
    "the node to register while the launch command still runs",
    async () => {
      const s = await h.proxy.status();
      return s.launches[0]?.nodes.length === 1 ? s.launches[0] : undefined;
    },
    SETTLE_MS,
    50,
  );
  expect(registered.status).toBe("running");
  // The claim is in status before state.json has it: wait for the node's hosts.d entry, written after the save.
  await waitFor("the node's hosts.d entry", async () => (await nodesInHostsD(h)).includes(registered.nodes[0]!), SETTLE_MS, 20);
  killMaster(h);
  await waitKilled(h.masters[0]!);
  await fs.rm(linger);
  expect((await readState(h.proxy)).launches).toMatchObject([{ id: registered.id, status: "running", nodes: registered.nodes }]);

  await restartMaster(h);
  const node = registered.nodes[0]!;
  const status = await waitNodeServing(h, registered.id, node, []);
  expect(status.capacity.pending).toBe(0);
  expect(await h.cloud.launches()).toHaveLength(1);
  h.table.push({
    trial: "scale-up, test kill while the command runs after its node registered",
    cli: 0,
    "state at kill": "running +node",
    outcome: `done (${node})`,
    runs: 1,
    ms: Date.now() - started,
  });
  await checkAcrossTrials(h);
}, 60_000);
