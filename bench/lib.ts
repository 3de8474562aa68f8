/**
 * Shared bits of the benchmarks: statistics, timing, tables, spawning and a cleanup registry
 * that stops every process a benchmark started (by pid) and removes its temp folders, also
 * on error or Ctrl-C.
 */
import { spawn } from "node:child_process";
import { judgeReload, showProc, type ProcTable } from "@autoscaler/shared";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Scope, sleep } from "../test/helpers/process.js";

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(BENCH_DIR, "..");
export const HAPROXY = "haproxy";

/** What one benchmark hands back to bench/run.ts. */
export interface BenchResult {
  /** Section id: the name used on the command line and in the markers. */
  id: string;
  /** The plain-text tables for stdout. */
  text: string;
  /** The Markdown section body (without the markers). */
  markdown: string;
  /** Whether the goal of this benchmark was met (undefined: no goal). */
  goalMet?: boolean;
}

/* ---------------------------------------------------------------- statistics */

export interface Stats {
  n: number;
  median: number;
  p95: number;
  min: number;
  max: number;
  mean: number;
}

/** Quantile by linear interpolation between closest ranks. */
function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  return {
    n: s.length,
    median: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    min: s[0] ?? NaN,
    max: s[s.length - 1] ?? NaN,
    mean: s.reduce((a, b) => a + b, 0) / (s.length || 1),
  };
}

/** A number of milliseconds, with precision that suits its size. */
export function ms(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  if (v < 0) return `-${ms(-v)}`;
  if (v < 1) return v.toFixed(3);
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return v.toFixed(0);
}

/** "median (p95)" in ms. */
export function medP95(s: Stats): string {
  return `${ms(s.median)} (${ms(s.p95)})`;
}

export function pct(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  return v < 1 ? `${v.toFixed(2)} %` : `${v.toFixed(1)} %`;
}

/* ---------------------------------------------------------------- tables */

/** A Markdown table. */
export function mdTable(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map((c) => String(c).replace(/\|/g, "\\|")).join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The same table aligned for a terminal. */
export function textTable(head: string[], rows: (string | number)[][]): string {
  const all = [head, ...rows].map((r) => r.map(String));
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [fmt(all[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...all.slice(1).map(fmt)].join("\n");
}

/* ---------------------------------------------------------------- processes */

/** The tests' one sleep (test/helpers/process.ts). */
export { sleep };

/** Spawn a command (no shell) and resolve with its exit code and output once it exits. */
export function runCommand(
  cmd: string,
  args: string[],
  options: { cwd?: string; timeoutMs?: number; onSpawn?: (pid: number) => void } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Time `haproxy -c -f file` from spawn to exit; throws if the check fails. */
export async function timeHaproxyCheck(file: string, cwd?: string): Promise<number> {
  const t0 = performance.now();
  const r = await runCommand(HAPROXY, ["-c", "-f", file], { cwd });
  const t = performance.now() - t0;
  if (r.code !== 0) throw new Error(`haproxy -c -f ${file} failed (${r.code}): ${r.stderr || r.stdout}`);
  return t;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Everything one benchmark started. `scope` is the test helpers' Scope (child processes, HTTP
 * servers, temp folders); `pids` are processes that are not our children (daemonised HAProxy),
 * stopped by pid with SIGTERM, then SIGKILL.
 */
export class Resources {
  readonly scope = new Scope();
  private readonly pids = new Set<number>();
  private done = false;

  constructor() {
    active.add(this);
  }

  trackPid(pid: number): void {
    this.pids.add(pid);
  }

  async tempDir(prefix = "autoscaler-bench-"): Promise<string> {
    return this.scope.tempDir(prefix);
  }

  /** Pids that were tracked and are still running. */
  alivePids(): number[] {
    return [...this.pids].filter(isAlive);
  }

  async cleanup(): Promise<void> {
    if (this.done) return;
    this.done = true;
    active.delete(this);
    const pids = this.alivePids();
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // gone
      }
    }
    const deadline = Date.now() + 3000;
    while (pids.some(isAlive) && Date.now() < deadline) await sleep(25);
    for (const pid of pids.filter(isAlive)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await this.scope.cleanup();
    const left = pids.filter(isAlive);
    if (left.length > 0) process.stderr.write(`warning: processes still alive after cleanup: ${left.join(", ")}\n`);
  }
}

const active = new Set<Resources>();

/** Clean up whatever is still running (used on Ctrl-C and by run.ts at the end). */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...active].map((r) => r.cleanup()));
}

let signalsInstalled = false;
/** On SIGINT/SIGTERM: stop what the benchmarks started, remove their folders, exit. */
export function installSignalCleanup(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up\n`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }
}

/** Run `body` with fresh Resources, always cleaning up. */
export async function withResources<T>(body: (res: Resources) => Promise<T>): Promise<T> {
  const res = new Resources();
  try {
    return await body(res);
  } finally {
    await res.cleanup();
  }
}

/* ---------------------------------------------------------------- machine */

export async function machineInfo(): Promise<{ cpus: number; cpuModel: string; memGiB: string; haproxy: string; node: string; date: string }> {
  const v = await runCommand(HAPROXY, ["-v"]).catch(() => ({ stdout: "haproxy not found" }));
  return {
    cpus: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel: os.cpus()[0]?.model?.trim() ?? "unknown",
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    haproxy: v.stdout.split("\n")[0]?.trim() ?? "",
    node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  };
}

/** The 1-minute load average now, as a sentence part for "Measured …" lines. */
export function loadNote(loadAtStart: number): string {
  const cpus = os.availableParallelism?.() ?? os.cpus().length;
  return `1-min load average when it started: ${loadAtStart.toFixed(2)} on ${cpus} CPUs${loadAtStart > cpus / 2 ? " (the machine was busy with other work, so absolute times are inflated)" : ""}`;
}

/** The shipped template's text. */
export async function shippedTemplate(): Promise<string> {
  return fs.readFile(path.join(REPO_ROOT, "etc", "haproxy.cfg.tmpl"), "utf8");
}

/* ---------------------------------------------------------------- more statistics */

/** The q-quantile (0..1) of `samples`, by linear interpolation between closest ranks. */
export function quantileOf(samples: number[], q: number): number {
  return quantile(
    [...samples].sort((a, b) => a - b),
    q,
  );
}

/* ---------------------------------------------------------------- /proc readers */

/** Linux reports process times in USER_HZ ticks, 100 per second on every mainstream architecture. */
export const TICKS_PER_SECOND = 100;

/** CPU times of one process from /proc/PID/stat, in seconds: its own (utime+stime, all threads) and its reaped children's (cutime+cstime). */
export interface ProcCpu {
  self: number;
  reapedChildren: number;
  ppid: number;
  comm: string;
}

/** Read /proc/PID/stat; undefined when the process is gone. */
export async function readProcCpu(pid: number): Promise<ProcCpu | undefined> {
  let text: string;
  try {
    text = await fs.readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  const f = text.slice(close + 2).split(" ");
  // f[0] is field 3 (state): ppid is field 4, utime/stime 14/15, cutime/cstime 16/17.
  return {
    comm: text.slice(open + 1, close),
    ppid: Number(f[1]),
    self: (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND,
    reapedChildren: (Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND,
  };
}

/** Time the process's threads spent on a CPU, in seconds, from /proc/PID/task/TID/schedstat (ns resolution; threads that ended are not counted). */
export async function readSchedSeconds(pid: number): Promise<number | undefined> {
  try {
    const tids = await fs.readdir(`/proc/${pid}/task`);
    let ns = 0;
    for (const tid of tids) {
      const t = await fs.readFile(`/proc/${pid}/task/${tid}/schedstat`, "utf8").catch(() => "0");
      ns += Number(t.split(" ")[0]);
    }
    return ns / 1e9;
  } catch {
    return undefined;
  }
}

/** Each thread of a process: its name (/proc/PID/task/TID/comm) and seconds on a CPU (schedstat). */
export async function readThreads(pid: number): Promise<Map<number, { comm: string; seconds: number }>> {
  const out = new Map<number, { comm: string; seconds: number }>();
  let tids: string[] = [];
  try {
    tids = await fs.readdir(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const [comm, sched] = await Promise.all([
        fs.readFile(`/proc/${pid}/task/${tid}/comm`, "utf8"),
        fs.readFile(`/proc/${pid}/task/${tid}/schedstat`, "utf8"),
      ]);
      out.set(Number(tid), { comm: comm.trim(), seconds: Number(sched.split(" ")[0]) / 1e9 });
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** Memory of one process from /proc/PID/status and smaps_rollup, in bytes; undefined when it is gone. */
export async function readProcMemory(pid: number): Promise<{ rss: number; rssAnon: number; rssFile: number; threads: number } | undefined> {
  try {
    const status = await fs.readFile(`/proc/${pid}/status`, "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb("VmRSS"), rssAnon: kb("RssAnon"), rssFile: kb("RssFile"), threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? NaN) };
  } catch {
    return undefined;
  }
}

/** Proportional set size (shared pages split among the processes mapping them) from /proc/PID/smaps_rollup, in bytes; undefined when gone. */
export async function readPss(pid: number): Promise<number | undefined> {
  try {
    const text = await fs.readFile(`/proc/${pid}/smaps_rollup`, "utf8");
    return Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? NaN) * 1024;
  } catch {
    return undefined;
  }
}

/** Every live descendant of `pid` (children, grandchildren, …), found by scanning /proc for parent pids. */
export async function descendants(pid: number): Promise<{ pid: number; comm: string }[]> {
  const byParent = new Map<number, { pid: number; comm: string }[]>();
  for (const name of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const c = await readProcCpu(Number(name));
    if (!c) continue;
    const list = byParent.get(c.ppid) ?? [];
    list.push({ pid: Number(name), comm: c.comm });
    byParent.set(c.ppid, list);
  }
  const out: { pid: number; comm: string }[] = [];
  const walk = (p: number) => {
    for (const child of byParent.get(p) ?? []) {
      out.push(child);
      walk(child.pid);
    }
  };
  walk(pid);
  return out;
}

/** CPU seconds of a process and all its live descendants (own time each), plus the process's reaped children. */
export async function treeCpuSeconds(pid: number): Promise<{ self: number; children: number; childPids: { pid: number; comm: string }[] }> {
  const root = await readProcCpu(pid);
  if (!root) throw new Error(`process ${pid} is gone`);
  const kids = await descendants(pid);
  let children = root.reapedChildren;
  for (const k of kids) children += (await readProcCpu(k.pid))?.self ?? 0;
  return { self: root.self, children, childPids: kids };
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return Number.isFinite(bytes) ? (bytes / 2 ** 20).toFixed(1) : "n/a";
}

/** One JSON log line's fields, or undefined for a line that is not JSON. */
export function parseLogLine(line: string): ({ time: string; msg: string; level: string } & Record<string, unknown>) | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line) as { time: string; msg: string; level: string } & Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** All JSON log lines of a daemon's output. */
export function logLines(text: string): ({ time: string; msg: string; level: string; t: number } & Record<string, unknown>)[] {
  const out: ({ time: string; msg: string; level: string; t: number } & Record<string, unknown>)[] = [];
  for (const line of text.split("\n")) {
    const p = parseLogLine(line);
    if (p) out.push({ ...p, t: Date.parse(p.time) });
  }
  return out;
}

/**
 * HAProxy alone: send SIGUSR2 to its master and poll the master CLI's `show proc` every
 * `pollMs` until a new worker is current (judged against `before`); returns that worker's pid.
 * Gives up after 10 s from `t0`.
 */
export async function signalReloadAndConfirm(masterSocket: string, before: ProcTable, t0: number, pollMs: number): Promise<number> {
  process.kill(before.master.pid, "SIGUSR2");
  for (;;) {
    const after = await showProc(masterSocket).catch(() => undefined);
    if (after) {
      const v = judgeReload(before, after);
      if (v.state === "confirmed") return v.workerPid;
    }
    if (performance.now() - t0 > 10_000) throw new Error("HAProxy did not show a new worker within 10 s");
    await sleep(pollMs);
  }
}
