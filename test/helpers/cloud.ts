/**
 * The fake cloud for scaling tests. Its launch and terminate programs (cloud-node.mjs) are what
 * the tests put in `machine.scale_up_command` / `scale_down_command`; they start and stop REAL
 * nodes on this machine: a web app plus a real `autoscaler agent` on 127.0.0.<10+n>, reaching
 * the master through the proxy's real sshd with one node key that the proxy authorised with
 * `autoscaler authorize-key`. Only the cloud is fake. Everything it started is killed by pid in
 * the scope's cleanup, even when the test failed.
 *
 * A proxy's ini needs the commands before its master starts, and the cloud needs the proxy's
 * keys and token: so either pass the proxy to `createCloud`, or create the cloud first, start the
 * proxy with `cloud.settings`, then `cloud.attach(proxy)`. A launch that runs before `attach`
 * waits for it (up to 15 s), like a slow cloud.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { Proxy } from "./cluster.js";
import { REPO_ROOT, runCli, sleep, type Scope } from "./process.js";
import { makeKeyPair, TEST_SSH_USER } from "./sshd.js";

/** The launch and terminate program. */
export const CLOUD_SCRIPT = path.join(REPO_ROOT, "test", "helpers", "cloud-node.mjs");

/** Where an armed master kill strikes: before the command does anything, after its work but before its output, or just after it exits. */
export type KillPoint = "start" | "end" | "after-exit";

/** How the cloud behaves; unset knobs take cloud-node.mjs's defaults (no delay, start nodes, succeed, print JSON, agent interval 1 s). */
export interface CloudOptions {
  /** Sleep this long before starting nodes: a slow launch. */
  delayMs?: number;
  /** False: print the JSON but start nothing, a launch that never produces a node. */
  startNodes?: boolean;
  /** Launch exits 3 and starts nothing. */
  fail?: boolean;
  /** False: plain text on stdout, so the master can only match "any new node". */
  printJson?: boolean;
  /** The nodes' `agent.interval`, seconds. */
  agentInterval?: number;
  /** Terminate exits 3 and stops nothing. */
  terminateFail?: boolean;
  /** Nodes' agents poll their web app's /app-state as leave_url (key leave) and capacity_url (key slots). */
  appState?: boolean;
}

/** One node as the cloud allocated it. */
export interface CloudNode {
  name: string;
  address: string;
  port: number;
  instanceId: string;
}

/** A node's record in its folder: whether it was started, its pids, when it was terminated. */
export interface NodeRecord extends CloudNode {
  started: boolean;
  webPid?: number;
  agentPid?: number;
  terminatedAt?: number;
}

/** One run of the launch program (logged before its delay and start, so a run killed half-way still shows). */
export interface LaunchRun {
  at: number;
  count: number;
  /** The master's launch id, from the run's join credential. */
  launch?: string;
  nodes: CloudNode[];
  pid: number;
  startNodes: boolean;
  fail: boolean;
  printJson: boolean;
  delayMs: number;
}

/** One run of the terminate program. `stopped`/`killed`: how many of the node's processes it stopped, and how many needed SIGKILL. */
export interface TerminationRun {
  at: number;
  instanceId: string;
  name: string;
  address: string;
  found: boolean;
  fail: boolean;
  pid: number;
  node?: string;
  stopped?: number;
  killed?: number;
}

/** One master kill carried out (or, for "after-exit", scheduled) by a cloud program. */
export interface KillRecord {
  at: number;
  point: KillPoint;
  command: "launch" | "terminate";
  masterPid: number;
  pid: number;
  afterExitMs?: number;
}

/** A fake cloud; see the module comment. */
export interface Cloud {
  dir: string;
  /** Shell command for `machine.scale_up_command` (absolute paths, single-quoted for sh). */
  scaleUpCommand: string;
  /** Shell command for `machine.scale_down_command`. */
  scaleDownCommand: string;
  /** Both commands as `--set` settings for `startProxy` or `autoscaler init`. */
  settings: string[];
  /**
   * Authorise the node key on these proxies' sshd, trust their host keys, point nodes at the first
   * one's master, and set master.pid to its master. `nodeAddress: "own"`: nodes listen on the
   * first non-loopback address of the namespace the launch runs in (proxies in network namespaces).
   */
  attach(proxies: Proxy | Proxy[], options?: { nodeAddress?: "own" }): Promise<void>;
  launches(): Promise<LaunchRun[]>;
  terminations(): Promise<TerminationRun[]>;
  kills(): Promise<KillRecord[]>;
  /** Change knobs for the next runs; `undefined` puts a knob back to its default. */
  setOptions(partial: CloudOptions): Promise<void>;
  /** The master an armed kill strikes (it must be an ancestor of the cloud program, else the program exits 5). Call again after restarting the master. */
  setMasterPid(pid: number): Promise<void>;
  /** SIGKILL the master at `point` of the next launch (once). */
  armKill(point: KillPoint, afterExitMs?: number): Promise<void>;
  /** SIGKILL the master at `point` of the next terminate (once). */
  armTerminateKill(point: KillPoint, afterExitMs?: number): Promise<void>;
  /**
   * Make every node's web app (or only `name`'s) burn CPU in `threads` busy threads (default: one
   * per core, so a burn shows even when other tests share the cores), or stop. A node's own flag
   * wins over the all-nodes one; `burn(false)` without a name removes every flag.
   */
  burn(on: boolean, name?: string, threads?: number): Promise<void>;
  /** What every node's web app (or only `name`'s) answers on /app-state: `text` as it is (JSON or not); undefined: 404. */
  setApp(text: string | undefined, name?: string): Promise<void>;
  /** Names of the nodes that were started (terminated ones too), in launch order. */
  nodeNames(): Promise<string[]>;
  /** Every node allocated, started or not. */
  nodes(): Promise<NodeRecord[]>;
  /** True while the node's web app or agent runs. */
  isRunning(name: string): Promise<boolean>;
  /** Every pid the cloud recorded. */
  pids(): Promise<number[]>;
  /** The cloud's processes still running (from `pids` and a scan of /proc for processes that name the cloud folder). */
  livePids(): Promise<number[]>;
  /** Close the cloud and SIGKILL all its processes by pid; runs in the scope's cleanup. */
  stop(): Promise<void>;
}

const NAME = /^cloud-[1-9][0-9]*$/;
const LOCK_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

/** Quote a word for /bin/sh. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, "utf8");
  } catch (err) {
    // ESRCH: a /proc entry of a process that exited while it was read.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") return undefined;
    throw err;
  }
}

async function readJsonLines<T>(file: string): Promise<T[]> {
  const text = (await readText(file)) ?? "";
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, text);
  await fs.rename(tmp, file);
}

/** Alive means running or sleeping; a zombie counts as gone. */
async function isAlive(pid: number): Promise<boolean> {
  const stat = await readText(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  return state !== "Z" && state !== "X";
}

/** True when `pid` is alive and one of its arguments is `dir` or a path inside it: the cloud's processes all name their folder, so a reused pid is never mistaken for one. */
export async function isProcessOf(pid: number, dir: string): Promise<boolean> {
  if (!(await isAlive(pid))) return false;
  const cmdline = await readText(`/proc/${pid}/cmdline`);
  return cmdline !== undefined && cmdline.split("\0").some((arg) => arg === dir || arg.startsWith(dir + path.sep));
}

/** The same O_EXCL lock file as cloud-node.mjs's `withLock`, held while cloud.json is rewritten. */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(dir, "lock");
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      const handle = await fs.open(lock, "wx");
      await handle.write(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number(await readText(lock));
    if (holder > 0 && !(await isAlive(holder))) {
      await fs.rm(lock, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`could not take ${lock} within ${LOCK_TIMEOUT_MS} ms (held by pid ${holder || "?"})`);
    await sleep(10);
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lock, { force: true });
  }
}

/**
 * Make a fake cloud in a folder of the scope: one shared node key pair, cloud.json with
 * `options`, and, when `proxies` are given, `attach(proxies)`. The scope's cleanup kills every
 * process the cloud started.
 */
export async function createCloud(scope: Scope, proxies?: Proxy | Proxy[], options: CloudOptions = {}): Promise<Cloud> {
  const dir = await scope.tempDir("autoscaler-cloud-");
  await fs.mkdir(path.join(dir, "nodes"));
  makeKeyPair(dir, "node_key");
  await writeAtomic(path.join(dir, "cloud.json"), JSON.stringify(options, null, 2) + "\n");

  const command = (verb: string) => [process.execPath, CLOUD_SCRIPT, verb, dir].map(shellQuote).join(" ");
  const scaleUpCommand = command("launch");
  const scaleDownCommand = command("terminate");

  const updateKnobs = (partial: Record<string, unknown>) =>
    withLock(dir, async () => {
      const file = path.join(dir, "cloud.json");
      const knobs = { ...(JSON.parse((await readText(file)) ?? "{}") as Record<string, unknown>), ...partial };
      for (const key of Object.keys(knobs)) if (knobs[key] === undefined) delete knobs[key];
      await writeAtomic(file, JSON.stringify(knobs, null, 2) + "\n");
    });

  const nodes = async (): Promise<NodeRecord[]> => {
    const names = (await fs.readdir(path.join(dir, "nodes"))).filter((n) => NAME.test(n));
    const records = await Promise.all(
      names.map(async (n) => JSON.parse((await readText(path.join(dir, "nodes", n, "node.json"))) ?? "null") as NodeRecord | null),
    );
    return records.filter((r): r is NodeRecord => r !== null).sort((a, b) => Number(a.name.slice(6)) - Number(b.name.slice(6)));
  };

  const pids = async (): Promise<number[]> =>
    ((await readText(path.join(dir, "pids"))) ?? "")
      .split("\n")
      .filter((l) => /^[1-9][0-9]*$/.test(l))
      .map(Number);

  const livePids = async (): Promise<number[]> => {
    // /proc as well as `pids`: a process forked a moment before its launcher was killed may not be recorded yet.
    const scanned = (await fs.readdir("/proc")).filter((e) => /^[1-9][0-9]*$/.test(e)).map(Number);
    const candidates = [...new Set([...(await pids()), ...scanned])].filter((p) => p !== process.pid);
    const ours = await Promise.all(candidates.map(async (p) => ((await isProcessOf(p, dir)) ? p : undefined)));
    return ours.filter((p): p is number => p !== undefined);
  };

  const stop = async () => {
    // From now on the cloud programs start nothing (see assertOpen in cloud-node.mjs); then kill
    // until a pass finds nothing left, twice in a row, so a launch caught mid-start is also gone.
    await fs.writeFile(path.join(dir, "closed"), "");
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    let quietPasses = 0;
    while (quietPasses < 2) {
      const live = await livePids();
      if (live.length === 0) quietPasses++;
      else quietPasses = 0;
      for (const pid of live) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone meanwhile
        }
      }
      if (live.length > 0 && Date.now() > deadline) throw new Error(`the cloud in ${dir} still has processes after ${STOP_TIMEOUT_MS} ms: ${live.join(" ")}`);
      await sleep(50);
    }
  };
  scope.onCleanup(stop);

  const cloud: Cloud = {
    dir,
    scaleUpCommand,
    scaleDownCommand,
    settings: [`machine.scale_up_command=${scaleUpCommand}`, `machine.scale_down_command=${scaleDownCommand}`],
    attach: async (given, options = {}) => {
      const list = Array.isArray(given) ? given : [given];
      const first = list[0];
      if (!first) throw new Error("attach needs at least one proxy");
      for (const p of list) {
        const line = await runCli(["authorize-key", "--line-only", path.join(dir, "node_key.pub"), "--config", p.inst.ini]);
        if (line.code !== 0) throw new Error(`authorize-key failed: ${line.stderr}`);
        await fs.appendFile(p.sshd.authorizedKeysFile, line.stdout);
      }
      await writeAtomic(path.join(dir, "known_hosts"), list.map((p) => p.sshd.knownHostsLine).join("\n") + "\n");
      if (first.master.child.pid !== undefined && first.master.child.exitCode === null) await cloud.setMasterPid(first.master.child.pid);
      // Last: its presence lets waiting launches go on.
      const setup = {
        servers: list.map((p) => `${p.sshd.address}:${p.sshd.port}`).join(","),
        token: first.token,
        masterListen: `127.0.0.1:${first.masterPort}`,
        sshUser: TEST_SSH_USER,
        ...(options.nodeAddress ? { nodeAddress: options.nodeAddress } : {}),
      };
      await writeAtomic(path.join(dir, "setup.json"), JSON.stringify(setup, null, 2) + "\n");
    },
    launches: () => readJsonLines<LaunchRun>(path.join(dir, "launches.log")),
    terminations: () => readJsonLines<TerminationRun>(path.join(dir, "terminations.log")),
    kills: () => readJsonLines<KillRecord>(path.join(dir, "kills.log")),
    setOptions: (partial) => updateKnobs({ ...partial }),
    setMasterPid: async (pid) => {
      if (!Number.isInteger(pid) || pid <= 1) throw new Error(`not a master pid: ${pid}`);
      await writeAtomic(path.join(dir, "master.pid"), `${pid}\n`);
    },
    armKill: (point, afterExitMs) => updateKnobs({ killMasterAt: point, ...(afterExitMs === undefined ? {} : { killMasterAfterExitMs: afterExitMs }) }),
    armTerminateKill: (point, afterExitMs) =>
      updateKnobs({ killMasterAtTerminate: point, ...(afterExitMs === undefined ? {} : { killMasterAfterExitMs: afterExitMs }) }),
    burn: async (on, name, threads) => {
      if (name !== undefined && !NAME.test(name)) throw new Error(`not a cloud node name: ${name}`);
      if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 16))
        throw new Error(`burn threads must be 1 to 16, not ${threads}`);
      const flag = path.join(dir, name === undefined ? "burn-all" : `burn-${name}`);
      if (on) return writeAtomic(flag, threads === undefined ? "" : String(threads));
      await fs.rm(flag, { force: true });
      if (name === undefined) {
        for (const f of await fs.readdir(dir)) if (/^burn-cloud-[0-9]+$/.test(f)) await fs.rm(path.join(dir, f), { force: true });
      }
    },
    setApp: async (text, name) => {
      if (name !== undefined && !NAME.test(name)) throw new Error(`not a cloud node name: ${name}`);
      const file = path.join(dir, name === undefined ? "app-all.json" : `app-${name}.json`);
      if (text === undefined) await fs.rm(file, { force: true });
      else await writeAtomic(file, text);
    },
    nodeNames: async () => (await nodes()).filter((n) => n.started).map((n) => n.name),
    nodes,
    isRunning: async (name) => {
      const node = (await nodes()).find((n) => n.name === name);
      if (!node?.started) return false;
      const nodeDir = path.join(dir, "nodes", name);
      for (const pid of [node.webPid, node.agentPid]) if (pid !== undefined && (await isProcessOf(pid, nodeDir))) return true;
      return false;
    },
    pids,
    livePids,
    stop,
  };
  if (proxies !== undefined) await cloud.attach(proxies);
  return cloud;
}
