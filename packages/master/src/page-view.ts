/**
 * The status page's view arithmetic, without a DOM: which series each chart draws, the policy's
 * guide lines, the event filter, the words of the summary. The browser bundle (ui/app.ts)
 * imports it; the unit tests run it in Node.
 */
import type { ClusterField, Columns, Marker } from "./history.js";
import type { PageData } from "./page-data.js";

/** One drawn series: its label, colour and values aligned with the chart's x. */
export interface DrawnSeries {
  label: string;
  color: string;
  values: (number | null)[];
  /** A dashed guide (min_nodes, a threshold) rather than a measured series. */
  dash?: boolean;
}

/** A chart's data: x in seconds since the epoch, and its series. */
export interface ChartData {
  x: number[];
  series: DrawnSeries[];
}

const CAPACITY: { field: ClusterField; label: string; color: string; dash?: boolean }[] = [
  { field: "active", label: "active", color: "#2b7a2b" },
  { field: "pending", label: "pending", color: "#d08a00" },
  { field: "leaving", label: "leaving", color: "#b03030" },
  { field: "desired", label: "desired", color: "#1f5fbf" },
  { field: "min", label: "min_nodes", color: "#777777", dash: true },
  { field: "max", label: "max_nodes", color: "#444444", dash: true },
];

/** Capacity over time: active, pending, leaving, desired, with min_nodes and max_nodes as dashed lines. */
export function capacityChart(series: Columns<ClusterField>): ChartData {
  return { x: series.t, series: CAPACITY.map((c) => ({ label: c.label, color: c.color, values: series.values[c.field], ...(c.dash ? { dash: true } : {}) })) };
}

/** The policy's guide lines on the CPU chart: the target in target mode, else both thresholds. */
export function cpuGuides(policy: PageData["policy"]): { label: string; value: number }[] {
  if (policy.target_cpu !== null) return [{ label: `target_cpu ${policy.target_cpu} %`, value: policy.target_cpu }];
  const out: { label: string; value: number }[] = [];
  if (policy.up_threshold !== null) out.push({ label: `scale_up_threshold ${policy.up_threshold} %`, value: policy.up_threshold });
  if (policy.down_threshold !== null) out.push({ label: `scale_down_threshold ${policy.down_threshold} %`, value: policy.down_threshold });
  return out;
}

/** The live nodes' CPU over time (mean and highest), with the policy's guides as dashed lines. */
export function cpuChart(series: Columns<ClusterField>, policy: PageData["policy"]): ChartData {
  const guides = cpuGuides(policy).map((g, i) => ({ label: g.label, color: i === 0 ? "#b03030" : "#2b7a2b", values: series.t.map(() => g.value), dash: true }));
  return {
    x: series.t,
    series: [
      { label: "mean CPU %", color: "#1f5fbf", values: series.values.cpuMean },
      { label: "highest CPU %", color: "#8a4fbf", values: series.values.cpuMax },
      ...guides,
    ],
  };
}

/** A node's CPU chart: the window's readings, or per-minute means over the hour. */
export function nodeChart(columns: Columns<"cpu">): ChartData {
  return { x: columns.t, series: [{ label: "CPU %", color: "#1f5fbf", values: columns.values.cpu }] };
}

/** How many drawn points a chart has (values that are not null). */
export function pointCount(chart: ChartData): number {
  return chart.series.filter((s) => !s.dash).reduce((n, s) => n + s.values.filter((v) => v !== null).length, 0);
}

/** The event kinds present, sorted, for the filter. */
export function eventKinds(events: PageData["events"]): string[] {
  return [...new Set(events.map((e) => e.kind))].sort();
}

/** The events of one kind ("" for all), in the order given (newest first). */
export function filterEvents(events: PageData["events"], kind: string): PageData["events"] {
  return kind === "" ? events : events.filter((e) => e.kind === kind);
}

/** A marker's hover text: when, what, why. */
export function markerText(m: Marker): string {
  return `${new Date(m.at).toISOString()} ${m.kind}: ${m.message}`;
}

/** The role line: decider or follower, and the etcd leader when there is one. */
export function roleText(d: PageData): string {
  const c = d.cluster;
  if (!c) return `${d.role} (${d.role_reason})`;
  const leader = c.leader === null ? "no leader" : c.leader === c.member ? "this master leads" : `leader ${c.leader}`;
  return `${d.role} as ${c.member}; ${leader}; etcd ${c.etcd_up ? "up" : "down"}; ${c.leader_changes} leader change(s)${c.problem ? `; ${c.problem}` : ""}`;
}

/** The cooldown line: seconds left each way, or none. */
export function cooldownText(c: PageData["cooldown"]): string {
  if (c.scale_up_seconds === 0 && c.scale_down_seconds === 0) return "none";
  return `up ${c.scale_up_seconds} s, down ${c.scale_down_seconds} s`;
}

/** The HAProxy figures the page lists, as label and text. */
export function haproxyRows(h: PageData["haproxy"]): [string, string][] {
  return [
    ["config", h.config],
    ["applies (generation)", String(h.applies)],
    ["last applied", h.last_applied_at ?? "never"],
    ["reloads", String(h.reloads)],
    ["runtime applies", String(h.runtime_applies)],
    ["runtime fallbacks", String(h.runtime_fallbacks)],
    ["reload path because", h.reload_because ?? "—"],
    ["reload failures", String(h.reload_failures)],
    ["check failures", String(h.check_failures)],
    ["last error", h.last_error ? `${h.last_error.at} ${h.last_error.code}: ${h.last_error.message}` : "none"],
  ];
}

/** A CPU figure for a table cell. */
export function percent(v: number | null): string {
  return v === null ? "—" : `${v.toFixed(1)} %`;
}
