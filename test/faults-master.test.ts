/**
 * Faults of the master (issue 6), each with real parts on 127.0.0.1: a real HAProxy in
 * master-worker mode, the real `autoscaler master`, real files.
 *
 * 1. The master SIGKILLed at random moments over fifty scale cycles (a launch whose node
 *    registers, then a drain-then-terminate of the oldest node), restarted each time: no launch
 *    or terminate repeated or lost, no host lost, and the live haproxy.cfg always one that passed
 *    `haproxy -c`. The cloud is test/helpers/tcp-node.mjs: a launched node is a small real
 *    process that serves HTTP and speaks the agent protocol straight to the master's TCP port
 *    (real agents come through sshd; crash-safety.test.ts covers that path with fewer trials).
 *    What is under test is the master's own durability, which does not depend on how the bytes
 *    reach its port, and a node that starts in ~50 ms makes fifty cycles fit in a minute or so.
 *    Requests go over the control socket as the same JSON line `autoscaler scale-up` sends,
 *    without a CLI process per request. Half the requests are followed by a SIGKILL 0–800 ms
 *    later, drawn from a seeded PRNG: the seed is in the test's name, and
 *    AUTOSCALER_FAULT_SEED=<seed> replays the same draws (timing may differ);
 *    AUTOSCALER_FAULT_CYCLES=<n> runs a longer soak. The figures are printed at the end.
 * 2. Two kills aimed at one moment each: a launch waiting for its node is not fulfilled, after
 *    the restart, by a hand-added host that shares the instance's address; and a master killed
 *    while it holds the apply lock does not hold off the next master's applies (the lock and
 *    the staged file it left are removed at start).
 * 3. HAProxy stopped, so the reload fails; then a template HAProxy refuses: the live config stays
 *    the last good one, status and /metrics show the failure, and the next good render recovers
 *    by itself.
 * 4. state_dir on a full file system (a 64 KiB tmpfs mounted by the test; needs root, as CI
 *    runs): the master refuses to act rather than act without a record, says so, keeps running,
 *    and acts once (exactly once) when space returns.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { mulberry32 } from "@autoscaler/master/simulate";
import { isProcessOf, shellQuote } from "./helpers/cloud.js";
import { getThrough, startDaemon, type Daemon } from "./helpers/cluster.js";
import { makeInstallation, serverLines, startHaproxy, type Installation } from "./helpers/haproxy.js";
import { freePort, REPO_ROOT, runProcess, Scope, sleep, startBackend, waitFor } from "./helpers/process.js";
import { status, type MasterStatus } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

// ---- a proxy box: installation, HAProxy, master -------------------------------------------

/** A proxy without sshd (nothing here comes through SSH): installation, HAProxy, and every master incarnation, oldest first. */
interface Box {
  inst: Installation;
  stateDir: string;
  masterPort: number;
  metricsPort: number;
  token: string;
  haproxyPid: number;
  master: Daemon;
  masters: Daemon[];
  startMaster(): Promise<Daemon>;
}

/** Start a box; `before` runs once the installation exists, before the first `generate`. */
async function startBox(settings: string[], before?: (inst: Installation) => Promise<void>): Promise<Box> {
  const masterPort = await freePort();
  const metricsPort = await freePort();
  const token = randomBytes(24).toString("base64url");
  const inst = await makeInstallation(scope, [
    `master.listen=127.0.0.1:${masterPort}`,
    `master.metrics_listen=127.0.0.1:${metricsPort}`,
    `master.token=${token}`,
    ...settings,
  ]);
  if (before) await before(inst);
  const gen = await inst.cli("generate");
  if (gen.code !== 0) throw new Error(`generate failed: ${gen.stderr}`);
  const haproxy = await startHaproxy(scope, inst);
  const stateSetting = settings
    .filter((s) => s.startsWith("master.state_dir="))
    .at(-1)
    ?.slice("master.state_dir=".length);
  const box = {
    inst,
    stateDir: stateSetting ? path.resolve(inst.dir, stateSetting) : path.join(inst.dir, "state"),
    masterPort,
    metricsPort,
    token,
    haproxyPid: haproxy.pid,
    masters: [] as Daemon[],
    master: undefined as unknown as Daemon,
    async startMaster() {
      const d = startDaemon(scope, ["master", "--config", inst.ini]);
      box.masters.push(d);
      box.master = d;
      await d.waitForLog(/master started/, 15_000).catch(async (err: Error) => {
        const lock = await fs.stat(`${inst.haproxyConfig}.lock`).catch(() => undefined);
        throw new Error(
          `${err.message}; ${lock ? `${inst.haproxyConfig}.lock exists (mtime ${lock.mtime.toISOString()}, now ${new Date().toISOString()})` : "no apply lock"}`,
        );
      });
      return d;
    },
  };
  await box.startMaster();
  return box;
}

async function metrics(box: Box): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${box.metricsPort}/metrics`, { signal: AbortSignal.timeout(3000) });
  return res.text();
}

/** One request on the master's control socket, as `autoscaler scale-up|scale-down` sends it; never throws. */
function control(box: Box, request: Record<string, unknown>): Promise<{ ok: boolean; result?: unknown; error?: string }> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ path: path.join(box.stateDir, "control.sock") });
    let answer = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, error: "no answer within 10 s" });
    }, 10_000);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(JSON.stringify(request) + "\n"));
    socket.on("data", (chunk: string) => (answer += chunk));
    socket.on("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, error: err.message });
    });
    socket.on("close", () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(answer) as { ok: boolean; result?: unknown; error?: string });
      } catch {
        resolve({ ok: false, error: `closed without a whole answer (${JSON.stringify(answer)})` });
      }
    });
  });
}

/** Names in hosts.d (in-flight atomic writes, dot files, are not entries). */
async function hostsD(box: Box): Promise<string[]> {
  const files = await fs.readdir(path.join(box.inst.dir, "hosts.d"));
  return files
    .filter((f) => f.endsWith(".json") && !f.startsWith("."))
    .map((f) => f.slice(0, -".json".length))
    .sort();
}

/** Server names in the live haproxy.cfg. */
async function liveServers(box: Box): Promise<string[]> {
  return serverLines(await fs.readFile(box.inst.haproxyConfig, "utf8"))
    .map((l) => l.split(/\s+/)[1]!)
    .sort();
}

/** Staged files the apply writes beside haproxy.cfg before its check (`.haproxy.cfg.staged-<pid>-<hex>`). */
async function stagedFiles(box: Box): Promise<string[]> {
  return (await fs.readdir(path.dirname(box.inst.haproxyConfig))).filter((f) => f.startsWith(`.${path.basename(box.inst.haproxyConfig)}.staged-`));
}

/** No staged file is left beside haproxy.cfg: one of an apply in progress lives for the length of its check, a stray one forever. */
async function expectNoStrayStaged(box: Box, what: string): Promise<void> {
  await waitFor(
    `${what}: no staged file left beside haproxy.cfg (${(await stagedFiles(box)).join(", ")})`,
    async () => (await stagedFiles(box)).length === 0,
    3_000,
    10,
  );
}

/** Run HAProxy's own check on the live file, as a restart of HAProxy would read it now. */
async function checkLiveConfig(box: Box): Promise<void> {
  const r = await runProcess("haproxy", ["-c", "-f", box.inst.haproxyConfig], { cwd: box.inst.dir, timeoutMs: 15_000 });
  expect(r.code, `haproxy -c refused the live haproxy.cfg:\n${r.stdout}${r.stderr}\n${await fs.readFile(box.inst.haproxyConfig, "utf8")}`).toBe(0);
}

/** Stop a daemon by its pid (SIGTERM, SIGKILL after 5 s) and wait for its exit. */
async function stopDaemon(d: Daemon, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => d.child.once("exit", () => r()));
  process.kill(d.child.pid!, signal);
  const timer = setTimeout(() => {
    if (d.child.exitCode === null && d.child.signalCode === null) process.kill(d.child.pid!, "SIGKILL");
  }, 5_000);
  await exited;
  clearTimeout(timer);
}

// ---- 1. SIGKILL at random moments over fifty scale cycles ----------------------------------

const TCP_NODE = path.join(REPO_ROOT, "test", "helpers", "tcp-node.mjs");
const CYCLES = Number(process.env.AUTOSCALER_FAULT_CYCLES ?? 50);
const SEED = Number(process.env.AUTOSCALER_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** Share of actions after which the master is killed, and the latest moment of the kill after the request. */
const KILL_PROBABILITY = Number(process.env.AUTOSCALER_FAULT_KILL_P ?? 0.5);
const KILL_WITHIN_MS = 800;
/** A request whose master died before recording it is asked again, as an operator would; bounded. */
const MAX_ATTEMPTS = 6;
const LAUNCH_TIMEOUT_S = 10;

interface LaunchRun {
  at: number;
  count: number;
  nodes: { name: string; instanceId: string }[];
}
interface TerminationRun {
  at: number;
  instanceId: string;
  name: string | null;
}
interface LaunchRecord {
  id: string;
  status: string;
  count: number;
  nodes: string[];
  instances: { instanceId: string }[];
  manual: boolean;
  note?: string;
  error?: string;
}
interface DrainRecord {
  id: string;
  node: string;
  instanceId: string;
  status: string;
  manual: boolean;
  note?: string;
  error?: string;
}
interface StateFile {
  paused: boolean;
  launches: LaunchRecord[];
  drains: DrainRecord[];
}

/** The tcp-node cloud: its folder, its two commands, and its logs. Its nodes are killed by pid in the scope's cleanup. */
interface TcpCloud {
  dir: string;
  settings: string[];
  attach(box: Box): Promise<void>;
  launches(): Promise<LaunchRun[]>;
  terminations(): Promise<TerminationRun[]>;
  nodePid(name: string): Promise<number | undefined>;
}

async function readJsonLines<T>(file: string): Promise<T[]> {
  const text = await fs.readFile(file, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}

async function createTcpCloud(): Promise<TcpCloud> {
  const dir = await scope.tempDir("autoscaler-tcpcloud-");
  await fs.mkdir(path.join(dir, "nodes"));
  const command = (verb: string) => [process.execPath, TCP_NODE, verb, dir].map(shellQuote).join(" ");
  const nodePid = async (name: string) => {
    const pid = Number(await fs.readFile(path.join(dir, "nodes", name, "node.pid"), "utf8").catch(() => ""));
    return pid > 1 ? pid : undefined;
  };
  scope.onCleanup(async () => {
    // Nothing starts from now on; then SIGKILL every node by its pid until a pass finds none (bounded).
    await fs.writeFile(path.join(dir, "closed"), "");
    for (let pass = 0, quiet = 0; quiet < 2; pass++) {
      if (pass > 100) throw new Error(`tcp-node processes of ${dir} survive SIGKILL`);
      const names = await fs.readdir(path.join(dir, "nodes"));
      const live: number[] = [];
      for (const name of names) {
        const pid = await nodePid(name);
        if (pid !== undefined && (await isProcessOf(pid, path.join(dir, "nodes", name)))) live.push(pid);
      }
      quiet = live.length === 0 ? quiet + 1 : 0;
      for (const pid of live) process.kill(pid, "SIGKILL");
      await sleep(50);
    }
  });
  return {
    dir,
    settings: [`machine.scale_up_command=${command("launch")}`, `machine.scale_down_command=${command("terminate")}`],
    attach: (box) => fs.writeFile(path.join(dir, "setup.json"), JSON.stringify({ masterPort: box.masterPort, token: box.token }) + "\n"),
    launches: () => readJsonLines<LaunchRun>(path.join(dir, "launches.log")),
    terminations: () => readJsonLines<TerminationRun>(path.join(dir, "terminations.log")),
    nodePid,
  };
}

/** The cycle test's figures, printed at the end (they go into RELIABILITY.md). */
interface Figures {
  seed: number;
  cycles: number;
  kills: number;
  requests: number;
  /** Killed before the master recorded the request: nothing recorded, nothing run, asked again. */
  requestsLostBeforeRecord: number;
  launchRuns: number;
  terminateRuns: number;
  /** Killed between the save of a launch and the start of its command: never run, failed after launch_timeout. */
  launchesNeverStarted: number;
  /** Killed between the save of "terminating" and the start of the command: not run again, the node came back as a backend. */
  terminatesNeverStarted: number;
  /**
   * Killed while the launch command ran, so its run-instances output (the instance ids the master
   * trusts) was lost: the node's id was only its own word, and its scale-down skipped the terminate.
   */
  terminatesSkipped: number;
  /** Launches found `running` at a restart (outcome unknown, kept pending, never rerun). */
  launchesRecovered: number;
  /** Terminated nodes that registered again while their terminate ran across a restart, then were forgotten. */
  terminatedThenForgotten: number;
  /** Kills that left a staged file beside haproxy.cfg (a check in progress); the next master removed each. */
  stagedLeftAtKill: number;
  /** Restarts that found the apply lock of the killed master and removed it at once (else: 60 s without applies). */
  applyLocksRecovered: number;
  killedDuring: Record<string, number>;
  ms: number;
}

interface Harness {
  box: Box;
  cloud: TcpCloud;
  rng: () => number;
  figures: Figures;
  /** Every launch and drain record ever seen in state.json, by id (the master keeps only the last 20 finished). */
  launches: Map<string, LaunchRecord>;
  drains: Map<string, DrainRecord>;
  /** The hand-added host, then the launched nodes still in service, oldest first. */
  manual: string;
  launched: string[];
  /** What the test did, for a failure's message. */
  trace: string[];
}

async function readState(box: Box): Promise<StateFile> {
  const text = await fs.readFile(path.join(box.stateDir, "state.json"), "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return JSON.stringify({ paused: false, launches: [], drains: [] });
    throw err;
  });
  return JSON.parse(text) as StateFile;
}

/** Read state.json and remember every record in it. */
async function observe(h: Harness): Promise<StateFile> {
  const state = await readState(h.box);
  for (const l of state.launches) h.launches.set(l.id, l);
  for (const d of state.drains) h.drains.set(d.id, d);
  return state;
}

/** SIGKILL the master by its pid, check what it left, and start it again on the same folder. */
async function killAndRestart(h: Harness, phase: string): Promise<void> {
  const m = h.box.master;
  process.kill(m.child.pid!, "SIGKILL");
  await waitFor("the master to die", () => m.child.exitCode !== null || m.child.signalCode !== null, 5_000, 5);
  expect(m.child.signalCode, `the master exited by itself: ${m.log().slice(-2000)}`).toBe("SIGKILL");
  h.figures.kills++;
  h.figures.killedDuring[phase] = (h.figures.killedDuring[phase] ?? 0) + 1;
  if ((await stagedFiles(h.box)).length > 0) h.figures.stagedLeftAtKill++;
  await checkLiveConfig(h.box);
  await h.box.startMaster();
}

/** With the seeded probability, wait a random 0–800 ms and SIGKILL (and restart) the master. */
async function maybeKill(h: Harness, phase: string): Promise<boolean> {
  if (h.rng() >= KILL_PROBABILITY) return false;
  const delay = Math.floor(h.rng() * KILL_WITHIN_MS);
  await sleep(delay);
  h.trace.push(`SIGKILL ${delay} ms after the ${phase} request`);
  await killAndRestart(h, phase);
  return true;
}

/** hosts.d and the live haproxy.cfg hold exactly the manual host and the launched nodes in service; no staged file is left. */
async function expectCluster(h: Harness, what: string): Promise<void> {
  const want = [h.manual, ...h.launched].sort();
  await waitFor(
    `${what}: hosts.d and haproxy.cfg to hold exactly ${want.join(", ")}`,
    async () => JSON.stringify(await hostsD(h.box)) === JSON.stringify(want) && JSON.stringify(await liveServers(h.box)) === JSON.stringify(want),
    20_000,
    20,
  ).catch(async (err: Error) => {
    throw new Error(
      `${err.message}; hosts.d: ${(await hostsD(h.box)).join(", ")}; haproxy.cfg: ${(await liveServers(h.box)).join(", ")}; master log: ${h.box.master.log().slice(-3000)}`,
    );
  });
  await expectNoStrayStaged(h.box, what);
}

/** `scale-up 1`, perhaps killed; returns the node that registered for it. */
async function launchPhase(h: Harness): Promise<string> {
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    await observe(h);
    const known = new Set(h.launches.keys());
    const runsBefore = (await h.cloud.launches()).length;
    const request = control(h.box, { cmd: "scale-up", count: 1 });
    h.figures.requests++;
    const killed = await maybeKill(h, "launch");
    const answer = await request;
    if (!killed) expect(answer.ok, `${answer.error}; master log: ${h.box.master.log().slice(-3000)}`).toBe(true);
    const fresh = (await observe(h)).launches.filter((l) => !known.has(l.id));
    expect(fresh.length, "at most one launch recorded for one scale-up").toBeLessThanOrEqual(1);
    if (fresh.length === 0) {
      expect(killed, `scale-up answered ${JSON.stringify(answer)} but recorded nothing`).toBe(true);
      h.figures.requestsLostBeforeRecord++;
      h.trace.push("nothing recorded: asked again");
      continue;
    }
    const id = fresh[0]!.id;
    const settled = await waitFor(
      `launch ${id} to end done or failed`,
      async () => {
        const l = (await observe(h)).launches.find((x) => x.id === id);
        return l && (l.status === "done" || l.status === "failed") ? l : undefined;
      },
      (LAUNCH_TIMEOUT_S + 8) * 1000,
      25,
    );
    if (settled.note) h.figures.launchesRecovered++;
    // A run still starting when the master died shows in the log within a moment.
    if (settled.status === "failed") await sleep(500);
    const runs = (await h.cloud.launches()).slice(runsBefore);
    if (settled.status === "failed") {
      // Killed after the save, before the command started: never run again; it counted as pending until launch_timeout.
      expect(killed, `launch ${id} failed without a kill: ${settled.error}`).toBe(true);
      expect(settled.error).toMatch(/launch_timeout/);
      expect(runs, `launch ${id} failed by launch_timeout although its command ran`).toEqual([]);
      h.figures.launchesNeverStarted++;
      h.trace.push(`launch ${id} never started: asked again`);
      continue;
    }
    expect(runs, `launch ${id}: the launch command ran exactly once`).toHaveLength(1);
    const node = runs[0]!.nodes[0]!.name;
    expect(settled.nodes, `launch ${id} claimed the node its command started`).toEqual([node]);
    h.launched.push(node);
    await expectCluster(h, `after launching ${node}`);
    return node;
  }
  throw new Error(`no launch after ${MAX_ATTEMPTS} requests`);
}

/** `scale-down 1`, perhaps killed; returns the node that was drained and terminated (the oldest). */
async function drainPhase(h: Harness): Promise<string> {
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    await observe(h);
    const known = new Set(h.drains.keys());
    const target = h.launched[0]!;
    const request = control(h.box, { cmd: "scale-down", count: 1 });
    h.figures.requests++;
    const killed = await maybeKill(h, "scale-down");
    const answer = await request;
    if (!killed) expect(answer.ok, `${answer.error}; master log: ${h.box.master.log().slice(-3000)}`).toBe(true);
    const fresh = (await observe(h)).drains.filter((d) => !known.has(d.id));
    expect(fresh.length, "at most one drain recorded for one scale-down").toBeLessThanOrEqual(1);
    if (fresh.length === 0) {
      expect(killed, `scale-down answered ${JSON.stringify(answer)} but recorded nothing`).toBe(true);
      h.figures.requestsLostBeforeRecord++;
      h.trace.push("nothing recorded: asked again");
      continue;
    }
    const drain = fresh[0]!;
    expect(drain.node, "the oldest launched node is the one drained").toBe(target);
    const settled = await waitFor(
      `drain ${drain.id} of ${target} to end`,
      async () => {
        const d = (await observe(h)).drains.find((x) => x.id === drain.id);
        return d && (d.status === "done" || d.status === "failed") ? d : undefined;
      },
      10_000,
      25,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; master log: ${h.box.master.log().slice(-3000)}`);
    });
    expect(settled.status, `drain of ${target}: ${settled.error}`).toBe("done");
    if (/terminate skipped/.test(settled.note ?? "")) {
      // Its launch's output was lost to a kill, so no instance id is vouched for: drained and
      // removed, never terminated. The operator stops it, as the event says; here the test does.
      expect(settled.instanceId, `${target}'s skipped drain`).toBe("");
      expect((await h.cloud.terminations()).filter((t) => t.name === target)).toEqual([]);
      const pid = await h.cloud.nodePid(target);
      if (pid !== undefined && (await isProcessOf(pid, path.join(h.cloud.dir, "nodes", target)))) process.kill(pid, "SIGKILL");
      h.figures.terminatesSkipped++;
      h.trace.push(`terminate of ${target} skipped (its id was its own word): stopped by hand`);
      h.launched.shift();
      await expectCluster(h, `after draining ${target} without a terminate`);
      return target;
    }
    // The terminate ran if and only if the node's process is gone (nothing else stops it); one
    // started by a master that was then killed may take a moment, more on a loaded machine.
    const pid = await h.cloud.nodePid(target);
    const nodeDir = path.join(h.cloud.dir, "nodes", target);
    const gone = await waitFor(
      `${target}'s process to be gone`,
      async () => pid === undefined || !(await isProcessOf(pid, nodeDir)),
      killed ? 10_000 : 5_000,
      25,
    ).then(
      () => true,
      () => false,
    );
    const terms = (await h.cloud.terminations()).filter((t) => t.instanceId === drain.instanceId);
    if (!gone) {
      // Killed after "terminating" was saved, before the command started: not run again, the entry
      // removed; the node still runs, so its agent registers it again, as the newest backend.
      expect(killed, `drain ${drain.id} done without a kill, but ${target} still runs`).toBe(true);
      expect(terms, `${target} still runs, yet a terminate ran for it`).toEqual([]);
      expect(settled.note).toMatch(/not run again/);
      h.figures.terminatesNeverStarted++;
      h.trace.push(`terminate of ${target} never started: asked again`);
      h.launched.push(h.launched.shift()!);
      await expectCluster(h, `after a terminate of ${target} that never started`);
      continue;
    }
    expect(terms, `the terminate of ${target} ran exactly once`).toHaveLength(1);
    h.launched.shift();
    await expectCluster(h, `after terminating ${target}`);
    return target;
  }
  throw new Error(`no scale-down after ${MAX_ATTEMPTS} requests`);
}

test(`the master SIGKILLed at random moments over ${CYCLES} scale cycles repeats and loses no launch or terminate, loses no host, and leaves a checked haproxy.cfg (seed ${SEED}: AUTOSCALER_FAULT_SEED=${SEED} replays it)`, async () => {
  const started = Date.now();
  const cloud = await createTcpCloud();
  const keep = await startBackend(scope, "keep");
  const box = await startBox(
    [
      ...cloud.settings,
      "master.interval=0.1",
      // Manual actions only: nothing below min_nodes, and a window no node ever fills.
      "scaling.min_nodes=0",
      "scaling.max_nodes=10",
      "scaling.mode=instance",
      "scaling.scale_up_threshold=95",
      "scaling.scale_down_threshold=1",
      "scaling.window=600",
      "scaling.drain_seconds=0",
      // A node whose terminate ran while the master restarted may register again before it stops;
      // its entry then goes after forget_after (10 s here).
      "scaling.node_timeout=2",
      "scaling.forget_after=10",
      `machine.launch_timeout=${LAUNCH_TIMEOUT_S}`,
    ],
    (inst) => fs.writeFile(path.join(inst.dir, "hosts.d", "keep.json"), JSON.stringify({ address: "127.0.0.1", port: keep.port }) + "\n"),
  );
  await cloud.attach(box);
  const h: Harness = {
    box,
    cloud,
    rng: mulberry32(SEED),
    launches: new Map(),
    drains: new Map(),
    manual: "keep",
    launched: [],
    trace: [],
    figures: {
      seed: SEED,
      cycles: 0,
      kills: 0,
      requests: 0,
      requestsLostBeforeRecord: 0,
      launchRuns: 0,
      terminateRuns: 0,
      launchesNeverStarted: 0,
      terminatesNeverStarted: 0,
      terminatesSkipped: 0,
      terminatedThenForgotten: 0,
      launchesRecovered: 0,
      stagedLeftAtKill: 0,
      applyLocksRecovered: 0,
      killedDuring: {},
      ms: 0,
    },
  };
  await expectCluster(h, "at start");

  // One node in service before the cycles, so each scale-down has an older node to take and a newer one to spare.
  try {
    h.trace.push("first launch");
    await launchPhase(h);
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      h.trace.push(`cycle ${cycle}: launch`);
      await launchPhase(h);
      h.trace.push(`cycle ${cycle}: scale-down`);
      await drainPhase(h);
      h.figures.cycles++;
    }
  } catch (err) {
    (err as Error).message += `\n(seed ${SEED}; the last steps: ${h.trace.slice(-12).join("; ")})`;
    throw err;
  }

  // Settled: nothing in flight, exactly the right hosts, and every run accounted for.
  const state = await waitFor(
    "nothing in flight in state.json",
    async () => {
      const s = await observe(h);
      return s.launches.some((l) => l.status === "running" || l.status === "pending") ||
        s.drains.some((d) => d.status === "draining" || d.status === "terminating")
        ? undefined
        : s;
    },
    10_000,
  );
  expect(state.paused).toBe(false);
  await expectCluster(h, "at the end");
  const launches = [...h.launches.values()];
  const drains = [...h.drains.values()];
  const runs = await cloud.launches();
  const terms = await cloud.terminations();
  h.figures.launchRuns = runs.length;
  h.figures.terminateRuns = terms.length;
  expect(launches.every((l) => l.manual) && drains.every((d) => d.manual), "only the test's requests were acted on").toBe(true);

  // Each launch command run started one node, which registered for exactly one launch, once.
  const logs = box.masters.flatMap((m) =>
    m
      .log()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg: string; event?: string; launch?: string; node?: string }),
  );
  h.figures.applyLocksRecovered = logs.filter((l) => l.msg.startsWith("removed the HAProxy apply lock")).length;
  h.figures.terminatedThenForgotten = logs.filter((l) => l.msg === "node forgotten").length;
  for (const l of logs.filter((x) => x.msg === "node forgotten"))
    expect(
      terms.some((t) => t.name === l.node),
      `${l.node} forgotten, but it was never terminated`,
    ).toBe(true);
  for (const run of runs) {
    expect(run.nodes).toHaveLength(1);
    const name = run.nodes[0]!.name;
    expect(
      launches.filter((l) => l.nodes.includes(name)).map((l) => l.id),
      `${name} registered for exactly one launch`,
    ).toHaveLength(1);
    expect(logs.filter((l) => l.event === "launch_registered" && l.node === name).length, `${name} claimed at most once`).toBeLessThanOrEqual(1);
  }
  // No launch decided or started twice: one record per run, each started at most once across every incarnation.
  expect(launches.filter((l) => l.status === "done")).toHaveLength(runs.length);
  expect(launches.filter((l) => l.status === "failed")).toHaveLength(h.figures.launchesNeverStarted);
  for (const l of launches) {
    expect(l.nodes.length, `launch ${l.id} has ${l.nodes.join(", ")}`).toBe(l.status === "done" ? 1 : 0);
    expect(logs.filter((x) => x.event === "scale_up" && x.launch === l.id).length, `launch ${l.id} started at most once`).toBeLessThanOrEqual(1);
  }
  // Each terminate ran at most once per instance, only for a drained node, and every drain ended done.
  const ids = terms.map((t) => t.instanceId);
  expect(new Set(ids).size, `no instance terminated twice: ${ids.join(" ")}`).toBe(ids.length);
  expect(
    drains.every((d) => d.status === "done"),
    `every drain done: ${JSON.stringify(drains.filter((d) => d.status !== "done"))}`,
  ).toBe(true);
  for (const t of terms)
    expect(
      drains.some((d) => d.instanceId === t.instanceId),
      `${t.instanceId} terminated without a drain`,
    ).toBe(true);
  expect(terms).toHaveLength(CYCLES - h.figures.terminatesSkipped);
  expect(drains).toHaveLength(CYCLES + h.figures.terminatesNeverStarted);
  // Every incarnation but the running one ended by a kill; HAProxy serves the hosts that remain.
  expect(box.masters.slice(0, -1).every((m) => m.child.signalCode === "SIGKILL")).toBe(true);
  expect(box.masters.at(-1)!.child.exitCode).toBeNull();
  await checkLiveConfig(box);
  const seen = new Set<string>();
  await waitFor(
    `HAProxy to serve ${[h.manual, ...h.launched].join(", ")}`,
    async () => {
      const body = await getThrough(box.inst.frontendPort);
      if (body) seen.add(body);
      return [h.manual, ...h.launched].every((n) => seen.has(n));
    },
    15_000,
    10,
  );

  h.figures.ms = Date.now() - started;
  console.log(`faults-master: SIGKILL cycles: ${JSON.stringify(h.figures)}`);
  expect(h.figures.cycles).toBe(CYCLES);
}, 170_000);

// ---- 2. kills aimed at one moment ------------------------------------------------------------

test("a launch still waiting for its node when the master is killed is not fulfilled, after the restart, by an older host at the same address", async () => {
  // A launch command that prints run-instances JSON and returns while its instance boots.
  const instanceId = "i-0f000000000000a01";
  const json = JSON.stringify({ Instances: [{ InstanceId: instanceId, PrivateIpAddress: "127.0.0.1" }] });
  const cloud = await createTcpCloud();
  const keep = await startBackend(scope, "keep");
  const box = await startBox(
    [`machine.scale_up_command=echo ${shellQuote(json)}`, "master.interval=0.2", "scaling.min_nodes=0", "machine.launch_timeout=60"],
    (inst) => fs.writeFile(path.join(inst.dir, "hosts.d", "keep.json"), JSON.stringify({ address: "127.0.0.1", port: keep.port }) + "\n"),
  );
  await cloud.attach(box);
  const up = await control(box, { cmd: "scale-up", count: 1 });
  expect(up.ok, up.error).toBe(true);
  const pending = await waitFor("the launch to wait for its instance", async () =>
    (await readState(box)).launches.find((l) => l.status === "pending" && l.instances.length === 1),
  );

  const first = box.master;
  process.kill(first.child.pid!, "SIGKILL");
  await waitFor("the master to die", () => first.child.signalCode !== null, 5_000, 5);
  await box.startMaster(); // it reconciles state.json before it says it started
  const after = (await readState(box)).launches.find((l) => l.id === pending.id)!;
  expect(after, "the hand-added host at the instance's address is not the launched node").toMatchObject({ status: "pending", nodes: [] });
  expect((await status(box)).capacity.pending).toBe(1);

  // The instance's node registers: the launch takes it, once.
  const dir = path.join(cloud.dir, "nodes", "late-1");
  await fs.mkdir(dir);
  await fs.writeFile(path.join(dir, "node.json"), JSON.stringify({ name: "late-1", instanceId, dir }) + "\n");
  scope.track(spawn(process.execPath, [TCP_NODE, "node", dir], { stdio: "ignore" }));
  const done = await waitFor("the launch to take late-1", async () => (await readState(box)).launches.find((l) => l.id === pending.id && l.status === "done"));
  expect(done.nodes).toEqual(["late-1"]);
  // The claim is saved before the node's hosts.d entry is written: wait for the entry.
  const entry = await waitFor("late-1's hosts.d entry", async () =>
    fs.readFile(path.join(box.inst.dir, "hosts.d", "late-1.json"), "utf8").catch(() => undefined),
  );
  expect(JSON.parse(entry)).toMatchObject({ source: "launched", instance_id: instanceId });
});

test("a master SIGKILLed in the middle of an apply leaves its lock and staged file; the next master removes both and applies at once, not after the lock goes stale (60 s)", async () => {
  const b = await startBackend(scope, "B");
  // A check slow enough to kill the master while it holds the apply lock.
  const box = await startBox(['haproxy.check_command=sleep 1 && haproxy -c -f "$CONFIG"']);
  await waitFor("the start-up apply", async () => (await status(box)).haproxy.applies >= 1);
  await fs.writeFile(path.join(box.inst.dir, "hosts.d", "b.json"), JSON.stringify({ address: "127.0.0.1", port: b.port }) + "\n");
  await waitFor("the apply to stage its file and run the check", async () => (await stagedFiles(box)).length === 1, 10_000, 10);
  const first = box.master;
  process.kill(first.child.pid!, "SIGKILL");
  await waitFor("the master to die", () => first.child.signalCode !== null, 5_000, 5);
  expect(
    await fs.stat(`${box.inst.haproxyConfig}.lock`).then(
      () => true,
      () => false,
    ),
    "the killed master's apply lock is left",
  ).toBe(true);
  expect(await stagedFiles(box)).toHaveLength(1);
  expect(await liveServers(box)).toEqual([]);
  await checkLiveConfig(box);

  const started = Date.now();
  await box.startMaster();
  await waitFor("b in haproxy.cfg", async () => (await liveServers(box)).includes("b"), 15_000, 20);
  const ms = Date.now() - started;
  expect(box.master.log()).toMatch(/removed the HAProxy apply lock a master left/);
  await expectNoStrayStaged(box, "after the restart");
  await waitFor(
    "the apply to end",
    async () =>
      (await status(box)).haproxy.last_error === null &&
      !(await fs.stat(`${box.inst.haproxyConfig}.lock`).then(
        () => true,
        () => false,
      )),
  );
  console.log(`faults-master: apply after a master killed mid-apply: ${ms} ms from the restart (the check alone takes 1 s)`);
});

// ---- 3. HAProxy's reload and check failing -------------------------------------------------

test("a failing reload (HAProxy stopped) and a failing check (a bad template pushed while running) keep the last good haproxy.cfg, show in status and /metrics, and recover by themselves", async () => {
  const [a, b, c] = await Promise.all([startBackend(scope, "A"), startBackend(scope, "B"), startBackend(scope, "C")]);
  const box = await startBox([], (inst) =>
    fs.writeFile(path.join(inst.dir, "hosts.d", "a.json"), JSON.stringify({ address: "127.0.0.1", port: a.port }) + "\n"),
  );
  const writeHost = (name: string, port: number) =>
    fs.writeFile(path.join(box.inst.dir, "hosts.d", `${name}.json`), JSON.stringify({ address: "127.0.0.1", port }) + "\n");
  const served = (name: string) =>
    waitFor(
      `HAProxy to serve ${name}`,
      async () => {
        for (let i = 0; i < 4; i++) if ((await getThrough(box.inst.frontendPort)) === name) return true;
        return false;
      },
      15_000,
      50,
    );
  await waitFor("the start-up apply", async () => (await status(box)).haproxy.applies >= 1);
  await served("A");

  // HAProxy stopped (by its pid): the reload of the next change fails and the previous file is put back.
  const good = await fs.readFile(box.inst.haproxyConfig);
  process.kill(box.haproxyPid, "SIGTERM");
  await waitFor("HAProxy to stop", async () => !(await isProcessOf(box.haproxyPid, box.inst.haproxyConfig)), 10_000);
  await fs.rm(path.join(box.inst.dir, "haproxy.pid"), { force: true });
  await writeHost("b", b.port);
  const failed = await waitFor(
    "status to show the failed reload",
    async () => {
      const s = await status(box);
      return s.haproxy.reload_failures >= 1 ? s : undefined;
    },
    10_000,
    50,
  );
  expect(failed.haproxy.last_error?.code).toBe("AUTOSCALER_HAPROXY_RELOAD_FAILED");
  expect(failed.haproxy.last_error?.message).toMatch(/reload_command failed .*the previous .*haproxy\.cfg was put back/);
  expect(await fs.readFile(box.inst.haproxyConfig), "haproxy.cfg is the last good one, byte for byte").toEqual(good);
  await expectNoStrayStaged(box, "after the failed reload");
  expect(await metrics(box)).toMatch(/^autoscaler_haproxy_reload_failures_total [1-9]/m);
  const cli = await box.inst.cli("status", "--json");
  expect((JSON.parse(cli.stdout) as MasterStatus).haproxy.last_error!.code).toBe("AUTOSCALER_HAPROXY_RELOAD_FAILED");

  // HAProxy back (on the last good file): the retry (every 5 s) applies b without any further change.
  await startHaproxy(scope, box.inst);
  const recovered = await waitFor(
    "the retry to apply b and clear the error",
    async () => {
      const s = await status(box);
      return s.haproxy.last_error === null && (await liveServers(box)).includes("b") ? s : undefined;
    },
    15_000,
    100,
  );
  expect(recovered.haproxy.reloads).toBeGreaterThanOrEqual(1);
  await served("B");
  await checkLiveConfig(box);

  // A bad template pushed while running: the check refuses it; the live file stays byte-identical, even as hosts.d changes.
  const tmpl = path.join(box.inst.dir, "haproxy.cfg.tmpl");
  const template = await fs.readFile(tmpl, "utf8");
  const lastGood = await fs.readFile(box.inst.haproxyConfig);
  const checksBefore = (await status(box)).haproxy.check_failures;
  await fs.writeFile(tmpl, template + "    unknownkeyword on\n");
  await writeHost("c", c.port);
  const refused = await waitFor(
    "status to show the refused check",
    async () => {
      const s = await status(box);
      return s.haproxy.check_failures > checksBefore ? s : undefined;
    },
    10_000,
    50,
  );
  expect(refused.haproxy.last_error?.code).toBe("AUTOSCALER_HAPROXY_CHECK_FAILED");
  expect(refused.haproxy.last_error?.message).toMatch(/HAProxy refused the new configuration/);
  expect(refused.haproxy.last_error?.details.join("\n")).toMatch(/unknown keyword 'unknownkeyword'/);
  expect(refused.haproxy.last_error?.details.join("\n")).toMatch(/line \d+: unknownkeyword on/);
  expect(await fs.readFile(box.inst.haproxyConfig), "haproxy.cfg is the last good one, byte for byte").toEqual(lastGood);
  expect(await liveServers(box)).not.toContain("c");
  await expectNoStrayStaged(box, "after the refused check");
  // Counted in /metrics too (a retry may have failed once more since).
  expect(Number(/^autoscaler_haproxy_check_failures_total (\d+)$/m.exec(await metrics(box))?.[1])).toBeGreaterThanOrEqual(refused.haproxy.check_failures);
  await served("B");

  // The template fixed: the watcher applies it, the error clears, and c is served.
  await fs.writeFile(tmpl, template);
  await waitFor(
    "the fixed template to apply c and clear the error",
    async () => (await status(box)).haproxy.last_error === null && (await liveServers(box)).includes("c"),
    10_000,
    50,
  );
  expect(await liveServers(box)).toEqual(["a", "b", "c"]);
  await served("C");
  await checkLiveConfig(box);
  expect(box.master.child.exitCode).toBeNull();
}, 60_000);

// ---- 4. state_dir on a full file system ----------------------------------------------------

test("with state_dir on a full file system the master records nothing, runs nothing, says so, keeps running, and launches exactly once when space returns", async () => {
  if (process.getuid?.() !== 0) {
    throw new Error("this test mounts a 64 KiB tmpfs as the master's state_dir, which needs root; run the suite as root (CI does: bash .ci/run)");
  }
  const stateDir = await scope.tempDir("autoscaler-full-state-");
  const mounted = await runProcess("mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", stateDir]);
  expect(mounted.code, `mount -t tmpfs failed (the test needs root with CAP_SYS_ADMIN, as .ci/run gives): ${mounted.stderr}`).toBe(0);
  let box: Box | undefined;
  scope.onCleanup(async () => {
    // The master keeps its control socket in the tmpfs: stop it first, or the unmount is refused as busy.
    for (const m of box?.masters ?? []) await stopDaemon(m);
    const umount = await runProcess("umount", [stateDir]);
    if (umount.code !== 0) {
      const lazy = await runProcess("umount", ["-l", stateDir]);
      if (lazy.code !== 0) throw new Error(`cannot unmount the tmpfs at ${stateDir}: ${umount.stderr} ${lazy.stderr}`);
    }
  });

  const cloud = await scope.tempDir("autoscaler-full-cloud-");
  const runsLog = path.join(cloud, "runs.log");
  await fs.writeFile(path.join(cloud, "launch.sh"), `#!/bin/sh\necho "COUNT=$COUNT" >> ${shellQuote(runsLog)}\n`);
  const runs = async () => (await fs.readFile(runsLog, "utf8").catch(() => "")).split("\n").filter(Boolean);
  box = await startBox([
    `machine.scale_up_command=sh ${shellQuote(path.join(cloud, "launch.sh"))}`,
    `master.state_dir=${stateDir}`,
    "master.interval=0.2",
    "scaling.min_nodes=0",
    "machine.launch_timeout=120",
  ]);
  const b = box;
  await waitFor("the start-up apply", async () => (await status(b)).haproxy.applies >= 1 && (await status(b)).haproxy.last_error === null);
  expect(await fs.readdir(stateDir)).toContain("control.sock");

  // Fill the file system (bounded: 64 KiB in 4 KiB writes), then prove a one-byte file no longer fits.
  const filler = path.join(stateDir, "filler");
  const handle = await fs.open(filler, "w");
  let full = false;
  for (let i = 0; i < 64 && !full; i++) {
    await handle.write(Buffer.alloc(4096, 0x66)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOSPC") throw err;
      full = true;
    });
  }
  await handle.close();
  expect(full, "the tmpfs never filled").toBe(true);
  await expect(fs.writeFile(path.join(stateDir, "probe"), "x")).rejects.toMatchObject({ code: "ENOSPC" });
  await fs.rm(path.join(stateDir, "probe"), { force: true });
  const stateBefore = await fs.readFile(path.join(stateDir, "state.json"), "utf8").catch(() => undefined);

  // A manual scale-up is refused with the reason; nothing runs; the master carries on.
  const manual = await b.inst.cli("scale-up", "1");
  expect(manual.code, manual.stdout).toBe(1);
  expect(manual.stderr).toMatch(/the launch could not be recorded in state_dir, so nothing was run/);
  expect(manual.stderr).toMatch(/ENOSPC|no space left/i);
  const afterManual = await status(b);
  const notRecorded = afterManual.events.filter((e) => e.kind === "not_recorded");
  expect(notRecorded).toHaveLength(1);
  expect(notRecorded[0]!.message).toMatch(/not launching 1 node\(s\): the decision could not be recorded in .*state\.json .*nothing runs without a record/);
  expect(afterManual.capacity.pending).toBe(0);
  await sleep(500);
  expect(await runs()).toEqual([]);
  expect(await fs.readFile(path.join(stateDir, "state.json"), "utf8").catch(() => undefined), "state.json as it was").toBe(stateBefore);
  expect(
    (await fs.readdir(stateDir)).filter((f) => f.startsWith(".")),
    "no half-written temp file left",
  ).toEqual([]);
  expect(b.master.child.exitCode).toBeNull();

  // An automatic decision: the master restarted with min_nodes = 1 on the full file system starts, decides, and refuses each tick.
  await stopDaemon(b.master);
  expect(b.masters[0]!.child.exitCode, b.masters[0]!.log().slice(-2000)).toBe(0);
  const ini = await fs.readFile(b.inst.ini, "utf8");
  await fs.writeFile(b.inst.ini, ini.replace(/^min_nodes = .*$/m, "min_nodes = 1"));
  await b.startMaster();
  const refusals = () =>
    b.master
      .log()
      .split("\n")
      .filter((l) => l.startsWith("{") && (JSON.parse(l) as { event?: string }).event === "not_recorded");
  // A refusal every tick (0.2 s), but one log line and one event: the same refusal is logged again only once a minute.
  await waitFor("five automatic decisions refused", async () => (await status(b)).actions.not_recorded >= 5, 10_000, 50);
  expect(refusals()).toHaveLength(1);
  expect(JSON.parse(refusals()[0]!)).toMatchObject({ level: "error", event: "not_recorded", refused: 1 });
  expect(JSON.parse(refusals()[0]!).msg).toMatch(
    /^not launching 1 node\(s\): the decision could not be recorded in .*state\.json \(ENOSPC.*\); nothing runs without a record$/,
  );
  expect(await metrics(b)).toMatch(/^autoscaler_decisions_not_recorded_total ([5-9]|\d\d+)$/m);
  const auto = await status(b);
  expect(auto.events.filter((e) => e.kind === "not_recorded")).toHaveLength(1);
  expect(auto.last_decision?.action).toBe("scale_up");
  expect(auto.last_decision?.reason).toMatch(/below min_nodes/);
  expect(auto.capacity.pending).toBe(0);
  expect(auto.events.some((e) => e.kind === "not_recorded" && /nothing runs without a record/.test(e.message))).toBe(true);
  expect(await runs()).toEqual([]);
  expect(b.master.child.exitCode).toBeNull();

  // Space returns: the next decision is recorded and its launch runs exactly once.
  await fs.rm(filler);
  await waitFor("the launch to run", async () => (await runs()).length > 0, 5_000, 20);
  const refusedTotal = (await status(b)).actions.not_recorded;
  await sleep(1500);
  expect(await runs()).toEqual(["COUNT=1"]);
  const state = JSON.parse(await fs.readFile(path.join(stateDir, "state.json"), "utf8")) as StateFile & { launches: (LaunchRecord & { reason: string })[] };
  expect(state.launches).toHaveLength(1);
  expect(state.launches[0]).toMatchObject({ manual: false, count: 1, status: "pending" });
  expect(state.launches[0]!.reason).toMatch(/below min_nodes/);
  const after = await status(b);
  expect(after.capacity.pending).toBe(1);
  expect((await status(b)).actions.not_recorded, "no refusal once space returned").toBe(refusedTotal);
  expect(refusals()).toHaveLength(1);
  // The first save that works says how many decisions were refused before it.
  const recorded = after.events.find((e) => e.kind === "recorded");
  expect(recorded?.message).toMatch(new RegExp(`^decisions are recorded in .*state\\.json again \\(${refusedTotal} refused while it could not be written\\)$`));
  expect(b.master.child.exitCode).toBeNull();
  console.log(`faults-master: full state_dir: ${refusedTotal} automatic decisions refused (one per tick) before space returned; then 1 launch`);
}, 60_000);
