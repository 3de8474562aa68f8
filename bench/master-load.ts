/**
 * The master under many agents: CPU, memory, and how soon a sample shows in its registry.
 *
 * Two runs, each with its own real proxy (installation, HAProxy master-worker, `autoscaler
 * master`, and for (a) a real OpenSSH sshd), and haproxy.server_line `server $NAME $IP:$PORT`
 * without `check`, so HAProxy never connects to the made-up node addresses:
 *   (a) 200 agents through ONE real sshd: this process opens 200 ssh2 connections (one key,
 *       authorised once with `autoscaler authorize-key`), each with its own `direct-tcpip`
 *       channel to the master's loopback port, as the agent does;
 *   (b) 1,000 agents speaking the NDJSON protocol straight to the master's loopback port.
 * Each simulated agent sends a valid `hello` (its own name, address 127.0.x.y, port, the
 * token), waits for `welcome`, then one `sample` per second, the agents spread evenly over
 * the second. Phases:
 *   1. registration: from the first connection until every agent is welcomed AND the master
 *      has applied (checked + reloaded + confirmed) a haproxy.cfg holding all of them;
 *   2. 10 s settle, then 30 s steady state: master CPU (utime+stime and its children's, from
 *      /proc) and RSS; for (a) the sshd's CPU and RSS too (its listener and every per-connection
 *      process);
 *   3. latency: the master exposes no hook, so from outside: send one sample with a distinctive
 *      cpu value to a random node (its regular samples paused meanwhile), then poll `/status`
 *      as fast as possible until that node's `cpu_now` shows it; PROBES times. The cost of one
 *      `/status` call with nothing pending is measured just before, to subtract. The probes'
 *      own load on the master is reported beside (they are kept out of phase 2).
 * Every loop is bounded by a count and a deadline; everything is closed, stopped by pid and
 * removed at the end.
 */
import { promises as fs } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import type { Duplex } from "node:stream";
import { Client } from "ssh2";
import { PROTOCOL_VERSION } from "@autoscaler/shared/protocol";
import { startProxy, type Proxy } from "../test/helpers/cluster.js";
import { serverLines } from "../test/helpers/haproxy.js";
import { runCli } from "../test/helpers/process.js";
import { makeKeyPair, TEST_SSH_USER } from "../test/helpers/sshd.js";
import type { MasterStatus } from "../test/helpers/status.js";
import {
  type BenchResult,
  type Resources,
  descendants,
  loadNote,
  logLines,
  machineInfo,
  mdTable,
  mib,
  ms,
  quantileOf,
  readProcCpu,
  readProcMemory,
  readPss,
  readSchedSeconds,
  sleep,
  stats,
  textTable,
  withResources,
} from "./lib.js";

const SETTLE_MS = 10_000;
const MEASURE_MS = 30_000;
const PROBES = 200;
const PROBE_PHASE_MAX_MS = 40_000;
const PROBE_TIMEOUT_MS = 5_000;
const STATUS_COST_CALLS = 30;
const REGISTRATION_TIMEOUT_MS = 120_000;
/** Every simulated agent stops sampling after this many samples or this long, whatever happens. */
const MAX_SAMPLES_PER_NODE = 600;
const SAMPLING_DEADLINE_MS = 300_000;
const GOAL = { nodes: 1000, cpuPct: 10, rssMB: 200, p99Ms: 50 };

export interface Run {
  label: string;
  nodes: number;
  transport: "ssh" | "tcp";
  /** How many connections are opened at once during registration. */
  concurrency: number;
  /** Extra settings for the proxy (the failover bench's [cluster] etcd). */
  settings?: string[];
  /** Called once the proxy's master runs, before the agents connect (waits until it leads). */
  ready?: (proxy: Proxy) => Promise<void>;
}

const RUNS: Run[] = [
  { label: "(a) 200 agents through one sshd (ssh2 + direct-tcpip)", nodes: 200, transport: "ssh", concurrency: 20 },
  { label: "(b) 1,000 agents straight to the master's port (NDJSON over TCP)", nodes: 1000, transport: "tcp", concurrency: 100 },
];

/* ------------------------------------------------------------------ simulated agents */

interface SimNode {
  i: number;
  name: string;
  stream: Duplex;
  close: () => void;
  probing: boolean;
  sent: number;
}

/** An ssh2 connection through the proxy's sshd and a direct-tcpip channel to the master, as the agent opens. */
function openSsh(proxy: Proxy, privateKey: Buffer, hostKey: Buffer): Promise<{ stream: Duplex; close: () => void }> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      c.end();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error("ssh connection not ready within 30 s")), 30_000);
    c.on("ready", () => {
      c.forwardOut("127.0.0.1", 0, "127.0.0.1", proxy.masterPort, (err, stream) => {
        clearTimeout(timer);
        if (err) return fail(err);
        settled = true;
        resolve({ stream, close: () => c.end() });
      });
    });
    c.on("error", (err) => {
      clearTimeout(timer);
      fail(err);
    });
    c.connect({
      host: proxy.sshd.address,
      port: proxy.sshd.port,
      username: TEST_SSH_USER,
      privateKey,
      hostVerifier: (key: Buffer) => key.equals(hostKey),
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      readyTimeout: 20_000,
    });
  });
}

/** A plain TCP connection to the master's port. */
function openTcp(proxy: Proxy): Promise<{ stream: Duplex; close: () => void }> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ host: "127.0.0.1", port: proxy.masterPort });
    s.setNoDelay(true);
    s.once("connect", () => resolve({ stream: s, close: () => s.destroy() }));
    s.once("error", reject);
  });
}

/** Send hello and wait for the master's answer on the stream. */
function handshake(stream: Duplex, hello: object): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => done(new Error("no answer to hello within 30 s")), 30_000);
    const onData = (b: Buffer) => {
      buf += b.toString();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const m = JSON.parse(buf.slice(0, nl)) as { type: string; message?: string };
      done(m.type === "welcome" ? undefined : new Error(`the master refused: ${m.message}`));
    };
    const onClose = () => done(new Error("closed before the master answered"));
    function done(err?: Error) {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("close", onClose);
      stream.on("data", () => undefined); // keep the stream flowing
      if (err) reject(err);
      else resolve();
    }
    stream.on("data", onData);
    stream.on("close", onClose);
    stream.on("error", () => undefined);
    stream.write(JSON.stringify(hello) + "\n");
  });
}

function sampleLine(cpu: number): string {
  return JSON.stringify({ type: "sample", time: Date.now(), cpu, healthy: true }) + "\n";
}

/* ------------------------------------------------------------------ measuring */

/** CPU seconds (own + reaped children + live descendants) of a process tree. */
async function treeCpu(pid: number): Promise<number> {
  const root = await readProcCpu(pid);
  if (!root) throw new Error(`process ${pid} is gone`);
  let total = root.self + root.reapedChildren;
  for (const k of await descendants(pid)) total += (await readProcCpu(k.pid))?.self ?? 0;
  return total;
}

/** CPU seconds of a process tree from every thread's schedstat (ns resolution: many processes that each run for microseconds lose nothing to tick rounding). */
async function treeSched(pid: number): Promise<number> {
  let total = (await readSchedSeconds(pid)) ?? 0;
  for (const k of await descendants(pid)) total += (await readSchedSeconds(k.pid)) ?? 0;
  return total;
}

/** Summed RSS (shared pages counted once per process) and PSS (shared pages split) of a process tree. */
async function treeMemory(pid: number): Promise<{ rss: number; pss: number; processes: number }> {
  let rss = (await readProcMemory(pid))?.rss ?? 0;
  let pss = (await readPss(pid)) ?? 0;
  const kids = await descendants(pid);
  for (const k of kids) {
    rss += (await readProcMemory(k.pid))?.rss ?? 0;
    pss += (await readPss(k.pid)) ?? 0;
  }
  return { rss, pss, processes: kids.length + 1 };
}

/** One keep-alive connection for every /status and /metrics call of a run. */
let statusAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** GET /status on the metrics port (keep-alive); resolves with the body. */
function getText(port: number, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, agent: statusAgent, timeout: 10_000 }, (r) => {
      const chunks: Buffer[] = [];
      r.on("data", (b: Buffer) => chunks.push(b));
      r.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      r.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

/** The cpu_now of one node in a /status body, found by scanning the text (cheaper than JSON.parse of the whole body). */
function cpuNowOf(body: string, name: string): number | undefined {
  const at = body.indexOf(`"name": "${name}"`);
  if (at < 0) return undefined;
  const key = body.indexOf(`"cpu_now": `, at);
  if (key < 0) return undefined;
  const end = body.indexOf(",", key);
  return Number(body.slice(key + 11, end));
}

async function samplesReceived(port: number): Promise<number> {
  const text = await getText(port, "/metrics");
  return Number(/^autoscaler_samples_received_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

export interface RunResult {
  run: Run;
  registration: {
    allWelcomedMs: number;
    liveMs: number;
    connect: ReturnType<typeof stats>;
    applies: number;
    reloads: number;
    maxApplyMs: number;
    masterCpuSeconds: number;
    cfgServers: number;
  };
  steady: {
    cpuPct: number;
    rssStart: number;
    rssEnd: number;
    rssMax: number;
    samplesExpected: number;
    samplesReceived: number;
    sshdCpuPct?: number;
    sshdSchedPct?: number;
    sshdRss?: number;
    sshdPss?: number;
    sshdProcesses?: number;
    driverCpuPct: number;
    load1: number;
  };
  statusCost: ReturnType<typeof stats>;
  statusBytes: number;
  latency: { n: number; timeouts: number; median: number; p95: number; p99: number; max: number; pollsMedian: number };
  probeCpuPct: number;
}

export async function runOne(res: Resources, run: Run, log: (s: string) => void): Promise<RunResult> {
  statusAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const proxy = await startProxy(res.scope, {
    settings: ["haproxy.server_line=server $NAME $IP:$PORT", `scaling.max_nodes=${GOAL.nodes * 2}`, ...(run.settings ?? [])],
  });
  await run.ready?.(proxy);
  const masterPid = proxy.master.child.pid!;
  let privateKey = Buffer.alloc(0);
  let hostKey = Buffer.alloc(0);
  if (run.transport === "ssh") {
    const dir = await res.tempDir("autoscaler-bench-keys-");
    const key = makeKeyPair(dir, "node_key");
    const line = await runCli(["authorize-key", "--line-only", key.publicFile, "--config", proxy.inst.ini]);
    if (line.code !== 0) throw new Error(`authorize-key failed: ${line.stderr}`);
    await fs.appendFile(proxy.sshd.authorizedKeysFile, line.stdout);
    privateKey = await fs.readFile(key.privateFile);
    hostKey = Buffer.from(proxy.sshd.hostKey.publicLine.split(" ")[1]!, "base64");
  }

  const nodes: SimNode[] = [];
  let stopSampling = false;
  const timers = new Set<NodeJS.Timeout>();
  const samplingDeadline = Date.now() + SAMPLING_DEADLINE_MS;
  let driverSent = 0;
  const startSampling = (n: SimNode) => {
    const first = setTimeout(
      () => {
        timers.delete(first);
        const every = setInterval(() => {
          if (stopSampling || n.sent >= MAX_SAMPLES_PER_NODE || Date.now() > samplingDeadline) {
            clearInterval(every);
            timers.delete(every);
            return;
          }
          if (n.probing) return;
          n.sent++;
          driverSent++;
          n.stream.write(sampleLine(1 + ((n.i + n.sent) % 40)));
        }, 1000);
        timers.add(every);
      },
      Math.floor((n.i / run.nodes) * 1000),
    );
    timers.add(first);
  };

  try {
    /* ---------------- 1. registration */
    log(`master-load ${run.label}: registering`);
    const logFrom = logLines(proxy.master.log()).length;
    const cpu0 = await treeCpu(masterPid);
    const t0 = performance.now();
    const wall0 = Date.now();
    const connectTimes: number[] = [];
    let next = 0;
    let failure: Error | undefined;
    const worker = async () => {
      while (!failure && next < run.nodes && performance.now() - t0 < REGISTRATION_TIMEOUT_MS) {
        const i = next++;
        const name = `sim-${String(i + 1).padStart(4, "0")}`;
        const hello = {
          type: "hello",
          version: PROTOCOL_VERSION,
          token: proxy.token,
          name,
          address: `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`,
          port: 20_000 + i,
          instance_id: `i-${name}`,
          agent_version: "bench",
          facts: { cores: 2, memory_bytes: 2 ** 31 },
          healthy: true,
        };
        try {
          const tc = performance.now();
          const conn = run.transport === "ssh" ? await openSsh(proxy, privateKey, hostKey) : await openTcp(proxy);
          const n: SimNode = { i, name, stream: conn.stream, close: conn.close, probing: false, sent: 0 };
          nodes.push(n);
          await handshake(conn.stream, hello);
          connectTimes.push(performance.now() - tc);
          startSampling(n);
        } catch (err) {
          failure ??= new Error(`${name}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: run.concurrency }, worker));
    if (failure) throw failure;
    if (nodes.length !== run.nodes || connectTimes.length !== run.nodes) throw new Error(`only ${connectTimes.length} of ${run.nodes} agents were welcomed`);
    const allWelcomedMs = performance.now() - t0;

    // Until the master has applied a haproxy.cfg holding every node (checked, reloaded, confirmed).
    let cfgServers = 0;
    for (;;) {
      cfgServers = serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).length;
      if (cfgServers >= run.nodes) break;
      if (performance.now() - t0 > REGISTRATION_TIMEOUT_MS)
        throw new Error(`haproxy.cfg holds ${cfgServers} of ${run.nodes} servers after ${REGISTRATION_TIMEOUT_MS} ms`);
      await sleep(50);
    }
    const finalBytes = (await fs.stat(proxy.inst.haproxyConfig)).size;
    let liveAt = 0;
    for (;;) {
      const lines = logLines(proxy.master.log()).slice(logFrom);
      const w = lines.findIndex((l) => l.msg === "haproxy config written" && l.bytes === finalBytes);
      const applied = w >= 0 ? lines.slice(w).find((l) => l.msg === "haproxy applied") : undefined;
      if (applied) {
        liveAt = applied.t;
        break;
      }
      if (performance.now() - t0 > REGISTRATION_TIMEOUT_MS) throw new Error("the master did not confirm the reload with every node");
      await sleep(50);
    }
    const cpu1 = await treeCpu(masterPid);
    const regLines = logLines(proxy.master.log())
      .slice(logFrom)
      .filter((l) => l.msg === "haproxy applied" && l.t <= liveAt);
    const st = JSON.parse(await getText(proxy.metricsPort, "/status")) as MasterStatus;
    const live = st.nodes.filter((n) => n.state === "live").length;
    if (live !== run.nodes) throw new Error(`the master shows ${live} of ${run.nodes} nodes live after registration`);
    log(
      `master-load ${run.label}: all ${run.nodes} welcomed after ${(allWelcomedMs / 1000).toFixed(1)} s, in HAProxy after ${((liveAt - wall0) / 1000).toFixed(1)} s; settling ${SETTLE_MS / 1000} s`,
    );

    /* ---------------- 2. steady state */
    await sleep(SETTLE_MS);
    const load1 = os.loadavg()[0]!;
    const sshdPid = run.transport === "ssh" ? proxy.sshd.pid() : undefined;
    const m0 = await treeCpu(masterPid);
    const s0 = sshdPid ? await treeCpu(sshdPid) : 0;
    const ss0 = sshdPid ? await treeSched(sshdPid) : 0;
    const d0 = process.cpuUsage();
    const recv0 = await samplesReceived(proxy.metricsPort);
    const sent0 = driverSent;
    const tm = performance.now();
    const r0 = (await readProcMemory(masterPid))!.rss;
    let rMax = r0;
    let rEnd = r0;
    while (performance.now() - tm < MEASURE_MS) {
      await sleep(Math.min(1000, MEASURE_MS - (performance.now() - tm)));
      const m = await readProcMemory(masterPid);
      if (!m) throw new Error("the master exited during the measurement");
      rEnd = m.rss;
      rMax = Math.max(rMax, m.rss);
    }
    const m1 = await treeCpu(masterPid);
    const s1 = sshdPid ? await treeCpu(sshdPid) : 0;
    const ss1 = sshdPid ? await treeSched(sshdPid) : 0;
    const d1 = process.cpuUsage(d0);
    const wall = (performance.now() - tm) / 1000;
    const recv1 = await samplesReceived(proxy.metricsPort);
    const sshdMem = sshdPid ? await treeMemory(sshdPid) : undefined;
    const steady = {
      cpuPct: ((m1 - m0) / wall) * 100,
      rssStart: r0,
      rssEnd: rEnd,
      rssMax: rMax,
      samplesExpected: driverSent - sent0,
      samplesReceived: recv1 - recv0,
      ...(sshdPid
        ? {
            sshdCpuPct: ((s1 - s0) / wall) * 100,
            sshdSchedPct: ((ss1 - ss0) / wall) * 100,
            sshdRss: sshdMem!.rss,
            sshdPss: sshdMem!.pss,
            sshdProcesses: sshdMem!.processes,
          }
        : {}),
      driverCpuPct: ((d1.user + d1.system) / 1e6 / wall) * 100,
      load1,
    };
    log(`master-load ${run.label}: steady state master CPU ${steady.cpuPct.toFixed(2)} %, RSS ${mib(rEnd)} MiB; probing`);

    /* ---------------- 3. latency */
    const costs: number[] = [];
    let statusBytes = 0;
    for (let k = 0; k < STATUS_COST_CALLS; k++) {
      const t = performance.now();
      statusBytes = (await getText(proxy.metricsPort, "/status")).length;
      costs.push(performance.now() - t);
    }
    const p0 = await treeCpu(masterPid);
    const tp = performance.now();
    const latencies: number[] = [];
    const polls: number[] = [];
    let timeouts = 0;
    for (let k = 0; k < PROBES && performance.now() - tp < PROBE_PHASE_MAX_MS; k++) {
      const n = nodes[Math.floor(Math.random() * nodes.length)]!;
      const value = 60 + (k + 1) / 100; // never an integer from 1 to 40, as the regular samples are
      n.probing = true;
      const t = performance.now();
      n.stream.write(sampleLine(value));
      let count = 0;
      let seen = false;
      while (performance.now() - t < PROBE_TIMEOUT_MS) {
        count++;
        if (cpuNowOf(await getText(proxy.metricsPort, "/status"), n.name) === value) {
          seen = true;
          break;
        }
      }
      const took = performance.now() - t;
      n.probing = false;
      if (seen) {
        latencies.push(took);
        polls.push(count);
      } else timeouts++;
    }
    const probeCpuPct = (((await treeCpu(masterPid)) - p0) / ((performance.now() - tp) / 1000)) * 100;
    const ls = stats(latencies);
    return {
      run,
      registration: {
        allWelcomedMs,
        liveMs: liveAt - wall0,
        connect: stats(connectTimes),
        applies: regLines.length,
        reloads: regLines.filter((l) => l.reloaded === true).length,
        maxApplyMs: Math.max(...regLines.map((l) => Number(l.ms))),
        masterCpuSeconds: cpu1 - cpu0,
        cfgServers,
      },
      steady,
      statusCost: stats(costs),
      statusBytes,
      latency: {
        n: latencies.length,
        timeouts,
        median: ls.median,
        p95: ls.p95,
        p99: quantileOf(latencies, 0.99),
        max: ls.max,
        pollsMedian: stats(polls).median,
      },
      probeCpuPct,
    };
  } finally {
    stopSampling = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    for (const n of nodes) n.close();
    statusAgent.destroy();
    await sleep(200);
  }
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  log("master-load: many agents on one master");
  const loadAtStart = os.loadavg()[0]!;
  const results: RunResult[] = [];
  for (const r of RUNS) results.push(await withResources((res) => runOne(res, r, log)));
  const info = await machineInfo();

  const head1 = [
    "run",
    "agents",
    "all welcomed (s)",
    "all in HAProxy, reload confirmed (s)",
    "hello → welcome per agent, median (p95) ms",
    "applies with reload",
    "slowest apply (ms)",
    "master CPU (s)",
  ];
  const rows1 = results.map((r) => [
    r.run.label,
    r.run.nodes,
    (r.registration.allWelcomedMs / 1000).toFixed(1),
    (r.registration.liveMs / 1000).toFixed(1),
    `${ms(r.registration.connect.median)} (${ms(r.registration.connect.p95)})`,
    `${r.registration.reloads} of ${r.registration.applies}`,
    ms(r.registration.maxApplyMs),
    r.registration.masterCpuSeconds.toFixed(1),
  ]);
  const head2 = [
    "run",
    "master CPU, % of one core",
    "master RSS start / end / max (MiB)",
    "samples sent / received",
    "sshd CPU, % of one core: schedstat (stat)",
    "sshd processes: summed RSS / PSS (MiB)",
    "driver CPU (this process)",
    "1-min load",
  ];
  const rows2 = results.map((r) => [
    r.run.label,
    `${r.steady.cpuPct.toFixed(2)} %`,
    `${mib(r.steady.rssStart)} / ${mib(r.steady.rssEnd)} / ${mib(r.steady.rssMax)}`,
    `${r.steady.samplesExpected} / ${r.steady.samplesReceived}`,
    r.steady.sshdCpuPct === undefined ? "–" : `${r.steady.sshdSchedPct!.toFixed(2)} % (${r.steady.sshdCpuPct.toFixed(2)} %)`,
    r.steady.sshdRss === undefined ? "–" : `${r.steady.sshdProcesses}: ${mib(r.steady.sshdRss)} / ${mib(r.steady.sshdPss!)}`,
    `${r.steady.driverCpuPct.toFixed(2)} %`,
    r.steady.load1.toFixed(2),
  ]);
  const head3 = [
    "run",
    "probes seen (timeouts)",
    "sample → in /status: median",
    "p95",
    "p99",
    "max",
    "/status polls per probe (median)",
    "one /status with nothing pending: median (p95)",
    "/status size",
    "master CPU while probing",
  ];
  const rows3 = results.map((r) => [
    r.run.label,
    `${r.latency.n} (${r.latency.timeouts})`,
    ms(r.latency.median),
    ms(r.latency.p95),
    ms(r.latency.p99),
    ms(r.latency.max),
    r.latency.pollsMedian.toFixed(0),
    `${ms(r.statusCost.median)} (${ms(r.statusCost.p95)})`,
    `${(r.statusBytes / 1024).toFixed(0)} KiB`,
    `${r.probeCpuPct.toFixed(1)} %`,
  ]);

  const big = results.find((r) => r.run.nodes === GOAL.nodes)!;
  const cpuOk = big.steady.cpuPct < GOAL.cpuPct;
  const rssOk = big.steady.rssMax < GOAL.rssMB * 2 ** 20;
  const p99Ok = big.latency.p99 < GOAL.p99Ms && big.latency.timeouts === 0;
  const goalMet = cpuOk && rssOk && p99Ok;
  const p99Net = big.latency.p99 - big.statusCost.median;

  const markdown = [
    "## Master under many agents",
    "",
    `Measured ${info.date} (${loadNote(loadAtStart)}). Each run has its own proxy on 127.0.0.1: a folder installation, HAProxy master-worker, \`autoscaler master --log-level debug\`, and \`haproxy.server_line = server $NAME $IP:$PORT\` (no \`check\`: the node addresses 127.0.x.y are made up, so HAProxy must not connect to them). ` +
      "One driver process (this benchmark) plays every agent: a valid `hello` (own name, address, port, the token), `welcome` awaited, then one `sample` per second, the agents spread evenly over the second. " +
      `Run (a) goes through one real OpenSSH sshd (MaxStartups 200:30:400, the README's \`Match User\` block): ${RUNS[0]!.nodes} ssh2 connections with one \`direct-tcpip\` channel each, ${RUNS[0]!.concurrency} opened at a time; run (b) opens ${RUNS[1]!.nodes} TCP connections straight to the master's loopback port, ${RUNS[1]!.concurrency} at a time.`,
    "",
    "Registration phase: from the first connection until every agent has its `welcome` and the master has applied a haproxy.cfg holding all of them (`haproxy -c`, reload, new worker confirmed: the \"haproxy applied\" log line after the file reached its final size). Master CPU includes its children (`sh -c 'haproxy -c …'`, the reload command).",
    "",
    mdTable(head1, rows1),
    "",
    `Steady state: after a ${SETTLE_MS / 1000} s settle, ${MEASURE_MS / 1000} s measured from /proc (master: utime+stime of it and its children; RSS = VmRSS sampled each second). Nothing polls the master meanwhile apart from two \`/metrics\` reads that count the samples received.`,
    "",
    mdTable(head2, rows2),
    "",
    "The sshd figure sums the listener and every per-connection process (a privileged monitor and an unprivileged child per connection). Its CPU is taken from each thread's schedstat (nanoseconds): /proc/PID/stat, in brackets, reports each process's time in whole 10 ms ticks, and 400 processes that each run for a few milliseconds per half-minute mostly round to nothing there. " +
      "Summed RSS counts the pages the sshd processes share (the binary, libraries) once per process; PSS splits them, so it is the fair total. Samples sent and received are counted at slightly different instants (the driver's counter, the master's `/metrics`), so they differ by what was in flight.",
    "",
    `Latency from a sample's arrival to its appearance in the registry, measured from outside after the steady-state window: a sample with a distinctive \`cpu\` value is sent to a random node (its regular samples paused meanwhile), then \`GET /status\` (keep-alive) is repeated back to back until that node's \`cpu_now\` shows the value; up to ${PROBES} probes within ${PROBE_PHASE_MAX_MS / 1000} s. ` +
      "The latency therefore includes at least one whole `/status` call (the master builds and serializes the status of every node for each call), and in (a) the ssh2 + sshd hop. The cost of one `/status` call with nothing pending is shown beside so it can be subtracted; the last column is the master's CPU during the probes, i.e. mostly the `/status` calls themselves.",
    "",
    mdTable(head3, rows3),
    "",
    ...(results.every((r) => r.latency.pollsMedian <= 1)
      ? [
          "In most probes the very first `/status` call after the write already showed the new value: a sample reaches the registry in less time than one `/status` call takes, so these latencies are bounded by the cost of `/status` (which grows with the number of nodes), not by the master's sample path.",
          "",
        ]
      : []),
    `**Goal for ${GOAL.nodes.toLocaleString("en-US")} agents: master under ${GOAL.cpuPct} % of one core, under ${GOAL.rssMB} MB RSS, p99 sample-to-registry under ${GOAL.p99Ms} ms** — ` +
      `CPU **${cpuOk ? "met" : "missed"}** (${big.steady.cpuPct.toFixed(2)} %), RSS **${rssOk ? "met" : "missed"}** (max ${mib(big.steady.rssMax)} MiB), p99 **${p99Ok ? "met" : "missed"}** (${ms(big.latency.p99)} ms measured; ${ms(p99Net)} ms after subtracting one median \`/status\` call).`,
  ].join("\n");
  const plain = (rows: (string | number)[][]) => rows.map((r) => r.map((c) => String(c)));
  const text = [
    "master-load: registration",
    textTable(head1, plain(rows1)),
    "",
    "steady state",
    textTable(head2, plain(rows2)),
    "",
    "latency",
    textTable(head3, plain(rows3)),
    "",
    `goal (1,000 agents): CPU ${cpuOk ? "met" : "MISSED"}, RSS ${rssOk ? "met" : "MISSED"}, p99 ${p99Ok ? "met" : "MISSED"}`,
  ].join("\n");
  return { id: "master-load", text, markdown, goalMet };
}
