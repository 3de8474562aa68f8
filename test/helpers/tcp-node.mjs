#!/usr/bin/env node
/**
 * A light fake cloud for the master's fault tests (test/faults-master.test.ts): the program
 * behind `scale_up_command` and `scale_down_command` there. A launched node is one small real
 * process that serves HTTP on 127.0.0.1 and speaks the agent protocol (`hello` with the token,
 * then a `sample` every 250 ms) over plain TCP straight to the master's loopback port, where a
 * real agent would come through the proxy's sshd. What those tests prove is the master's own
 * durability under SIGKILL, which does not depend on how the bytes reach its port; the SSH
 * path is covered with real agents by crash-safety.test.ts. A node costs ~50 ms to start, so
 * fifty scale cycles fit in a minute.
 *
 *   node tcp-node.mjs launch <cloudDir>      COUNT from the environment (default 1)
 *   node tcp-node.mjs terminate <cloudDir>   INSTANCE_ID from the environment
 *   node tcp-node.mjs node <nodeDir>         internal: one node, started detached by `launch`
 *
 * <cloudDir> holds setup.json ({ "masterPort", "token" }, written by the test; or "masterPorts", a
 * list, for several masters, each reached on its own connection, and "joinCredential": true for
 * nodes that register with their launch's AUTOSCALER_JOIN_CREDENTIAL and then with the node
 * credential a master hands them in welcome, as real agents do), closed (written
 * by the test's cleanup: from then on nothing starts), launches.log and terminations.log (one
 * JSON line per run, written before the run does anything, so a run cut short still shows), and
 * nodes/<name>/ with node.json, node.pid and node.log. Node names are handed out by mkdir(2),
 * which is atomic, so concurrent launches never share one.
 *
 * Exit codes: 0 done, 1 unexpected failure, 2 bad usage, 4 terminate of an unknown instance,
 * 7 the cloud is closed.
 */
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(import.meta.url);
const MAX_NODES = 5000;
const MAX_COUNT = 20;
const READY_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 3_000;
/** A node that outlives its test (a crashed runner) stops itself after this long, or when its folder goes. */
const NODE_LIFETIME_MS = 10 * 60_000;
const SAMPLE_MS = 250;
const RECONNECT_MS = 100;
const RECONNECT_BACKOFF_CAP_MS = 2000;

class CloudError extends Error {
  constructor(exitCode, message) {
    super(message);
    this.exitCode = exitCode;
  }
}

// The master may be SIGKILLed while this runs; writes to its closed pipes must not end the run.
process.stdout.on("error", () => {});
process.stderr.on("error", () => {});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function readText(file) {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    if (err.code === "ENOENT" || err.code === "ESRCH") return undefined;
    throw err;
  }
}

function writeAtomic(file, text) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** True when `pid` runs and names `dir` in its arguments (so a reused pid is never taken for a node). */
function isNodeProcess(pid, dir) {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  if (state === "Z" || state === "X") return false;
  return (readText(`/proc/${pid}/cmdline`) ?? "").split("\0").includes(dir);
}

function assertOpen(cloudDir) {
  if (existsSync(path.join(cloudDir, "closed"))) throw new CloudError(7, "the cloud is closed (the test is cleaning up); nothing started");
}

// ---------------------------------------------------------------------------------------------

async function launch(cloudDir) {
  assertOpen(cloudDir);
  const count = Number(process.env.COUNT ?? "1");
  if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT)
    throw new CloudError(2, `COUNT must be 1-${MAX_COUNT}, not ${JSON.stringify(process.env.COUNT)}`);
  const nodes = [];
  for (let n = 1; n <= MAX_NODES && nodes.length < count; n++) {
    const name = `tcp-${n}`;
    const dir = path.join(cloudDir, "nodes", name);
    try {
      mkdirSync(dir);
    } catch (err) {
      if (err.code === "EEXIST") continue;
      throw err;
    }
    const node = { name, instanceId: `i-${n.toString(16).padStart(17, "0")}`, dir };
    writeAtomic(path.join(dir, "node.json"), JSON.stringify(node) + "\n");
    nodes.push(node);
  }
  if (nodes.length < count) throw new CloudError(1, `no free node number up to ${MAX_NODES}`);
  appendFileSync(
    path.join(cloudDir, "launches.log"),
    JSON.stringify({
      at: Date.now(),
      pid: process.pid,
      count,
      // The master's launch id, from the join credential (asc1.launch.<id>.…), to tie this run to its record.
      launch: /^asc1\.launch\.([A-Za-z0-9-]{1,64})\./.exec(process.env.AUTOSCALER_JOIN_CREDENTIAL ?? "")?.[1],
      nodes: nodes.map(({ name, instanceId }) => ({ name, instanceId })),
    }) + "\n",
  );
  for (const node of nodes) {
    const log = openSync(path.join(node.dir, "node.log"), "a");
    const child = spawn(process.execPath, [SCRIPT, "node", node.dir], { detached: true, stdio: ["ignore", log, log] });
    child.unref();
  }
  // Like `aws ec2 run-instances`, answer once the instances exist (here: listening), not once they registered.
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!nodes.every((n) => existsSync(path.join(n.dir, "node.pid")))) {
    if (Date.now() > deadline) throw new CloudError(1, `nodes did not start within ${READY_TIMEOUT_MS} ms`);
    await sleep(10);
  }
  const out = { Instances: nodes.map((n) => ({ InstanceId: n.instanceId, PrivateIpAddress: "127.0.0.1", State: { Code: 0, Name: "pending" } })) };
  process.stdout.write(JSON.stringify(out, null, 4) + "\n");
}

async function terminate(cloudDir) {
  const instanceId = process.env.INSTANCE_ID ?? "";
  const names = readdirSync(path.join(cloudDir, "nodes"));
  const node = names.map((n) => JSON.parse(readText(path.join(cloudDir, "nodes", n, "node.json")) ?? "null")).find((n) => n?.instanceId === instanceId);
  appendFileSync(
    path.join(cloudDir, "terminations.log"),
    JSON.stringify({ at: Date.now(), pid: process.pid, instanceId, name: node?.name ?? null, nodeName: process.env.NODE_NAME ?? "" }) + "\n",
  );
  if (!node) throw new CloudError(4, `no instance ${JSON.stringify(instanceId)} in this cloud; nothing was stopped`);
  const pid = Number(readText(path.join(node.dir, "node.pid")));
  if (pid > 1 && isNodeProcess(pid, node.dir)) {
    process.kill(pid, "SIGKILL");
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (isNodeProcess(pid, node.dir)) {
      if (Date.now() > deadline) throw new CloudError(1, `node ${node.name} (pid ${pid}) still runs ${STOP_TIMEOUT_MS} ms after SIGKILL`);
      await sleep(10);
    }
  }
  writeAtomic(path.join(node.dir, "terminated"), `${Date.now()}\n`);
  // terminated.log: one line once the node is gone (a run cut short before this point did not terminate it).
  appendFileSync(path.join(cloudDir, "terminated.log"), JSON.stringify({ at: Date.now(), pid: process.pid, instanceId, name: node.name }) + "\n");
  process.stdout.write(
    JSON.stringify({ TerminatingInstances: [{ InstanceId: instanceId, CurrentState: { Code: 32, Name: "shutting-down" } }] }, null, 4) + "\n",
  );
}

/** One node: an HTTP server answering its name, and an agent-protocol client that reconnects after any break. */
async function runNode(dir) {
  const node = JSON.parse(readText(path.join(dir, "node.json")));
  const cloudDir = path.dirname(path.dirname(dir));
  const setup = JSON.parse(readText(path.join(cloudDir, "setup.json")));
  const server = http.createServer((req, res) => res.end(node.name));
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = server.address().port;
  writeAtomic(path.join(dir, "node.pid"), `${process.pid}\n`);
  const started = Date.now();
  // The backstop: its folder removed by the test's cleanup, or a lifetime passed.
  setInterval(() => {
    if (!existsSync(dir) || Date.now() - started > NODE_LIFETIME_MS) process.exit(0);
  }, 500);

  const hello = {
    type: "hello",
    version: 1,
    token: (setup.joinCredential && process.env.AUTOSCALER_JOIN_CREDENTIAL) || setup.token,
    name: node.name,
    address: "127.0.0.1",
    port,
    instance_id: node.instanceId,
    agent_version: "tcp-node",
    facts: { cores: 1, memory_bytes: 1 << 30 },
  };
  const ports = Array.isArray(setup.masterPorts) ? setup.masterPorts : [setup.masterPort];
  await Promise.all(ports.map((port) => reportTo(port, hello, started)));
  process.exit(0);
}

/**
 * Keep one agent-protocol connection to the master on `port`, reconnecting after any break: at
 * once after a connection that was welcomed, else after a delay that doubles up to 2 s (as a real
 * agent backs off), so a refused node (a terminated one still running) does not keep its masters busy.
 */
async function reportTo(masterPort, hello, started) {
  let delay = RECONNECT_MS;
  while (Date.now() - started < NODE_LIFETIME_MS) {
    let welcomed = false;
    await new Promise((resolve) => {
      const socket = net.createConnection({ host: "127.0.0.1", port: masterPort });
      let timer;
      let buf = "";
      socket.setNoDelay(true);
      socket.on("connect", () => socket.write(JSON.stringify(hello) + "\n"));
      socket.on("data", (b) => {
        buf += b.toString();
        if (timer === undefined && buf.includes('"welcome"')) {
          welcomed = true;
          // Keep the node credential a welcome hands out, for the next hello to any master.
          const welcome = buf.split("\n").find((l) => l.includes('"welcome"'));
          try {
            const credential = JSON.parse(welcome).credential;
            if (typeof credential === "string") hello.token = credential;
          } catch {
            // a partial line: the next data completes it
          }
          const sample = () => socket.write(JSON.stringify({ type: "sample", time: Date.now(), cpu: 1 }) + "\n");
          sample();
          timer = setInterval(sample, SAMPLE_MS);
        }
      });
      socket.on("error", () => undefined);
      socket.on("close", () => {
        clearInterval(timer);
        resolve();
      });
    });
    delay = welcomed ? RECONNECT_MS : Math.min(RECONNECT_BACKOFF_CAP_MS, delay * 2);
    await sleep(delay);
  }
}

async function main(argv) {
  const [command, dirArg] = argv;
  if (argv.length !== 2 || !["launch", "terminate", "node"].includes(command)) throw new CloudError(2, "usage: tcp-node.mjs launch|terminate <cloudDir>");
  const dir = path.resolve(dirArg);
  if (command === "node") return runNode(dir);
  return command === "launch" ? launch(dir) : terminate(dir);
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`tcp-node: ${err instanceof CloudError ? err.message : err.stack}\n`);
  process.exitCode = err instanceof CloudError ? err.exitCode : 1;
});
