/**
 * CPU sampling (SPEC "Agent ⇄ master"): read cheap kernel counters twice and report the
 * delta as a percentage of all cores. No child process per sample.
 */
import { promises as fs, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { CpuSource } from "@autoscaler/shared/core";

/** Yields CPU percent (0-100 of all cores) since the previous call; the first call primes and yields undefined. */
export interface Sampler {
  sample(): Promise<number | undefined>;
}

/** Linux reports process times in USER_HZ ticks, 100 per second on every mainstream architecture. */
export const USER_HZ = 100;

/** busy and total jiffies from the first `cpu` line of /proc/stat. */
export function parseProcStat(text: string): { busy: number; total: number } {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) throw new Error("no aggregate cpu line in /proc/stat");
  // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already in user/nice.
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** CPU time used by a cgroup, in microseconds: v2 `cpu.stat` usage_usec, else v1 `cpuacct.usage` (ns). */
export async function readCgroupUsageMicros(dir: string): Promise<number> {
  try {
    const stat = await fs.readFile(path.join(dir, "cpu.stat"), "utf8");
    const m = /^usage_usec (\d+)$/m.exec(stat);
    if (m) return Number(m[1]);
  } catch {
    // not cgroup v2: try v1 below
  }
  const ns = await fs.readFile(path.join(dir, "cpuacct.usage"), "utf8").catch(() => {
    throw new Error(`${dir} has neither cpu.stat (cgroup v2) nor cpuacct.usage (cgroup v1)`);
  });
  return Number(ns.trim()) / 1000;
}

/** utime + stime of a process, in ticks, from /proc/PID/stat (the command name may hold spaces and parentheses). */
export function parsePidStatTicks(text: string): number {
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return Number(fields[11]) + Number(fields[12]);
}

/** Options: where the counters live (tests point these at their own files), the clock, the core count. */
export interface SamplerOptions {
  procRoot?: string;
  now?: () => number;
  cores?: number;
}

function clampPercent(p: number): number {
  return Math.max(0, Math.min(100, Math.round(p * 100) / 100));
}

/** A sampler for a `cpu_source` setting. */
export function createSampler(source: CpuSource, options: SamplerOptions = {}): Sampler {
  const procRoot = options.procRoot ?? "/proc";
  const now = options.now ?? (() => performance.now());
  const cores = options.cores ?? os.availableParallelism();
  if (source.kind === "system") {
    let last: { busy: number; total: number } | undefined;
    return {
      async sample() {
        // A synchronous read: /proc files are generated in memory and tiny, and the promise API's
        // thread-pool round trips cost more than the read itself (measured in BENCHMARKS.md).
        const cur = parseProcStat(readFileSync(path.join(procRoot, "stat"), "utf8"));
        const prev = last;
        last = cur;
        if (!prev || cur.total <= prev.total) return undefined;
        return clampPercent(((cur.busy - prev.busy) / (cur.total - prev.total)) * 100);
      },
    };
  }
  // cgroup and pid: CPU seconds used over wall seconds elapsed, spread over every core.
  const readSeconds =
    source.kind === "cgroup"
      ? async () => (await readCgroupUsageMicros(source.path)) / 1e6
      : async () => {
          const pid = (await fs.readFile(source.pidFile, "utf8")).trim();
          if (!/^\d+$/.test(pid)) throw new Error(`${source.pidFile} does not hold a process id`);
          return parsePidStatTicks(readFileSync(path.join(procRoot, pid, "stat"), "utf8")) / USER_HZ;
        };
  let last: { used: number; at: number } | undefined;
  return {
    async sample() {
      const cur = { used: await readSeconds(), at: now() };
      const prev = last;
      last = cur;
      if (!prev || cur.at <= prev.at || cur.used < prev.used) return undefined;
      return clampPercent(((cur.used - prev.used) / ((cur.at - prev.at) / 1000) / cores) * 100);
    },
  };
}
