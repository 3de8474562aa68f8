/**
 * What one agent costs its node: CPU (as % of one core) and memory (RSS), while it reports.
 *
 * A real proxy (installation, sshd on loopback, HAProxy, `autoscaler master`) and a real node
 * (web app + `autoscaler agent` with agent.interval=1, cpu_source=system, default log level),
 * the agent connected through the sshd to the master. After a 5 s warm-up, over 60 s:
 *   - CPU: utime+stime of the agent process (all its threads) from /proc/PID/stat, plus every
 *     descendant it has (scanned each second; the agent should start none) and its reaped
 *     children (cutime+cstime); cross-checked with the threads' schedstat (ns resolution);
 *   - RSS: VmRSS from /proc/PID/status each second (start, end, max), with RssAnon/RssFile.
 * Beside it, over the same 60 s, a bare `node -e 'setInterval(() => {}, 1000)'` (the floor any
 * node daemon with a 1 s timer pays) and a bare node that reads /proc/stat each second with
 * fs.promises.readFile, as the agent's sampler does. CPU is also split by thread (schedstat).
 * When a goal is missed: for CPU, the same agent is run again under `node --cpu-prof` for the
 * same 5 s + 60 s and the top self-time functions inside the 60 s are listed; for memory, the
 * RSS of a bare node process that only imports each of the agent's modules is shown.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
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

const WARMUP_MS = 5_000;
const MEASURE_MS = 60_000;
const GOAL_CPU_PCT = 0.2;
const GOAL_RSS_MB = 60;
/** Modules whose memory is shown when the RSS goal is missed: what the agent loads, imported cumulatively in this order. */
const IMPORTS = ["ssh2", "zod", "systeminformation", "@autoscaler/shared", "@autoscaler/shared/protocol", "@autoscaler/agent", "@autoscaler/cli"];

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

/** RSS of a bare node process that imports `mods` and idles 1 s. */
async function importRss(res: Resources, mods: string[]): Promise<{ rss: number; heapUsed: number }> {
  const code = `${mods.map((m) => `await import(${JSON.stringify(m)});`).join(" ")} setTimeout(() => { global.gc?.(); const m = process.memoryUsage(); console.log(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed })); }, 1000);`;
  let out = "";
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  res.scope.track(child);
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  await new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return JSON.parse(out.trim()) as { rss: number; heapUsed: number };
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  log("agent-footprint: one agent, interval 1 s, cpu_source=system, through a real sshd");
  const loadAtStart = os.loadavg()[0]!;
  const data = await withResources(async (res) => {
    const proxy = await startProxy(res.scope);
    const node = await startNode(res.scope, [proxy], { name: "footprint", settings: ["agent.cpu_source=system"], startAgent: false });
    const agent = startDaemon(res.scope, ["agent", "--config", node.ini]);
    const baseline = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    res.scope.track(baseline);
    // The agent's sampler does this each second (fs.promises.readFile goes through libuv's thread pool).
    const reader = spawn(
      process.execPath,
      ["-e", 'const fs = require("fs"); setInterval(() => fs.promises.readFile("/proc/stat", "utf8").then((t) => t.split("\\n")), 1000)'],
      { stdio: "ignore" },
    );
    res.scope.track(reader);
    await agent.waitForLog(/connected to the master/, 20_000);
    log(`agent-footprint: connected; ${WARMUP_MS / 1000} s warm-up, then ${MEASURE_MS / 1000} s measured`);
    await sleep(WARMUP_MS);
    const [m, b, rd] = await Promise.all([measure(agent.child.pid!, MEASURE_MS), measure(baseline.pid!, MEASURE_MS), measure(reader.pid!, MEASURE_MS)]);
    // The master really got the samples.
    const st = (await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/status`)).json()) as MasterStatus;
    const seen = st.nodes.find((n) => n.name === "footprint");
    if (!seen || seen.state !== "live" || seen.cpu_now === null)
      throw new Error(`the master does not show the agent live with samples: ${JSON.stringify(seen)}`);
    agent.child.kill("SIGTERM");
    const exitCode = await waitExit(agent);
    baseline.kill("SIGTERM");
    reader.kill("SIGTERM");

    const cpuMissed = m.cpuPct > GOAL_CPU_PCT;
    const rssMissed = m.rssMax > GOAL_RSS_MB * 2 ** 20;
    const profile = cpuMissed ? await profileAgent(res, node.ini, log) : undefined;
    let imports: { mod: string; rss: number; heapUsed: number }[] | undefined;
    if (rssMissed) {
      imports = [];
      imports.push({ mod: "(nothing)", ...(await importRss(res, [])) });
      for (let i = 0; i < IMPORTS.length; i++) imports.push({ mod: IMPORTS[i]!, ...(await importRss(res, IMPORTS.slice(0, i + 1))) });
    }
    return { m, b, rd, samplesInWindow: seen.samples_in_window, exitCode, profile, imports, cpuMissed, rssMissed };
  });
  const info = await machineInfo();
  const { m, b, rd } = data;

  const head = ["measure", "agent", "bare node, 1 s timer", "bare node, reads /proc/stat each second", "goal"];
  const three = (f: (x: Measured) => string) => [f(m), f(b), f(rd)];
  const rows = [
    [
      "CPU, % of one core (utime+stime from /proc/PID/stat, + descendants)",
      ...three((x) => `${x.cpuPct.toFixed(3)} %`),
      `≤ ${GOAL_CPU_PCT} %: **${data.cpuMissed ? "missed" : "met"}**`,
    ],
    ["CPU seconds in the window (own / children)", ...three((x) => `${x.selfSeconds.toFixed(2)} / ${x.childSeconds.toFixed(2)}`), ""],
    ["CPU, % of one core from the threads' schedstat (ns resolution)", ...three((x) => `${x.schedPct.toFixed(3)} %`), ""],
    [
      "RSS at start / end / max (MiB)",
      ...three((x) => `${mib(x.rssStart)} / ${mib(x.rssEnd)} / ${mib(x.rssMax)}`),
      `≤ ${GOAL_RSS_MB} MB: **${data.rssMissed ? "missed" : "met"}**`,
    ],
    ["RSS at end: anonymous / file-backed (MiB)", ...three((x) => `${mib(x.anonEnd)} / ${mib(x.fileEnd)}`), ""],
    ["threads", ...three((x) => String(x.threads)), ""],
    ["child processes seen (scanned each second)", ...three((x) => (x.childrenSeen.length === 0 ? "none" : x.childrenSeen.join(", "))), ""],
  ];

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
  const parts: string[] = [
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
  if (data.imports) {
    const all = data.imports.at(-1)!;
    parts.push(
      "",
      `Of the agent's ${mib(m.rssEnd)} MiB at the end, ${mib(m.fileEnd)} MiB are file-backed pages (mostly the node binary and its libraries, the same pages every node process on the machine maps) and ${mib(m.anonEnd)} MiB anonymous (V8 heap, compiled code, buffers: the agent's own). ` +
        `A bare node with a 1 s timer already holds ${mib(b.rssEnd)} MiB (${mib(b.anonEnd)} anonymous). Loading the agent's modules alone, without running anything, brings a bare node to ${mib(all.rss)} MiB: ` +
        `most of the gap to the goal is code loaded, not data kept while reporting. Over the window RSS went from ${mib(m.rssStart)} MiB (${WARMUP_MS / 1000} s after connecting) to ${mib(m.rssEnd)} MiB` +
        (m.rssEnd <= m.rssStart * 1.05 ? ": it did not grow." : `: it grew by ${mib(m.rssEnd - m.rssStart)} MiB in ${MEASURE_MS / 1000} s.`),
      "",
      "Where the memory goes: RSS of a bare `node` process that imports the agent's modules, cumulatively in the order shown, runs nothing and idles 1 s (one process per row; the last row loads what `bin/autoscaler.js agent` loads before it starts the agent):",
      "",
      mdTable(
        ["imports so far", "RSS (MiB)", "added by this import (MiB)", "V8 heap used (MiB)"],
        data.imports.map((r, i) => [
          r.mod === "(nothing)" ? "(nothing: bare node)" : `+ \`${r.mod}\``,
          mib(r.rss),
          i === 0 ? "" : mib(r.rss - data.imports![i - 1]!.rss),
          mib(r.heapUsed),
        ]),
      ),
    );
  }

  const verdict =
    !data.cpuMissed && !data.rssMissed
      ? "both **met**"
      : [data.cpuMissed ? "CPU **missed**" : "CPU **met**", data.rssMissed ? "RSS **missed**" : "RSS **met**"].join(", ");
  const markdown = [
    "## Agent footprint",
    "",
    `Measured ${info.date} (${loadNote(loadAtStart)}). One real \`autoscaler agent\` (\`agent.interval=1\`, \`cpu_source=system\`, default log level) on a node with a web app, connected through a real OpenSSH sshd on 127.0.0.1 to a real \`autoscaler master\` (with HAProxy). ` +
      `After the agent said it was connected and a ${WARMUP_MS / 1000} s warm-up, ${MEASURE_MS / 1000} s were measured from /proc. The master showed the node live with ${data.samplesInWindow} samples in its window at the end; the agent exited with ${data.exitCode} on SIGTERM.`,
    "",
    mdTable(head, rows),
    "",
    `**Goal: at most ${GOAL_CPU_PCT} % of one core and at most ${GOAL_RSS_MB} MB RSS** — ${verdict}.`,
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
