/**
 * What one agent costs its node: CPU (as % of one core) and memory (RSS), while it reports.
 *
 * A real proxy (installation, sshd on loopback, HAProxy, `autoscaler master`) and two real
 * nodes (web app + `autoscaler agent`, agent.interval=1, cpu_source=system, default log level),
 * each agent connected through the sshd to the master: one with instance_id set and no
 * health_url (the agent alone), one as most nodes run, asking a metadata service (a stub on
 * loopback) for its instance id and checking health_url (its web app) each interval. RSS of
 * both is read every 500 ms from their start. Both run with the NODE_OPTIONS of the agent's
 * systemd unit. After a 20 s warm-up (V8 shrinks the heap it grew while starting about 8 s in;
 * the startup peak is shown on its own), over 60 s:
 *   - CPU: utime+stime of the agent process (all its threads) from /proc/PID/stat, plus every
 *     descendant it has (scanned each second; the agent should start none) and its reaped
 *     children (cutime+cstime); cross-checked with the threads' schedstat (ns resolution);
 *   - RSS: VmRSS from /proc/PID/status each second (start, end, max), with RssAnon/RssFile.
 * Beside them, over the same 60 s, a bare `node -e 'setInterval(() => {}, 1000)'` (the floor any
 * node daemon with a 1 s timer pays) and a bare node that reads /proc/stat each second with
 * fs.promises.readFile, as the agent's sampler does. CPU is also split by thread (schedstat).
 * Then what each module costs: RSS of bare node processes that load what `bin/autoscaler.js
 * agent` loads, cumulatively, and each of what it no longer loads on top. The previous run's
 * figures (before issue 13's lighter agent) are shown beside this run's.
 * When the CPU goal is missed, the same agent is run again under `node --cpu-prof` for the
 * same warm-up + 60 s and the top self-time functions inside the 60 s are listed.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { setIniValue } from "@autoscaler/shared";
import { startDaemon, startNode, startProxy, type Daemon } from "../test/helpers/cluster.js";
import { CLI, REPO_ROOT as REPO, waitFor } from "../test/helpers/process.js";
import type { MasterStatus } from "../test/helpers/status.js";
import {
  type BenchResult,
  type Resources,
  descendants,
  loadNote,
  machineInfo,
  mdTable,
  mib,
  readProcCpu,
  readProcMemory,
  readSchedSeconds,
  readThreads,
  sleep,
  textTable,
  treeCpuSeconds,
  withResources,
} from "./lib.js";

const WARMUP_MS = 20_000;
const MEASURE_MS = 60_000;
const GOAL_CPU_PCT = 0.2;
/** 60 MB: 60 × 10^6 bytes, 57.2 MiB. */
const GOAL_RSS_BYTES = 60e6;
/** The last run before issue 13's lighter agent (2026-11-23, 5 s warm-up; its max was its start). MiB and % of one core. */
const PREVIOUS = { date: "2026-11-23T20:49:50Z", at5s: 67.9, end: 63.3, max: 67.9, anon: 18.0, file: 45.3, cpuPct: 0.133, imports: 68.9 };

/** One step of the import table: what a bare node process is given to load. */
interface Load {
  label: string;
  code: string;
}
/** What `bin/autoscaler.js agent` loads before it starts the agent, in the order it loads it (cumulative rows). */
const AGENT_LOADS: Load[] = [
  { label: "`ssh2/lib/client.js` (required as tunnel.ts does: ssh2's client alone)", code: 'require("ssh2/lib/client.js");' },
  { label: "`@autoscaler/shared/core` (errors, config, logger, atomic writes)", code: 'await import("@autoscaler/shared/core");' },
  { label: "`@autoscaler/shared/protocol`", code: 'await import("@autoscaler/shared/protocol");' },
  { label: "`@autoscaler/agent` (with node:http for health_url and the metadata service)", code: 'await import("@autoscaler/agent");' },
  {
    label: "`@autoscaler/cli/main` and the `agent` command (commands/daemons.js): all the bin loads",
    code: 'await import("@autoscaler/cli/main"); await import("./packages/cli/dist/commands/daemons.js");',
  },
];
/** What the agent loaded before and no longer does: each on top of everything in AGENT_LOADS. */
const NO_LONGER: Load[] = [
  { label: "`ssh2` (the package's index: also its server, HTTP agents and key generator)", code: 'require("ssh2");' },
  { label: "`@autoscaler/shared` (the index: also HAProxy's modules, hosts.d, credentials, proper-lockfile)", code: 'await import("@autoscaler/shared");' },
  { label: "`@autoscaler/cli` (yargs and the whole command tree)", code: 'await import("@autoscaler/cli");' },
  { label: "one `fetch()` (node's undici, with its WebAssembly HTTP parser)", code: 'await fetch("http://127.0.0.1:9/").catch(() => undefined);' },
  { label: "`zod` (the master's schemas)", code: 'await import("zod");' },
];

interface Measured {
  cpuPct: number;
  schedPct: number;
  selfSeconds: number;
  childSeconds: number;
  childrenSeen: string[];
  rssStart: number;
  rssEnd: number;
  rssMax: number;
  anonEnd: number;
  fileEnd: number;
  threads: number;
  /** CPU by thread name over the window (schedstat), in seconds; the main thread is "main". */
  byThread: { name: string; count: number; seconds: number }[];
}

/** Measure one process over `ms`, sampling memory and descendants every second. */
async function measure(pid: number, ms: number): Promise<Measured> {
  const t0 = performance.now();
  const c0 = await treeCpuSeconds(pid);
  const s0 = (await readSchedSeconds(pid)) ?? NaN;
  const th0 = await readThreads(pid);
  const m0 = await readProcMemory(pid);
  if (!m0) throw new Error(`process ${pid} is gone`);
  const seen = new Map<number, string>();
  for (const k of c0.childPids) seen.set(k.pid, k.comm);
  let rssMax = m0.rss;
  let last = m0;
  while (performance.now() - t0 < ms) {
    await sleep(Math.min(1000, ms - (performance.now() - t0)));
    const m = await readProcMemory(pid);
    if (!m) throw new Error(`process ${pid} exited during the measurement`);
    last = m;
    rssMax = Math.max(rssMax, m.rss);
    for (const k of await descendants(pid)) seen.set(k.pid, k.comm);
  }
  const c1 = await treeCpuSeconds(pid);
  const s1 = (await readSchedSeconds(pid)) ?? NaN;
  const th1 = await readThreads(pid);
  const wall = (performance.now() - t0) / 1000;
  const groups = new Map<string, { count: number; seconds: number }>();
  for (const [tid, t] of th1) {
    const name = tid === pid ? "main" : t.comm;
    const g = groups.get(name) ?? { count: 0, seconds: 0 };
    g.count++;
    g.seconds += t.seconds - (th0.get(tid)?.seconds ?? 0);
    groups.set(name, g);
  }
  for (const k of c1.childPids) seen.set(k.pid, k.comm);
  const selfSeconds = c1.self - c0.self;
  const childSeconds = c1.children - c0.children;
  return {
    cpuPct: ((selfSeconds + childSeconds) / wall) * 100,
    schedPct: ((s1 - s0) / wall) * 100,
    selfSeconds,
    childSeconds,
    childrenSeen: [...seen.entries()].map(([p, c]) => `${c} (${p})`),
    rssStart: m0.rss,
    rssEnd: last.rss,
    rssMax,
    anonEnd: last.rssAnon,
    fileEnd: last.rssFile,
    threads: last.threads,
    byThread: [...groups.entries()].map(([name, g]) => ({ name, ...g })).sort((a, b) => b.seconds - a.seconds),
  };
}

function waitExit(d: Daemon, ms = 10_000): Promise<number | null> {
  return new Promise((resolve) => {
    if (d.child.exitCode !== null || d.child.signalCode !== null) return resolve(d.child.exitCode);
    const timer = setTimeout(() => {
      d.child.kill("SIGKILL");
    }, ms);
    d.child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/* ------------------------------------------------------------------ cpu profile */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Self time by function over the samples from `fromMs` after the profile's start to its end (minus the last `tailMs`). */
function topSelf(profile: CpuProfile, fromMs: number, toMs: number): { total: number; idle: number; rows: { fn: string; ms: number }[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let t = profile.startTime;
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    const at = (t - profile.startTime) / 1000;
    if (at < fromMs || at > toMs) continue;
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const n = byId.get(profile.samples[i]!);
    const f = n?.callFrame;
    const name = f?.functionName || "(anonymous)";
    if (name === "(idle)") {
      idle += dt;
      continue;
    }
    total += dt;
    const where = f && f.url ? ` ${shortUrl(f.url)}:${f.lineNumber + 1}` : "";
    const key = `${name}${where}`;
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const rows = [...self.entries()].map(([fn, ms]) => ({ fn, ms })).sort((a, b) => b.ms - a.ms);
  return { total, idle, rows };
}

function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, "");
  const nm = u.lastIndexOf("node_modules/");
  if (nm >= 0) return u.slice(nm + "node_modules/".length);
  if (u.startsWith(REPO)) return path.relative(REPO, u);
  return u;
}

/** Run the agent once more under --cpu-prof for warm-up + measure, and summarise the measured part. */
async function profileAgent(
  res: Resources,
  ini: string,
  log: (s: string) => void,
): Promise<{ cpuPct: number; total: number; rows: { fn: string; ms: number }[]; windowMs: number }> {
  const dir = await res.tempDir("autoscaler-bench-prof-");
  const t0 = performance.now();
  let out = "";
  const child = spawn(process.execPath, ["--cpu-prof", "--cpu-prof-dir", dir, CLI, "agent", "--config", ini], { stdio: ["ignore", "pipe", "pipe"] });
  res.scope.track(child);
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (out += b.toString()));
  await waitFor("the profiled agent to connect", () => out.includes("connected to the master"), 20_000);
  const tConn = performance.now();
  log(`agent-footprint: profiling the agent for ${(WARMUP_MS + MEASURE_MS) / 1000} s`);
  await sleep(WARMUP_MS);
  const c0 = await readProcCpu(child.pid!);
  const tm = performance.now();
  await sleep(MEASURE_MS);
  const c1 = await readProcCpu(child.pid!);
  const cpuPct = ((c1!.self - c0!.self) / ((performance.now() - tm) / 1000)) * 100;
  const fromMs = tConn + WARMUP_MS - t0;
  const toMs = performance.now() - t0;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith(".cpuprofile"));
  if (files.length === 0) throw new Error(`the profiled agent wrote no .cpuprofile (exit ${child.exitCode}, output ${out.slice(-500)})`);
  const profile = JSON.parse(await fs.readFile(path.join(dir, files[0]!), "utf8")) as CpuProfile;
  const top = topSelf(profile, fromMs, toMs);
  return { cpuPct, total: top.total, rows: top.rows, windowMs: toMs - fromMs };
}

/**
 * RSS and V8 heap used of a bare `node` process (an ES module, as the bin is) that runs `code`,
 * idles 1 s and collects its garbage: the median of `runs` processes.
 */
async function loadRss(res: Resources, code: string, runs = 3): Promise<{ rss: number; heapUsed: number }> {
  const prelude = 'import { createRequire } from "node:module"; const require = createRequire(process.cwd() + "/");';
  const report =
    "setTimeout(() => { globalThis.gc(); setTimeout(() => { const m = process.memoryUsage(); console.log(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed })); }, 200); }, 1000);";
  const out: { rss: number; heapUsed: number }[] = [];
  for (let i = 0; i < runs; i++) {
    let text = "";
    const child = spawn(process.execPath, ["--expose-gc", "--input-type=module", "-e", `${prelude}\n${code}\n${report}`], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    res.scope.track(child);
    child.stdout!.on("data", (b: Buffer) => (text += b.toString()));
    child.stderr!.on("data", (b: Buffer) => (text += b.toString()));
    const code0 = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    if (code0 !== 0) throw new Error(`a bare node loading ${code} exited with ${code0}: ${text.slice(-500)}`);
    out.push(JSON.parse(text.trim().split("\n").at(-1)!) as { rss: number; heapUsed: number });
  }
  const median = (k: "rss" | "heapUsed") => out.map((o) => o[k]).sort((a, b) => a - b)[Math.floor(runs / 2)]!;
  return { rss: median("rss"), heapUsed: median("heapUsed") };
}

/** RSS every 500 ms of a process from its start, to read its startup peak and its RSS at a moment. */
function rssTrail(pid: number): { samples: { t: number; rss: number }[]; stop: () => Promise<void> } {
  const samples: { t: number; rss: number }[] = [];
  let going = true;
  const loop = (async () => {
    while (going) {
      const m = await readProcMemory(pid);
      if (m) samples.push({ t: performance.now(), rss: m.rss });
      await sleep(500);
    }
  })();
  return {
    samples,
    stop: async () => {
      going = false;
      await loop;
    },
  };
}

/** NODE_OPTIONS as the agent's systemd unit sets it: the agents here run as the unit runs them. */
async function unitNodeOptions(): Promise<string> {
  const unit = await fs.readFile(path.join(REPO, "etc", "systemd", "autoscaler-agent.service"), "utf8");
  return /^Environment=NODE_OPTIONS=(.*)$/m.exec(unit)?.[1]?.trim() ?? "";
}

interface AgentRun {
  m: Measured;
  /** RSS about 5 s after it said it was connected (the previous run's "start"). */
  at5s: number;
  /** The most RSS from its start to the window's start. */
  startupPeak: number;
  /** The most RSS from 5 s after connecting to the window's end (comparable with the previous run's max). */
  maxFrom5s: number;
  connectMs: number;
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  log("agent-footprint: two agents (alone; with health_url and a metadata service), interval 1 s, cpu_source=system, through a real sshd");
  const loadAtStart = os.loadavg()[0]!;
  const nodeOptions = await unitNodeOptions();
  const data = await withResources(async (res) => {
    // The EC2 metadata service's two answers (IMDSv2), on loopback.
    const imds = http.createServer((req, answer) => answer.end(req.method === "PUT" ? "footprint-token" : "i-0footprint0http"));
    await new Promise<void>((resolve) => imds.listen(0, "127.0.0.1", resolve));
    try {
      const proxy = await startProxy(res.scope);
      const node = await startNode(res.scope, [proxy], { name: "footprint", settings: ["agent.cpu_source=system"], startAgent: false });
      const nodeHttp = await startNode(res.scope, [proxy], {
        name: "footprint-http",
        settings: ["agent.cpu_source=system", "agent.instance_id="],
        startAgent: false,
      });
      const healthUrl = `http://${nodeHttp.address}:${nodeHttp.webPort}/health`;
      await fs.writeFile(nodeHttp.ini, setIniValue(await fs.readFile(nodeHttp.ini, "utf8"), "agent", "health_url", healthUrl), { mode: 0o600 });
      const started = performance.now();
      const agents = [
        startDaemon(res.scope, ["agent", "--config", node.ini], { env: { NODE_OPTIONS: nodeOptions } }),
        startDaemon(res.scope, ["agent", "--config", nodeHttp.ini], {
          env: { NODE_OPTIONS: nodeOptions, AUTOSCALER_METADATA_URL: `http://127.0.0.1:${(imds.address() as AddressInfo).port}` },
        }),
      ];
      const trails = agents.map((a) => rssTrail(a.child.pid!));
      const baseline = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
      res.scope.track(baseline);
      // The agent's sampler does this each second (fs.promises.readFile goes through libuv's thread pool).
      const reader = spawn(
        process.execPath,
        ["-e", 'const fs = require("fs"); setInterval(() => fs.promises.readFile("/proc/stat", "utf8").then((t) => t.split("\\n")), 1000)'],
        { stdio: "ignore" },
      );
      res.scope.track(reader);
      const connectedAt = await Promise.all(agents.map((a) => a.waitForLog(/connected to the master/, 20_000).then(() => performance.now())));
      log(`agent-footprint: connected; ${WARMUP_MS / 1000} s warm-up, then ${MEASURE_MS / 1000} s measured`);
      await sleep(Math.max(...connectedAt) + WARMUP_MS - performance.now());
      const windowAt = performance.now();
      const [m, mh, b, rd] = await Promise.all([
        measure(agents[0]!.child.pid!, MEASURE_MS),
        measure(agents[1]!.child.pid!, MEASURE_MS),
        measure(baseline.pid!, MEASURE_MS),
        measure(reader.pid!, MEASURE_MS),
      ]);
      await Promise.all(trails.map((t) => t.stop()));
      // The master really got the samples.
      const st = (await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/status`)).json()) as MasterStatus;
      for (const name of ["footprint", "footprint-http"]) {
        const seen = st.nodes.find((n) => n.name === name);
        if (!seen || seen.state !== "live" || seen.cpu_now === null)
          throw new Error(`the master does not show ${name} live with samples: ${JSON.stringify(seen)}`);
      }
      const samplesInWindow = st.nodes.find((n) => n.name === "footprint")!.samples_in_window;
      for (const a of agents) a.child.kill("SIGTERM");
      const exitCodes = await Promise.all(agents.map((a) => waitExit(a)));
      baseline.kill("SIGTERM");
      reader.kill("SIGTERM");

      const runs: AgentRun[] = [m, mh].map((x, i) => {
        const trail = trails[i]!.samples;
        const from5s = connectedAt[i]! + 5_000;
        const near5s = trail.reduce((best, p) => (Math.abs(p.t - from5s) < Math.abs(best.t - from5s) ? p : best), trail[0]!);
        return {
          m: x,
          at5s: near5s.rss,
          startupPeak: Math.max(...trail.filter((p) => p.t <= windowAt).map((p) => p.rss)),
          maxFrom5s: Math.max(x.rssMax, ...trail.filter((p) => p.t >= from5s).map((p) => p.rss)),
          connectMs: connectedAt[i]! - started,
        };
      });
      const cpuMissed = m.cpuPct > GOAL_CPU_PCT;
      const rssMissed = m.rssMax > GOAL_RSS_BYTES;
      const profile = cpuMissed ? await profileAgent(res, node.ini, log) : undefined;
      log("agent-footprint: what each module costs (bare node processes)");
      const bare = await loadRss(res, "");
      const loads: { label: string; rss: number; heapUsed: number }[] = [];
      for (let i = 0; i < AGENT_LOADS.length; i++)
        loads.push({
          label: AGENT_LOADS[i]!.label,
          ...(await loadRss(
            res,
            AGENT_LOADS.slice(0, i + 1)
              .map((l) => l.code)
              .join("\n"),
          )),
        });
      const all = AGENT_LOADS.map((l) => l.code).join("\n");
      const extra: { label: string; rss: number; heapUsed: number }[] = [];
      for (const l of NO_LONGER) extra.push({ label: l.label, ...(await loadRss(res, `${all}\n${l.code}`)) });
      return { runs, b, rd, samplesInWindow, exitCodes, profile, bare, loads, extra, cpuMissed, rssMissed };
    } finally {
      imds.close();
    }
  });
  const info = await machineInfo();
  const { b, rd } = data;
  const [a, ah] = data.runs as [AgentRun, AgentRun];
  const m = a.m;

  const goalMiB = (GOAL_RSS_BYTES / 2 ** 20).toFixed(1);
  const head = [
    "measure",
    "agent (instance_id set, no health_url)",
    "agent with health_url and a metadata service",
    "bare node, 1 s timer",
    "bare node, reads /proc/stat each second",
    "goal",
  ];
  const four = (f: (x: Measured) => string) => [f(m), f(ah.m), f(b), f(rd)];
  const rows = [
    [
      "CPU, % of one core (utime+stime from /proc/PID/stat, + descendants)",
      ...four((x) => `${x.cpuPct.toFixed(3)} %`),
      `≤ ${GOAL_CPU_PCT} %: **${data.cpuMissed ? "missed" : "met"}**`,
    ],
    ["CPU seconds in the window (own / children)", ...four((x) => `${x.selfSeconds.toFixed(2)} / ${x.childSeconds.toFixed(2)}`), ""],
    ["CPU, % of one core from the threads' schedstat (ns resolution)", ...four((x) => `${x.schedPct.toFixed(3)} %`), ""],
    [
      "RSS over the window: start / end / max (MiB)",
      ...four((x) => `${mib(x.rssStart)} / ${mib(x.rssEnd)} / ${mib(x.rssMax)}`),
      `≤ 60 MB (${goalMiB} MiB): **${data.rssMissed ? "missed" : "met"}**`,
    ],
    ["RSS at end: anonymous / file-backed (MiB)", ...four((x) => `${mib(x.anonEnd)} / ${mib(x.fileEnd)}`), ""],
    [
      "RSS while starting: 5 s after connecting / the most before the window (MiB)",
      `${mib(a.at5s)} / ${mib(a.startupPeak)}`,
      `${mib(ah.at5s)} / ${mib(ah.startupPeak)}`,
      "",
      "",
      "",
    ],
    ["threads", ...four((x) => String(x.threads)), ""],
    ["child processes seen (scanned each second)", ...four((x) => (x.childrenSeen.length === 0 ? "none" : x.childrenSeen.join(", "))), ""],
  ];

  const prev = PREVIOUS;
  const beforeAfter = mdTable(
    ["the agent (instance_id set, no health_url)", `before: ${prev.date}`, `after: this run`],
    [
      ["RSS 5 s after connecting (MiB)", prev.at5s.toFixed(1), mib(a.at5s)],
      ["RSS, the most from 5 s after connecting to the end (MiB)", prev.max.toFixed(1), mib(a.maxFrom5s)],
      ["RSS at the end (MiB)", prev.end.toFixed(1), mib(m.rssEnd)],
      ["of which anonymous / file-backed (MiB)", `${prev.anon.toFixed(1)} / ${prev.file.toFixed(1)}`, `${mib(m.anonEnd)} / ${mib(m.fileEnd)}`],
      ["CPU, % of one core", `${prev.cpuPct.toFixed(3)} %`, `${m.cpuPct.toFixed(3)} %`],
      ["a bare node loading what `bin/autoscaler.js agent` loads (MiB)", prev.imports.toFixed(1), mib(data.loads.at(-1)!.rss)],
    ],
  );

  const threadName = (n: string) =>
    n === "main"
      ? "main thread (event loop: JS, timers, socket I/O, ssh2's crypto calls)"
      : n === "libuv-worker"
        ? "`libuv-worker` (thread pool: fs calls such as reading /proc/stat)"
        : n.startsWith("V8 DefaultWork")
          ? `\`${n}\` (V8 platform: concurrent GC and compiler jobs)`
          : n === "node"
            ? "the other threads, all named `node` by this node version (libuv's thread pool: the fs calls, such as reading /proc/stat; V8's platform workers: concurrent GC and compilation; the inspector's)"
            : `\`${n}\``;
  const threadRows = m.byThread.map((t) => [
    threadName(t.name),
    t.count,
    (t.seconds * 1000).toFixed(1),
    `${((t.seconds / (MEASURE_MS / 1000)) * 100).toFixed(3)} %`,
  ]);
  const loadTable = mdTable(
    ["loaded so far", "RSS (MiB)", "added by this step (MiB)", "V8 heap used (MiB)"],
    [
      ["(nothing: bare node, an ES module)", mib(data.bare.rss), "", mib(data.bare.heapUsed)],
      ...data.loads.map((r, i) => [`+ ${r.label}`, mib(r.rss), mib(r.rss - (i === 0 ? data.bare.rss : data.loads[i - 1]!.rss)), mib(r.heapUsed)]),
    ],
  );
  const allRss = data.loads.at(-1)!.rss;
  const extraTable = mdTable(
    ["on top of all of the above", "RSS (MiB)", "it would add (MiB)"],
    data.extra.map((r) => [`+ ${r.label}`, mib(r.rss), mib(r.rss - allRss)]),
  );
  const parts: string[] = [
    "Before and after issue 13's lighter agent (`bin/autoscaler.js agent` starts without yargs or the other commands, loads `@autoscaler/shared/core` instead of the package's index and ssh2's client alone, reads its facts without systeminformation and makes its HTTP requests without fetch). " +
      `The previous run's window started 5 s after the agent connected, so its max was its start; this run's window starts ${WARMUP_MS / 1000} s after, and the rows below read this run's agent at the same moments:`,
    "",
    beforeAfter,
    "",
    `The agent's CPU by thread over the same ${MEASURE_MS / 1000} s (from /proc/PID/task/TID/schedstat, grouped by thread name):`,
    "",
    mdTable(["thread", "threads", "CPU ms", "% of one core"], threadRows),
  ];
  if (data.profile) {
    const p = data.profile;
    const top = p.rows.slice(0, 12);
    parts.push(
      "",
      `Where the main thread's time goes: the same agent run again under \`node --cpu-prof\` (1 ms sampling) for ${WARMUP_MS / 1000} s + ${MEASURE_MS / 1000} s. ` +
        `Over the measured ${(p.windowMs / 1000).toFixed(0)} s that process used ${p.cpuPct.toFixed(3)} % of one core: the profiler's own sampling (a signal and a stack walk every millisecond) costs far more than the agent, so only the split below means anything. ` +
        `The profile holds ${p.total.toFixed(0)} ms of non-idle main-thread samples in the window ("(program)" is native code outside JS: libuv, syscalls, bindings). Top self time:`,
      "",
      mdTable(
        ["function (file:line)", "self ms", "% of non-idle"],
        top.map((r) => [r.fn, r.ms.toFixed(1), `${((r.ms / p.total) * 100).toFixed(1)} %`]),
      ),
    );
  }
  parts.push(
    "",
    `Of the agent's ${mib(m.rssEnd)} MiB at the end, ${mib(m.fileEnd)} MiB are file-backed pages (mostly the node binary's code: the more of node a process uses, OpenSSL, the WebAssembly compiler ssh2's poly1305 needs, the ES module loader, the more of it is touched; the same pages every node process on the machine maps) and ${mib(m.anonEnd)} MiB anonymous (V8 heap, compiled code, buffers: the agent's own). ` +
      `A bare node with a 1 s timer already holds ${mib(b.rssEnd)} MiB (${mib(b.anonEnd)} anonymous). ` +
      `While starting, V8 grows its heap; it gives the pages back about 8 s in (its memory reducer), so RSS 5 s after connecting (${mib(a.at5s)} MiB) is above what the agent then keeps: the goal is read over the window, from ${WARMUP_MS / 1000} s after connecting. ` +
      `Over the window RSS went from ${mib(m.rssStart)} to ${mib(m.rssEnd)} MiB` +
      (m.rssEnd <= m.rssStart + 0.5 * 2 ** 20 ? ": it did not grow." : `: it grew by ${mib(m.rssEnd - m.rssStart)} MiB in ${MEASURE_MS / 1000} s.`) +
      ` The window is a minute: over ten, the young generation fills slowly (the agent allocates a few KiB a second) and RSS climbs by up to about 2 MiB between collections (README, "Agent footprint").` +
      ` The agent with health_url asks its web app each second (the bench's interval; the default is 5 s): its heap fills and is collected in cycles, hence its higher max.`,
    "",
    "What each module costs: RSS of a bare `node` process (an ES module, as the bin is) that loads what `bin/autoscaler.js agent` loads before it starts the agent, cumulatively in the order shown, runs nothing, idles 1 s and collects its garbage (the median of three processes per row; the last row is all the bin loads):",
    "",
    loadTable,
    "",
    "What the agent no longer loads, each on top of all of the above (systeminformation is no longer installed: the previous run measured it at +2.2 MiB, and the running agent kept about 2.6 MiB of it):",
    "",
    extraTable,
  );

  const verdict =
    !data.cpuMissed && !data.rssMissed
      ? "both **met**"
      : [data.cpuMissed ? "CPU **missed**" : "CPU **met**", data.rssMissed ? "RSS **missed**" : "RSS **met**"].join(", ");
  const markdown = [
    "## Agent footprint",
    "",
    `Measured ${info.date} (${loadNote(loadAtStart)}). Two real \`autoscaler agent\` processes (\`agent.interval=1\`, \`cpu_source=system\`, default log level, ${nodeOptions ? `\`NODE_OPTIONS=${nodeOptions}\` as their systemd unit sets it` : "no NODE_OPTIONS, as their systemd unit"}), each on a node with a web app, connected through a real OpenSSH sshd on 127.0.0.1 to a real \`autoscaler master\` (with HAProxy): one with \`instance_id\` set and no \`health_url\`, one that asks a metadata service on loopback for its instance id and checks \`health_url\` (its web app) each interval, as most nodes run. ` +
      `They connected ${(a.connectMs / 1000).toFixed(1)} s and ${(ah.connectMs / 1000).toFixed(1)} s after they were started; after a ${WARMUP_MS / 1000} s warm-up, ${MEASURE_MS / 1000} s were measured from /proc (RSS was also read every 500 ms from their start). The master showed both nodes live (the first with ${data.samplesInWindow} samples in its window) at the end; the agents exited with ${data.exitCodes.join(" and ")} on SIGTERM.`,
    "",
    mdTable(head, rows),
    "",
    `**Goal, for the agent: at most ${GOAL_CPU_PCT} % of one core and at most 60 MB RSS (60 × 10^6 bytes = ${goalMiB} MiB) over the window** — ${verdict}. MiB are 2^20 bytes.`,
    ...(parts.length ? ["", ...parts] : []),
  ].join("\n");
  const text = [
    `agent-footprint: ${MEASURE_MS / 1000} s after ${WARMUP_MS / 1000} s warm-up`,
    textTable(
      head,
      rows.map((r) => r.map((c) => String(c).replace(/\*\*/g, ""))),
    ),
    ...parts,
  ].join("\n");
  return { id: "agent-footprint", text, markdown, goalMet: !data.cpuMissed && !data.rssMissed };
}
