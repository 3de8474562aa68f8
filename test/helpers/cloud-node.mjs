#!/usr/bin/env node
/**
 * The fake cloud of the scaling tests: the program behind the operator's `scale_up_command`
 * and `scale_down_command` in tests. Only the cloud is fake: a launched node is a real web app
 * plus a real `autoscaler agent` on a loopback address of this machine, reaching the master
 * through the proxy's real sshd. Plain Node ESM, no build step; test/helpers/cloud.ts drives it.
 *
 *   node cloud-node.mjs launch <cloudDir>      COUNT from the environment (default 1)
 *   node cloud-node.mjs terminate <cloudDir>   INSTANCE_ID, NODE_NAME, NODE_ADDRESS from the environment
 *   node cloud-node.mjs web <nodeDir>          internal: a node's web app, started by `launch`
 *
 * Values that come from nodes arrive only through the environment (as the SPEC says for the
 * master's commands), never through argv.
 *
 * <cloudDir> holds:
 *   setup.json        where nodes connect (servers, token, master listen); written by cloud.ts
 *                     `attach`. A launch that finds none waits for it (a slow cloud).
 *   node_key(.pub), known_hosts
 *                     the key every node uses (authorised on the proxies) and the proxies' host keys
 *   cloud.json        behaviour knobs (see KNOBS); kill knobs are consumed once, under the lock
 *   master.pid        the master that a kill knob kills (written by the test)
 *   lock, counter     the O_EXCL lock file and the last node number handed out
 *   pids              every process this cloud started (scripts, web apps, agents, killers), one a line
 *   closed            written by the test's cleanup: from then on nothing starts
 *   launches.log, terminations.log, kills.log
 *                     one JSON line per launch run, terminate run, and master kill
 *   app-all.json, app-<name>.json
 *                     what the web apps (all, or that one) answer on /app-state (leave_url and
 *                     capacity_url with the appState knob): the file's bytes as they are; none: 404
 *   burn-all, burn-<name>
 *                     while present, the web apps (all, or that one) burn CPU: as many busy
 *                     threads as the file says, or one per core when it is empty
 *   nodes/<name>/     node.json, autoscaler.ini, node_key, known_hosts, web.pid, agent.pid, *.log
 *
 * Exit codes: 0 done, 1 unexpected failure, 2 bad usage or bad cloud files, 3 the `fail` knob,
 * 4 terminate of an unknown instance, 5 a kill knob whose master.pid is missing or not an
 * ancestor of this process (refused, knob left armed), 6 the cloud was never attached to a proxy,
 * 7 the cloud is closed (the test is cleaning up).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";

const SCRIPT = fileURLToPath(import.meta.url);
const REPO_ROOT = path.resolve(path.dirname(SCRIPT), "../..");
const CLI = path.join(REPO_ROOT, "bin", "autoscaler.js");

/** The knobs cloud.json may hold, with their defaults. Unknown keys are refused (a typo in a test should fail loudly). */
const KNOBS = {
  delayMs: 0, // sleep this long before starting nodes: a slow launch
  startNodes: true, // false: print the JSON but start nothing (a launch that never produces a node)
  fail: false, // launch exits 3 and starts nothing
  printJson: true, // false: plain text on stdout, so the master falls back to "any new node"
  agentInterval: 1, // the nodes' agent.interval, seconds
  terminateFail: false, // terminate exits 3 and stops nothing
  appState: false, // true: the nodes' agents poll their web app's /app-state for leave and slots (leave_url, capacity_url)
  killMasterAt: undefined, // "start" | "end" | "after-exit": SIGKILL the master during a launch (once)
  killMasterAtTerminate: undefined, // the same for a terminate
  killMasterAfterExitMs: 50, // how long after this script exits "after-exit" strikes
};
const KILL_POINTS = ["start", "end", "after-exit"];
const MAX_COUNT = 50;
/** Node numbers map to 127.0.0.<10+n>; past this the addresses run out. */
const MAX_NODE_NUMBER = 240;
/** A web app that outlives its test (a crashed runner) stops itself after this long, and stops its agent. */
const NODE_LIFETIME_MS = 15 * 60_000;
const LOCK_TIMEOUT_MS = 10_000;
const SETUP_TIMEOUT_MS = 15_000;
const READY_TIMEOUT_MS = 10_000;
const TERM_GRACE_MS = 2_000;
const MAX_BURN_THREADS = 16;
const FLAG_POLL_MS = 100;
const INSTANCE_ID = /^i-[0-9a-f]{8,32}$/;
const NODE_NAME = /^[A-Za-z0-9._-]{1,63}$/;
const CLOUD_NAME = /^cloud-([1-9][0-9]*)$/;

/** A failure with the exit code it maps to; main() prints the message on stderr. */
class CloudError extends Error {
  constructor(exitCode, message) {
    super(message);
    this.exitCode = exitCode;
  }
}

// The master may be killed (on purpose) while this script runs; its end of our pipes closes then.
// Writes must not crash the script: a real cloud CLI's launch goes on when its caller dies.
process.stdout.on("error", () => {});
process.stderr.on("error", () => {});

// ---------------------------------------------------------------------------------------------
// Small file and process helpers

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function readText(file) {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    if (err.code === "ENOENT") return undefined;
    throw err;
  }
}

function readJson(file, what) {
  const text = readText(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CloudError(2, `${what} (${file}) is not valid JSON: ${err.message}`);
  }
}

/** Write a file whole or not at all: temp file beside it, then rename. */
function writeAtomic(file, text, mode = 0o644) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, file);
}

/** One JSON line appended with O_APPEND: concurrent runs never interleave inside a line this short. */
function appendJsonLine(file, value) {
  appendFileSync(file, JSON.stringify(value) + "\n");
}

/** /proc/<pid>/stat's state and parent; undefined when the process is gone. The comm field may hold spaces and parens. */
function procStat(pid) {
  const text = readText(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0], ppid: Number(fields[1]) };
}

/** Alive means running or sleeping: a zombie (nobody reaped it yet) counts as gone. */
function isAlive(pid) {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
}

/**
 * True when `pid` is alive and one of its arguments is the folder `marker` or a path inside it.
 * Every process of the cloud names its folder in its argv, so a reused pid is never taken for one.
 */
function isOurs(pid, marker) {
  if (!isAlive(pid)) return false;
  const cmdline = readText(`/proc/${pid}/cmdline`);
  return cmdline !== undefined && cmdline.split("\0").some((arg) => arg === marker || arg.startsWith(marker + path.sep));
}

function signal(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Record a pid this cloud started, so the test's scope can kill it whatever happens. */
function recordPid(cloudDir, pid) {
  appendFileSync(path.join(cloudDir, "pids"), `${pid}\n`);
}

/**
 * Refuse to go on once the test's cleanup has begun. A script records its pid before it checks,
 * and the cleanup writes `closed` before it reads `pids`: so a script either sees `closed` or is
 * seen (and killed) by the cleanup.
 */
function assertOpen(cloudDir) {
  if (existsSync(path.join(cloudDir, "closed"))) throw new CloudError(7, `the cloud ${cloudDir} is closed: its test is cleaning up`);
}

/**
 * Run `fn` holding the cloud's lock: an O_EXCL file holding the holder's pid. A lock whose
 * holder died (killed inside the few microseconds it is held) is broken. Bounded in time.
 */
function withLock(cloudDir, fn) {
  const lock = path.join(cloudDir, "lock");
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      const fd = openSync(lock, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if (err.code !== "EEXIST") throw err;
    }
    const holder = Number(readText(lock));
    // An empty file is a holder between open and write: not stale.
    if (holder > 0 && !isAlive(holder)) {
      try {
        unlinkSync(lock);
      } catch {
        // another waiter broke it first
      }
      continue;
    }
    if (Date.now() > deadline) throw new CloudError(1, `could not take ${lock} within ${LOCK_TIMEOUT_MS} ms (held by pid ${holder || "?"})`);
    sleepSync(10);
  }
  try {
    return fn();
  } finally {
    unlinkSync(lock);
  }
}

// ---------------------------------------------------------------------------------------------
// Knobs and master kills

function validateKnobs(raw, file) {
  if (raw === undefined) return { ...KNOBS };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new CloudError(2, `${file} must hold a JSON object`);
  const problems = [];
  for (const key of Object.keys(raw)) if (!(key in KNOBS)) problems.push(`unknown knob "${key}"`);
  const k = { ...KNOBS, ...raw };
  const int = (key, max) => {
    if (!Number.isInteger(k[key]) || k[key] < 0 || k[key] > max) problems.push(`${key} must be an integer from 0 to ${max}, not ${JSON.stringify(k[key])}`);
  };
  const bool = (key) => {
    if (typeof k[key] !== "boolean") problems.push(`${key} must be true or false, not ${JSON.stringify(k[key])}`);
  };
  const point = (key) => {
    if (k[key] !== undefined && !KILL_POINTS.includes(k[key])) problems.push(`${key} must be one of ${KILL_POINTS.join(", ")}, not ${JSON.stringify(k[key])}`);
  };
  int("delayMs", 600_000);
  int("killMasterAfterExitMs", 5_000);
  bool("startNodes");
  bool("fail");
  bool("printJson");
  bool("terminateFail");
  bool("appState");
  point("killMasterAt");
  point("killMasterAtTerminate");
  if (typeof k.agentInterval !== "number" || !(k.agentInterval > 0 && k.agentInterval <= 60))
    problems.push(`agentInterval must be a number of seconds above 0 and up to 60, not ${JSON.stringify(k.agentInterval)}`);
  if (problems.length > 0) throw new CloudError(2, `${file}: ${problems.join("; ")}`);
  return k;
}

/** The pids from this process's parent up to pid 1 (bounded). */
function ancestors() {
  const out = [];
  let pid = process.ppid;
  for (let i = 0; i < 64 && pid > 1; i++) {
    out.push(pid);
    pid = procStat(pid)?.ppid ?? 0;
  }
  return out;
}

/**
 * The master to kill: the pid in master.pid, which must be an ancestor of this script (the
 * master runs `/bin/sh -c`, which may or may not exec node). Anything else is refused, so a
 * stale or wrong master.pid never kills an unrelated process.
 */
function masterToKill(cloudDir) {
  const file = path.join(cloudDir, "master.pid");
  const text = readText(file)?.trim();
  if (text === undefined) throw new CloudError(5, `a master kill is armed but ${file} is missing; the test must call setMasterPid first`);
  if (!/^[1-9][0-9]*$/.test(text)) throw new CloudError(5, `${file} must hold a process id, not ${JSON.stringify(text.slice(0, 40))}`);
  const pid = Number(text);
  if (!ancestors().includes(pid))
    throw new CloudError(5, `refusing to kill pid ${pid} from ${file}: it is not an ancestor of this script (ancestors: ${ancestors().join(" ")})`);
  return pid;
}

/**
 * Read cloud.json under the lock; when the kill knob `killKey` is armed, check the master pid and
 * remove the knob from the file (so a restarted master is not killed again). Returns the knobs
 * as they were, and the kill to carry out, if any.
 */
function takeKnobs(cloudDir, killKey) {
  const file = path.join(cloudDir, "cloud.json");
  return withLock(cloudDir, () => {
    const raw = readJson(file, "the cloud's knobs");
    const knobs = validateKnobs(raw, file);
    const point = knobs[killKey];
    if (point === undefined) return { knobs };
    const masterPid = masterToKill(cloudDir);
    const rest = { ...raw };
    delete rest[killKey];
    writeAtomic(file, JSON.stringify(rest, null, 2) + "\n");
    return { knobs, kill: { point, masterPid, afterExitMs: knobs.killMasterAfterExitMs } };
  });
}

/** Carry out the armed kill when this is its point (once); log it to kills.log. */
function maybeKillMaster(cloudDir, kill, point, command) {
  if (!kill || kill.point !== point || kill.done) return;
  kill.done = true;
  const record = { at: Date.now(), point, command, masterPid: kill.masterPid, pid: process.pid };
  if (point === "after-exit") {
    // A detached shell strikes after this script has exited. Its $0 is the cloud folder, so the
    // scope's cleanup recognises it among `pids`; its output goes nowhere so the master's pipes close.
    const killer = spawn("/bin/sh", ["-c", 'sleep "$1"; kill -9 "$2"', cloudDir, (kill.afterExitMs / 1000).toFixed(3), String(kill.masterPid)], {
      detached: true,
      stdio: "ignore",
    });
    recordPid(cloudDir, killer.pid);
    killer.unref();
    appendJsonLine(path.join(cloudDir, "kills.log"), { ...record, afterExitMs: kill.afterExitMs });
    return;
  }
  // Logged first: a test reads kills.log as soon as the master is dead, before this script's next step.
  appendJsonLine(path.join(cloudDir, "kills.log"), record);
  signal(kill.masterPid, "SIGKILL");
}

// ---------------------------------------------------------------------------------------------
// launch

function parseCount(text) {
  if (text === undefined || text === "") return 1;
  if (!/^[1-9][0-9]*$/.test(text) || Number(text) > MAX_COUNT)
    throw new CloudError(2, `COUNT must be a whole number from 1 to ${MAX_COUNT}, not ${JSON.stringify(text.slice(0, 40))}`);
  return Number(text);
}

/** Where nodes connect; waits (bounded) for cloud.ts `attach` to write it, like a cloud that is slow to come up. */
async function waitForSetup(cloudDir) {
  const file = path.join(cloudDir, "setup.json");
  const deadline = Date.now() + SETUP_TIMEOUT_MS;
  for (;;) {
    const setup = readJson(file, "the cloud's setup");
    if (setup !== undefined) {
      const ok =
        typeof setup.servers === "string" &&
        /^[0-9A-Za-z.:,[\]-]+$/.test(setup.servers) &&
        typeof setup.token === "string" &&
        /^[A-Za-z0-9_-]+$/.test(setup.token) &&
        typeof setup.masterListen === "string" &&
        /^127\.0\.0\.1:[0-9]{1,5}$/.test(setup.masterListen) &&
        typeof setup.sshUser === "string" &&
        NODE_NAME.test(setup.sshUser);
      if (!ok) throw new CloudError(2, `${file} must hold servers, token, masterListen (127.0.0.1:PORT) and sshUser`);
      if (setup.nodeAddress !== undefined && setup.nodeAddress !== "own") throw new CloudError(2, `${file}: nodeAddress may only be "own"`);
      return setup;
    }
    if (Date.now() > deadline) throw new CloudError(6, `the cloud was never attached to a proxy (${file} did not appear within ${SETUP_TIMEOUT_MS} ms)`);
    await sleep(50);
  }
}

/** A TCP port that was free on `address` a moment ago. */
function freePort(address) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, address, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The address nodes get when the setup says `nodeAddress: "own"`: the first non-loopback IPv4
 * address of the network namespace this program runs in (a proxy's, in the netns tests), so
 * every proxy on the test network reaches them.
 */
function ownAddress() {
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  throw new CloudError(1, "nodeAddress is own, but this namespace has no non-loopback IPv4 address");
}

/** Hand out `count` node numbers under the lock, and make each node's folder with its node.json. */
async function allocateNodes(cloudDir, count, nodeAddress) {
  const numbers = withLock(cloudDir, () => {
    const counterFile = path.join(cloudDir, "counter");
    const text = readText(counterFile)?.trim() ?? "0";
    if (!/^[0-9]+$/.test(text)) throw new CloudError(2, `${counterFile} must hold a number, not ${JSON.stringify(text.slice(0, 40))}`);
    const last = Number(text);
    if (last + count > MAX_NODE_NUMBER)
      throw new CloudError(1, `out of loopback addresses: ${last} nodes made, ${count} more asked, at most ${MAX_NODE_NUMBER}`);
    writeAtomic(counterFile, `${last + count}\n`);
    return Array.from({ length: count }, (_, i) => last + 1 + i);
  });
  const nodes = [];
  for (const n of numbers) {
    const address = nodeAddress === "own" ? ownAddress() : `127.0.0.${10 + n}`;
    const node = { name: `cloud-${n}`, address, port: 0, instanceId: `i-${randomBytes(8).toString("hex")}` };
    node.port = await freePort(node.address);
    // Not recursive: if the test already removed the cloud folder, nothing is recreated.
    const dir = path.join(cloudDir, "nodes", node.name);
    mkdirSync(dir);
    writeAtomic(path.join(dir, "node.json"), JSON.stringify({ ...node, started: false }, null, 2) + "\n");
    nodes.push(node);
  }
  return nodes;
}

/** The environment a node's processes get: the caller's, minus what only the master's commands should see. */
function nodeEnvironment() {
  const env = { ...process.env };
  for (const key of [
    "COUNT",
    "INSTANCE_ID",
    "NODE_NAME",
    "NODE_ADDRESS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AUTOSCALER_CONFIG",
    "AUTOSCALER_JOIN_CREDENTIAL",
  ])
    delete env[key];
  return env;
}

/** Run a program to completion (bounded), collecting its output. */
function run(file, args, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env: nodeEnvironment() });
    let out = "";
    child.stdout.on("data", (b) => (out += b));
    child.stderr.on("data", (b) => (out += b));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Start one process that outlives this script: its own session, output to a log file in the node folder. */
function startDetached(cloudDir, dir, logName, args) {
  assertOpen(cloudDir);
  const fd = openSync(path.join(dir, logName), "a");
  try {
    const child = spawn(process.execPath, args, { cwd: dir, detached: true, stdio: ["ignore", fd, fd], env: nodeEnvironment() });
    recordPid(cloudDir, child.pid);
    return child;
  } finally {
    closeSync(fd);
  }
}

/**
 * Bring up one node the way an image's user-data would: the ini written by the real
 * `autoscaler init`, the web app (waited for until it listens), then the agent.
 */
async function startNode(cloudDir, setup, knobs, node) {
  const dir = path.join(cloudDir, "nodes", node.name);
  copyFileSync(path.join(cloudDir, "node_key"), path.join(dir, "node_key"));
  copyFileSync(path.join(cloudDir, "known_hosts"), path.join(dir, "known_hosts"));
  const ini = path.join(dir, "autoscaler.ini");
  const settings = [
    `haproxy.servers=${setup.servers}`,
    `haproxy.ssh_command=ssh -i node_key ${setup.sshUser}@$HOST`,
    "haproxy.known_hosts=known_hosts",
    // As a launch template's user-data would: the launch's join credential, never the cluster secret.
    ...(process.env.AUTOSCALER_JOIN_CREDENTIAL ? [`agent.credential=${process.env.AUTOSCALER_JOIN_CREDENTIAL}`] : [`master.token=${setup.token}`]),
    `master.listen=${setup.masterListen}`,
    "master.metrics_listen=",
    "master.state_dir=state",
    `agent.name=${node.name}`,
    `agent.address=${node.address}`,
    `agent.port=${node.port}`,
    `agent.instance_id=${node.instanceId}`,
    `agent.interval=${knobs.agentInterval}`,
    "agent.cpu_source=pid:web.pid",
    ...(knobs.appState
      ? [
          `agent.leave_url=http://${node.address}:${node.port}/app-state`,
          "agent.leave_key=leave",
          `agent.capacity_url=http://${node.address}:${node.port}/app-state`,
          "agent.capacity_key=slots",
        ]
      : []),
  ];
  const init = await run(process.execPath, [CLI, "init", "--config", ini, ...settings.flatMap((s) => ["--set", s])]);
  if (init.code !== 0) throw new CloudError(1, `autoscaler init for ${node.name} failed (exit ${init.code}): ${init.out.trim()}`);

  const web = startDetached(cloudDir, dir, "web.log", [SCRIPT, "web", dir]);
  const webPidFile = path.join(dir, "web.pid");
  let webExit;
  web.once("exit", (code, sig) => (webExit = sig ?? code));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!existsSync(webPidFile)) {
    if (webExit !== undefined) throw new CloudError(1, `the web app of ${node.name} exited (${webExit}) before listening; see ${path.join(dir, "web.log")}`);
    if (Date.now() > deadline) {
      signal(web.pid, "SIGKILL");
      throw new CloudError(1, `the web app of ${node.name} did not listen on ${node.address}:${node.port} within ${READY_TIMEOUT_MS} ms`);
    }
    await sleep(20);
  }
  web.unref();

  const agent = startDetached(cloudDir, dir, "agent.log", [CLI, "agent", "--config", ini, "--log-level", "debug"]);
  agent.unref();
  writeAtomic(path.join(dir, "agent.pid"), `${agent.pid}\n`);
  writeAtomic(path.join(dir, "node.json"), JSON.stringify({ ...node, started: true, webPid: web.pid, agentPid: agent.pid }, null, 2) + "\n");
}

/**
 * Run a launch or terminate body between the kill points: "start" before anything, "end" after
 * the work and before the output (or the error message), "after-exit" as the script leaves.
 * The body returns what to print on stdout.
 */
async function betweenKillPoints(cloudDir, command, killKey, body) {
  recordPid(cloudDir, process.pid);
  assertOpen(cloudDir);
  const { knobs, kill } = takeKnobs(cloudDir, killKey);
  maybeKillMaster(cloudDir, kill, "start", command);
  let output;
  try {
    output = await body(knobs);
  } catch (err) {
    maybeKillMaster(cloudDir, kill, "end", command);
    maybeKillMaster(cloudDir, kill, "after-exit", command);
    throw err;
  }
  maybeKillMaster(cloudDir, kill, "end", command);
  process.stdout.write(output);
  maybeKillMaster(cloudDir, kill, "after-exit", command);
}

function launch(cloudDir) {
  const at = Date.now();
  return betweenKillPoints(cloudDir, "launch", "killMasterAt", async (knobs) => {
    const count = parseCount(process.env.COUNT);
    const log = path.join(cloudDir, "launches.log");
    // The launch id from the join credential (asc1.launch.<id>.<count>.<expires>.<mac>), to tie this run to the master's record.
    const launchId = /^asc1\.launch\.([A-Za-z0-9-]{1,64})\./.exec(process.env.AUTOSCALER_JOIN_CREDENTIAL ?? "")?.[1];
    const entry = {
      at,
      count,
      pid: process.pid,
      launch: launchId,
      startNodes: knobs.startNodes,
      fail: knobs.fail,
      printJson: knobs.printJson,
      delayMs: knobs.delayMs,
    };
    if (knobs.fail) {
      appendJsonLine(log, { ...entry, nodes: [] });
      throw new CloudError(3, `launch of ${count} node(s) failed: the cloud is set to fail (cloud.json "fail": true); nothing was started`);
    }
    const setup = await waitForSetup(cloudDir);
    const nodes = await allocateNodes(cloudDir, count, setup.nodeAddress);
    // Logged before the delay and the start: a run that is killed half-way still counts as a run.
    appendJsonLine(log, { ...entry, nodes });
    if (knobs.delayMs > 0) await sleep(knobs.delayMs);
    if (knobs.startNodes) for (const node of nodes) await startNode(cloudDir, setup, knobs, node);
    if (!knobs.printJson) {
      // No "{" anywhere: the master must find no JSON here.
      return nodes.map((n) => `launched ${n.name} (${n.instanceId}) at ${n.address}:${n.port}\n`).join("");
    }
    // The shape of `aws ec2 run-instances` output (its real output has many more fields).
    return JSON.stringify({ Instances: nodes.map((n) => ({ InstanceId: n.instanceId, PrivateIpAddress: n.address })) }, null, 4) + "\n";
  });
}

// ---------------------------------------------------------------------------------------------
// terminate

/** Every node this cloud allocated, from the node folders. */
function readNodes(cloudDir) {
  const root = path.join(cloudDir, "nodes");
  const names = existsSync(root) ? readdirSync(root).filter((n) => CLOUD_NAME.test(n)) : [];
  return names.map((name) => ({ dir: path.join(root, name), ...readJson(path.join(root, name, "node.json"), `node ${name}`) }));
}

/** SIGTERM, then SIGKILL after the grace period; returns once all are gone (bounded). */
async function stopProcesses(pids, marker) {
  const ours = pids.filter((pid) => Number.isInteger(pid) && pid > 0 && isOurs(pid, marker));
  for (const pid of ours) signal(pid, "SIGTERM");
  const deadline = Date.now() + TERM_GRACE_MS;
  while (ours.some(isAlive) && Date.now() < deadline) await sleep(25);
  const stubborn = ours.filter(isAlive);
  for (const pid of stubborn) signal(pid, "SIGKILL");
  const hardDeadline = Date.now() + 2_000;
  while (ours.some(isAlive) && Date.now() < hardDeadline) await sleep(25);
  return { stopped: ours.length, killed: stubborn.length };
}

function terminate(cloudDir) {
  const at = Date.now();
  return betweenKillPoints(cloudDir, "terminate", "killMasterAtTerminate", async (knobs) => {
    const instanceId = process.env.INSTANCE_ID ?? "";
    const name = process.env.NODE_NAME ?? "";
    const address = process.env.NODE_ADDRESS ?? "";
    const problems = [];
    if (instanceId !== "" && !INSTANCE_ID.test(instanceId))
      problems.push(`INSTANCE_ID must look like i-0123456789abcdef0, not ${JSON.stringify(instanceId.slice(0, 80))}`);
    if (name !== "" && !NODE_NAME.test(name)) problems.push(`NODE_NAME must match [A-Za-z0-9._-]{1,63}, not ${JSON.stringify(name.slice(0, 80))}`);
    if (address !== "" && !/^[0-9a-fA-F.:]{2,45}$/.test(address))
      problems.push(`NODE_ADDRESS must be an IP address, not ${JSON.stringify(address.slice(0, 80))}`);
    if (instanceId === "" && name === "") problems.push("INSTANCE_ID or NODE_NAME must be set");
    if (problems.length > 0) throw new CloudError(2, problems.join("; "));

    const log = path.join(cloudDir, "terminations.log");
    const record = { at, instanceId, name, address, pid: process.pid };
    if (knobs.terminateFail) {
      appendJsonLine(log, { ...record, found: false, fail: true });
      throw new CloudError(3, `terminate of ${instanceId || name} failed: the cloud is set to fail (cloud.json "terminateFail": true); nothing was stopped`);
    }
    const nodes = readNodes(cloudDir);
    const node = (instanceId && nodes.find((n) => n.instanceId === instanceId)) || (name && nodes.find((n) => n.name === name)) || undefined;
    if (!node) {
      appendJsonLine(log, { ...record, found: false, fail: false });
      throw new CloudError(4, `no instance ${instanceId || "-"} (node ${name || "-"}) in this cloud; nothing was stopped`);
    }
    // The agent first, so its tunnel drops before its web app stops answering.
    const stopped = await stopProcesses([node.agentPid, node.webPid], node.dir);
    const { dir, ...info } = node;
    writeAtomic(path.join(dir, "node.json"), JSON.stringify({ ...info, terminatedAt: Date.now() }, null, 2) + "\n");
    appendJsonLine(log, { ...record, found: true, fail: false, node: node.name, ...stopped });
    // The shape of `aws ec2 terminate-instances` output.
    const out = {
      TerminatingInstances: [{ InstanceId: node.instanceId, CurrentState: { Code: 32, Name: "shutting-down" }, PreviousState: { Code: 16, Name: "running" } }],
    };
    return JSON.stringify(out, null, 4) + "\n";
  });
}

// ---------------------------------------------------------------------------------------------
// web: one node's web app

/**
 * A burning thread: busy while the shared "threads wanted" number is above its index, asleep
 * on that number otherwise. CommonJS text for `new Worker(..., { eval: true })`.
 */
const BURN_WORKER = `
const { workerData } = require("node:worker_threads");
const wanted = new Int32Array(workerData.wanted);
for (;;) {
  const now = Atomics.load(wanted, 0);
  if (now > workerData.index) {
    const until = Date.now() + 50;
    while (Date.now() < until) {} // busy on purpose
  } else {
    Atomics.wait(wanted, 0, now);
  }
}`;

/** How many threads a burn flag asks for: its content, or one per core when empty; 0 without a flag. The node's own flag wins over burn-all. */
function burnThreads(flags) {
  for (const flag of flags) {
    const text = readText(flag);
    if (text === undefined) continue;
    const n = text.trim() === "" ? os.availableParallelism() : Number(text.trim());
    return Number.isInteger(n) && n >= 1 ? Math.min(n, MAX_BURN_THREADS) : os.availableParallelism();
  }
  return 0;
}

/**
 * Answer every request with the node's name, and burn CPU in worker threads while a burn flag
 * exists: the main thread keeps serving, and /proc/<pid>/stat (the agent's pid: source) counts
 * every thread. Several threads per node keep a burn visible when other tests share the cores.
 * Writes web.pid once listening (the launcher waits for it). Stops itself, and its agent, when
 * its folder disappears or after NODE_LIFETIME_MS: a backstop for a test runner that died
 * before its cleanup.
 */
async function serveWeb(dir) {
  const name = path.basename(dir);
  const cloudDir = path.dirname(path.dirname(dir));
  if (!CLOUD_NAME.test(name) || path.basename(path.dirname(dir)) !== "nodes") throw new CloudError(2, `not a cloud node folder: ${dir}`);
  const node = readJson(path.join(dir, "node.json"), `node ${name}`);
  if (!node) throw new CloudError(2, `no node.json in ${dir}`);
  const server = http.createServer((req, res) => {
    if (req.url === "/app-state") {
      // What the app says about itself: app-<name>.json, else app-all.json, as written (bad JSON on purpose too).
      const text = readText(path.join(cloudDir, `app-${name}.json`)) ?? readText(path.join(cloudDir, "app-all.json"));
      res.writeHead(text === undefined ? 404 : 200, { "content-type": "application/json" });
      res.end(text ?? "{}");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(node.name);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(node.port, node.address, resolve);
  });
  writeAtomic(path.join(dir, "web.pid"), `${process.pid}\n`);

  const flags = [path.join(cloudDir, `burn-${name}`), path.join(cloudDir, "burn-all")];
  const wanted = new Int32Array(new SharedArrayBuffer(4));
  const workers = [];
  const started = Date.now();
  let agentPid;
  setInterval(() => {
    agentPid ??= Number(readText(path.join(dir, "agent.pid"))) || undefined;
    if (!existsSync(dir) || Date.now() - started > NODE_LIFETIME_MS) {
      if (agentPid && isOurs(agentPid, dir)) signal(agentPid, "SIGKILL");
      process.exit(0);
    }
    const threads = burnThreads(flags);
    while (workers.length < threads) workers.push(new Worker(BURN_WORKER, { eval: true, workerData: { wanted: wanted.buffer, index: workers.length } }));
    if (Atomics.load(wanted, 0) !== threads) {
      Atomics.store(wanted, 0, threads);
      Atomics.notify(wanted, 0);
    }
  }, FLAG_POLL_MS);
}

// ---------------------------------------------------------------------------------------------

async function main(argv) {
  const [command, dirArg] = argv;
  const usage = "usage: cloud-node.mjs launch|terminate <cloudDir>";
  if (argv.length !== 2 || !["launch", "terminate", "web"].includes(command)) throw new CloudError(2, usage);
  const dir = path.resolve(dirArg);
  if (command === "web") return serveWeb(dir);
  if (!existsSync(path.join(dir, "cloud.json"))) throw new CloudError(2, `${dir} is not a cloud folder (no cloud.json)`);
  return command === "launch" ? launch(dir) : terminate(dir);
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`cloud-node: ${err instanceof CloudError ? err.message : err.stack}\n`);
  process.exitCode = err instanceof CloudError ? err.exitCode : 1;
});
