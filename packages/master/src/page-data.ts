/**
 * What the status page's JSON endpoint (`/page/data`) answers: the status's summary, the
 * history's series for the chosen range, the markers, the events newest first, and a CPU chart
 * for the first CHARTED_NODES nodes (and the one the page asked for). Pure: built from a status
 * document, the history and each node's readings.
 */
import type { CpuReading } from "./registry.js";
import type { ScalingPolicy } from "./policy.js";
import type { MasterStatus, NodeStatus } from "./status.js";
import type { ClusterField, Columns, History, Marker } from "./history.js";

/** Nodes that carry their CPU charts in every answer (the page draws one per row); others on request. */
export const CHARTED_NODES = 50;
/** The ranges the capacity chart offers. */
export const RANGES = ["window", "hour", "day"] as const;
export type Range = (typeof RANGES)[number];

/** A node row of the page, with its charts when it carries them. */
export interface PageNode {
  name: string;
  address: string;
  port: number;
  state: NodeStatus["state"];
  source: NodeStatus["source"];
  credential: NodeStatus["credential"];
  healthy: boolean | null;
  cpu_now: number | null;
  cpu_window: number | null;
  last_seen_seconds_ago: number | null;
  /** Per-reading CPU over the window, and per-minute over the last hour (absent: not charted in this answer). */
  chart?: { window: Columns<"cpu">; hour: Columns<"cpu"> };
}

/** The page's whole answer. */
export interface PageData {
  now: number;
  version: string;
  role: MasterStatus["role"];
  role_reason: string;
  cluster: { member: string; leader: string | null; etcd_up: boolean; leader_changes: number; problem: string | null } | null;
  paused: boolean;
  cooldown: MasterStatus["cooldown"];
  last_decision: MasterStatus["last_decision"];
  policy: { mode: ScalingPolicy["mode"]; target_cpu: number | null; up_threshold: number | null; down_threshold: number | null; window_seconds: number };
  capacity: MasterStatus["capacity"];
  haproxy: MasterStatus["haproxy"];
  range: Range;
  series: Columns<ClusterField>;
  markers: Marker[];
  events: MasterStatus["events"];
  nodes: PageNode[];
}

/** Inputs to {@link buildPageData}. */
export interface PageInputs {
  status: MasterStatus;
  history: History;
  policy: ScalingPolicy;
  readings: (name: string) => readonly CpuReading[] | undefined;
  now: number;
  range: Range;
  /** A node whose chart the page wants although it is not among the first CHARTED_NODES. */
  node?: string | undefined;
}

/** How far back each range reaches, in ms. */
export function rangeMs(range: Range, windowMs: number): number {
  return range === "window" ? windowMs : range === "hour" ? 3_600_000 : 86_400_000;
}

/** The range a query asks for; anything else is the hour. */
export function parseRange(value: string | null): Range {
  return (RANGES as readonly string[]).includes(value ?? "") ? (value as Range) : "hour";
}

/** A node's readings inside the window, as a column series. */
export function windowColumns(readings: readonly CpuReading[], sinceMs: number): Columns<"cpu"> {
  const t: number[] = [];
  const cpu: number[] = [];
  for (const r of readings) {
    if (r.at < sinceMs) continue;
    t.push(Math.round(r.at / 100) / 10);
    cpu.push(Math.round(r.cpu * 10) / 10);
  }
  return { t, values: { cpu } };
}

/** Build the page's answer. */
export function buildPageData(i: PageInputs): PageData {
  const s = i.status;
  const windowMs = i.policy.windowMs;
  const since = i.now - rangeMs(i.range, windowMs);
  const target = i.policy.mode === "target";
  const nodes = s.nodes.map((n, index): PageNode => {
    const row: PageNode = {
      name: n.name,
      address: n.address,
      port: n.port,
      state: n.state,
      source: n.source,
      credential: n.credential,
      healthy: n.healthy,
      cpu_now: n.cpu_now,
      cpu_window: n.cpu_window,
      last_seen_seconds_ago: n.last_seen_seconds_ago,
    };
    if (index >= CHARTED_NODES && n.name !== i.node) return row;
    const hour = i.history.nodeMinutes(n.name) ?? { t: [], values: { cpu: [] } };
    return { ...row, chart: { window: windowColumns(i.readings(n.name) ?? [], i.now - windowMs), hour } };
  });
  return {
    now: i.now,
    version: s.version,
    role: s.role,
    role_reason: s.role_reason,
    cluster: s.cluster
      ? {
          member: s.cluster.member,
          leader: s.cluster.leader?.member ?? null,
          etcd_up: s.cluster.etcd.up,
          leader_changes: s.cluster.leader_changes,
          problem: s.cluster.problem,
        }
      : null,
    paused: s.paused,
    cooldown: s.cooldown,
    last_decision: s.last_decision,
    policy: {
      mode: i.policy.mode,
      target_cpu: target ? i.policy.targetCpu : null,
      up_threshold: target ? null : i.policy.upThreshold,
      down_threshold: target ? null : i.policy.downThreshold,
      window_seconds: windowMs / 1000,
    },
    capacity: s.capacity,
    haproxy: s.haproxy,
    range: i.range,
    series: i.range === "window" ? i.history.fine(since) : i.history.minutes(since),
    markers: i.history.markers(since),
    events: [...s.events].reverse(),
    nodes,
  };
}
