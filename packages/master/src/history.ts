/**
 * The status page's memory: bounded rings of what the charts draw. Each decision tick adds one
 * sample (capacity, the live nodes' mean and highest CPU, each node's CPU); the last
 * FINE_SAMPLES are kept as they are, and every sample also goes into per-minute buckets (24 h
 * for the cluster, 1 h per node). Scale-up and scale-down events are kept as markers. Pure: the
 * caller passes the time; nothing here reads a clock or the registry. `/status` never reads it.
 */
import type { Capacity } from "./scaler.js";

/** Per-minute cluster figures kept: 24 h. */
export const HISTORY_MINUTES = 24 * 60;
/** Per-minute CPU kept for each node: 1 h. */
export const NODE_MINUTES = 60;
/** Per-tick cluster samples kept (15 min at the default 1 s interval; more than any usual window). */
export const FINE_SAMPLES = 900;
/** Scale-up and scale-down markers kept (oldest dropped first; also dropped after 24 h). */
export const MAX_MARKERS = 500;
/** Nodes whose CPU history is kept at most; the ones not seen for longest go first. */
export const MAX_NODES_KEPT = 5000;

const MINUTE_MS = 60_000;

/** What {@link clusterSample} reads of a registry record. */
interface SampledNode {
  readings: readonly { cpu: number }[];
}

/** One sample of the cluster: capacity and the live nodes' CPU (percent of all cores; null with no live node). */
export interface ClusterSample extends Capacity {
  at: number;
  cpuMean: number | null;
  cpuMax: number | null;
}

/** A scale-up or scale-down as the event log said it (the message carries the reason). */
export interface Marker {
  at: number;
  kind: string;
  message: string;
}

/** A time series in columns, as uPlot reads it: `t` in seconds since the epoch, values aligned with it. */
export interface Columns<K extends string> {
  t: number[];
  values: Record<K, (number | null)[]>;
}

/** The cluster's series fields. */
export const CLUSTER_FIELDS = ["active", "pending", "leaving", "desired", "min", "max", "cpuMean", "cpuMax"] as const;
export type ClusterField = (typeof CLUSTER_FIELDS)[number];

/** The history: feed it with {@link History.record} and {@link History.mark}, read it for the page. */
export interface History {
  /** One tick: the cluster's sample and each node's latest CPU (null: no reading). */
  record(sample: ClusterSample, nodes: Iterable<readonly [string, number | null]>): void;
  /** A scale-up or scale-down happened. */
  mark(marker: Marker): void;
  /** The last `ms` of per-tick samples. */
  fine(sinceMs: number): Columns<ClusterField>;
  /** Per-minute samples since `sinceMs` (the current minute included, as far as it went). */
  minutes(sinceMs: number): Columns<ClusterField>;
  /** A node's per-minute mean CPU over the last hour, or undefined when none is kept. */
  nodeMinutes(name: string): Columns<"cpu"> | undefined;
  /** Markers since `sinceMs`, oldest first. */
  markers(sinceMs: number): Marker[];
  /** How many nodes, per-minute samples and markers are held (for the benchmark). */
  size(): { nodes: number; minutes: number; fine: number; markers: number };
}

/**
 * A tick's cluster sample: the scaler's capacity (or, while it starts, the live nodes alone) and
 * the mean and highest latest CPU of the live nodes.
 */
export function clusterSample<N extends SampledNode>(
  at: number,
  capacity: Omit<ClusterSample, "at" | "cpuMean" | "cpuMax"> | undefined,
  nodes: readonly N[],
  stateOf: (node: N) => string,
): ClusterSample {
  let sum = 0;
  let count = 0;
  let max: number | null = null;
  for (const n of nodes) {
    const cpu = n.readings.at(-1)?.cpu;
    if (cpu === undefined || stateOf(n) !== "live") continue;
    sum += cpu;
    count++;
    max = max === null ? cpu : Math.max(max, cpu);
  }
  const c = capacity ?? { active: count, pending: 0, leaving: 0, desired: count, min: 0, max: 0 };
  return {
    at,
    active: c.active,
    pending: c.pending,
    leaving: c.leaving,
    desired: c.desired,
    min: c.min,
    max: c.max,
    cpuMean: count === 0 ? null : sum / count,
    cpuMax: max,
  };
}

/** A fixed-size ring of items, oldest dropped first. */
function createRing<T>(capacity: number) {
  const items: (T | undefined)[] = new Array<T | undefined>(capacity);
  let start = 0;
  let length = 0;
  return {
    push(item: T) {
      items[(start + length) % capacity] = item;
      if (length < capacity) length++;
      else start = (start + 1) % capacity;
    },
    /** The items for which `keep` holds, oldest first. */
    filter(keep: (item: T) => boolean): T[] {
      const out: T[] = [];
      for (let i = 0; i < length; i++) {
        const item = items[(start + i) % capacity]!;
        if (keep(item)) out.push(item);
      }
      return out;
    },
    get length() {
      return length;
    },
  };
}

/** A minute bucket of cluster samples: the capacity figures of the minute's last sample, CPU averaged (and its highest kept). */
function mergeMinute(acc: { last: ClusterSample; cpuSum: number; cpuCount: number; cpuMax: number | null }, s: ClusterSample) {
  acc.last = s;
  if (s.cpuMean !== null) {
    acc.cpuSum += s.cpuMean;
    acc.cpuCount++;
  }
  if (s.cpuMax !== null) acc.cpuMax = acc.cpuMax === null ? s.cpuMax : Math.max(acc.cpuMax, s.cpuMax);
}

/** One node's per-minute CPU: the mean of each minute's ticks, in slots indexed by minute number. */
interface NodeMinutes {
  means: Float32Array;
  minuteOf: Int32Array;
  /** The minute being filled. */
  current: number;
  sum: number;
  count: number;
  lastSeen: number;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

function toColumns(samples: ClusterSample[]): Columns<ClusterField> {
  const values = Object.fromEntries(CLUSTER_FIELDS.map((f) => [f, [] as (number | null)[]])) as Record<ClusterField, (number | null)[]>;
  const t: number[] = [];
  for (const s of samples) {
    t.push(Math.round(s.at / 100) / 10);
    for (const f of CLUSTER_FIELDS) {
      const v = s[f];
      values[f].push(v === null ? null : round1(v));
    }
  }
  return { t, values };
}

/** Create an empty history. */
export function createHistory(): History {
  const fine = createRing<ClusterSample>(FINE_SAMPLES);
  const minutes = createRing<ClusterSample>(HISTORY_MINUTES);
  const markers = createRing<Marker>(MAX_MARKERS);
  let open: { minute: number; last: ClusterSample; cpuSum: number; cpuCount: number; cpuMax: number | null } | undefined;
  const nodes = new Map<string, NodeMinutes>();

  const closed = (o: NonNullable<typeof open>): ClusterSample => ({
    ...o.last,
    at: o.minute * MINUTE_MS,
    cpuMean: o.cpuCount === 0 ? null : o.cpuSum / o.cpuCount,
    cpuMax: o.cpuMax,
  });

  const recordNode = (name: string, cpu: number | null, at: number) => {
    const minute = Math.floor(at / MINUTE_MS);
    let n = nodes.get(name);
    if (!n) {
      if (cpu === null) return;
      n = { means: new Float32Array(NODE_MINUTES), minuteOf: new Int32Array(NODE_MINUTES).fill(-1), current: minute, sum: 0, count: 0, lastSeen: at };
      nodes.set(name, n);
    }
    if (minute !== n.current) {
      if (n.count > 0) closeNodeMinute(n);
      n.current = minute;
      n.sum = 0;
      n.count = 0;
    }
    if (cpu !== null) {
      n.sum += cpu;
      n.count++;
      n.lastSeen = at;
      // Re-insert: the map's order is then least recently seen first, for the cap below.
      nodes.delete(name);
      nodes.set(name, n);
    }
  };
  const closeNodeMinute = (n: NodeMinutes) => {
    const slot = n.current % NODE_MINUTES;
    n.means[slot] = n.sum / n.count;
    n.minuteOf[slot] = n.current;
  };
  const dropStaleNodes = (at: number) => {
    for (const [name, n] of nodes) {
      if (nodes.size <= MAX_NODES_KEPT && n.lastSeen > at - NODE_MINUTES * MINUTE_MS) break;
      nodes.delete(name);
    }
  };

  return {
    record(sample, nodeCpus) {
      fine.push(sample);
      const minute = Math.floor(sample.at / MINUTE_MS);
      if (open && open.minute !== minute) {
        minutes.push(closed(open));
        open = undefined;
      }
      open ??= { minute, last: sample, cpuSum: 0, cpuCount: 0, cpuMax: null };
      mergeMinute(open, sample);
      for (const [name, cpu] of nodeCpus) recordNode(name, cpu, sample.at);
      dropStaleNodes(sample.at);
    },
    mark(marker) {
      markers.push(marker);
    },
    fine: (sinceMs) => toColumns(fine.filter((s) => s.at >= sinceMs)),
    minutes(sinceMs) {
      const kept = minutes.filter((s) => s.at >= sinceMs);
      if (open) kept.push(closed(open));
      return toColumns(kept);
    },
    nodeMinutes(name) {
      const n = nodes.get(name);
      if (!n) return undefined;
      const t: number[] = [];
      const cpu: (number | null)[] = [];
      for (let m = n.current - NODE_MINUTES + 1; m <= n.current; m++) {
        const slot = ((m % NODE_MINUTES) + NODE_MINUTES) % NODE_MINUTES;
        const value = m === n.current ? (n.count > 0 ? n.sum / n.count : undefined) : n.minuteOf[slot] === m ? n.means[slot] : undefined;
        if (value === undefined) continue;
        t.push(m * 60);
        cpu.push(round1(value));
      }
      return { t, values: { cpu } };
    },
    markers: (sinceMs) => markers.filter((m) => m.at >= sinceMs),
    size: () => ({ nodes: nodes.size, minutes: minutes.length, fine: fine.length, markers: markers.length }),
  };
}
