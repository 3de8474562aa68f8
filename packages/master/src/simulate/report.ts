/** What `simulate` prints: an aligned table for the terminal, or a small JSON document. */
import type { ModelOptions, SimulationResult, TimelinePoint } from "./model.js";

/** What was replayed, for the report's header and JSON. */
export interface RunInfo {
  /** The trace file as given on the command line. */
  file: string;
  /** Epoch ms of the first minute replayed (0 for a CPU series). */
  startMs: number;
  minutes: number;
  startDay: number;
  days: number | undefined;
  scale: number;
  model: ModelOptions;
}

/** One policy's figures as `--json` prints them; `timeline` only when asked for. */
export interface ResultJson extends Omit<SimulationResult, "timeline"> {
  timeline?: TimelinePoint[];
}

/** The `--json` document. */
export interface SimulationJson {
  trace: { file: string; start: string | null; minutes: number; startDay: number; days: number | null; scale: number };
  model: ModelOptions;
  results: ResultJson[];
}

const fixed = (x: number, digits: number) => x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** The results as a plain-text table: the policy left-aligned, the figures right-aligned. */
export function formatResultsTable(results: readonly SimulationResult[]): string {
  const header = ["POLICY", "NODE-HOURS", "MIN CPU>90%", "MIN CPU>100%", "EVENTS", "PEAK NODES", "DECISIONS/S"];
  const rows = results.map((r) => [
    r.policy,
    fixed(r.nodeHours, 1),
    fixed(r.overloadMinutes90, 1),
    fixed(r.overloadMinutes100, 1),
    fixed(r.events, 0),
    fixed(r.peakNodes, 0),
    fixed(r.decisionsPerSecond, 0),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/** One line saying what was replayed, printed above the table. */
export function describeRun(info: RunInfo): string {
  const from = info.startMs === 0 ? "a CPU series" : new Date(info.startMs).toISOString().replace(":00.000Z", "Z");
  const m = info.model;
  return (
    `${info.file}: ${info.minutes} minutes from ${from} (day ${info.startDay}${info.days === undefined ? " to the end" : `, ${info.days} day(s)`}), ×${info.scale}; ` +
    `a node serves ${m.nodeCapacity} req/min at 100 %, boots in ${m.bootMs / 1000} s, drains in ${m.drainMs / 1000} s, samples every ${m.sampleIntervalMs / 1000} s` +
    `${m.skew ? `, skew ${m.skew}` : ""}${m.jitter ? `, jitter ${m.jitter}` : ""}${m.skew || m.jitter ? `, seed ${m.seed ?? 1}` : ""}\n`
  );
}

/** The `--json` document: the run, and each policy's figures (the per-minute timeline only with `timeline`). */
export function resultsJson(info: RunInfo, results: readonly SimulationResult[], opts: { timeline?: boolean } = {}): SimulationJson {
  return {
    trace: {
      file: info.file,
      start: info.startMs === 0 ? null : new Date(info.startMs).toISOString(),
      minutes: info.minutes,
      startDay: info.startDay,
      days: info.days ?? null,
      scale: info.scale,
    },
    model: info.model,
    results: results.map(({ timeline, ...r }) => ({
      ...r,
      nodeHours: round3(r.nodeHours),
      overloadMinutes90: round3(r.overloadMinutes90),
      overloadMinutes100: round3(r.overloadMinutes100),
      wallMs: Math.round(r.wallMs),
      decisionsPerSecond: Math.round(r.decisionsPerSecond),
      ...(opts.timeline ? { timeline } : {}),
    })),
  };
}
