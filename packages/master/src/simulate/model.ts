/**
 * The load model of `autoscaler simulate` and the loop that drives a controller through it.
 *
 * The model, tick by tick (tickMs, 1 s):
 * - Demand is constant within a minute (the trace's requests per minute).
 * - It is spread over the SERVING nodes only: evenly, or with `skew` each node gets a fixed
 *   weight 1 + N(0, skew), clamped to ≥ 0.1, normalised over the serving nodes (the k-th node
 *   launched gets the same weight in every run with the same seed, whatever the policy).
 * - A node's CPU = min(100, 100 × its requests per minute / nodeCapacity); the fleet CPU =
 *   100 × demand / (serving nodes × nodeCapacity), which may pass 100 (no serving node and
 *   some demand: overload).
 * - A launched node boots for `bootMs` (costs node-hours, takes no traffic, is not in the
 *   view), then serves: it appears in the view live and removable, first seen at that moment,
 *   with one reading every `sampleIntervalMs` (with `jitter`, cpu × (1 + N(0, jitter)) clamped
 *   to 0..100); the view keeps the last 10 to 12 minutes of readings per node.
 * - A drained node takes no traffic from that moment, still costs node-hours, and is gone
 *   `drainMs` later.
 * - The initial fleet serves from the start, first seen a day earlier, with 10 minutes of
 *   readings as if the first minute's demand had held before the trace began.
 * - The controller is called every `periodMs` (1 s by default), first at the trace's start.
 * Each tick: boots and drains that are due end, nodes sample, the controller acts, then the
 * tick is accounted with the nodes as they are after the controller's actions.
 */
import type { NodeObservation } from "../decide.js";

/** What a controller sees at each call: the serving nodes and the counts of those on their way in and out. */
export interface ClusterView {
  now: number;
  /** Serving nodes, oldest first; their readings are the last 10 to 12 minutes' (read them during the call only). */
  nodes: readonly NodeObservation[];
  booting: number;
  draining: number;
}

/** What a controller may ask for: launch nodes, or drain one serving node by name. */
export type ControllerAction = { type: "launch"; count: number } | { type: "drain"; node: string };

/** A scaling policy under test: called every `periodMs` with the view, returns its actions. */
export interface Controller {
  readonly name: string;
  /** ms between calls (default 1000) */
  readonly periodMs?: number;
  tick(view: ClusterView): readonly ControllerAction[];
}

/** The model's settings (see the module comment). */
export interface ModelOptions {
  /** Requests per minute one node serves at 100 % CPU. */
  nodeCapacity: number;
  bootMs: number;
  /** The agents' sample interval. */
  sampleIntervalMs: number;
  /** The model's time step; 60 000 must be a multiple of it (1000). */
  tickMs: number;
  drainMs: number;
  initialNodes: number;
  /** Standard deviation of the nodes' uneven traffic shares (0: even). */
  skew?: number;
  /** Standard deviation of the relative noise on each reading (0: none). */
  jitter?: number;
  seed?: number;
}

/** One minute of a run, for plots. */
export interface TimelinePoint {
  /** Start of the minute, epoch ms. */
  minute: number;
  /** Requests per minute. */
  demand: number;
  /** Serving nodes × nodeCapacity at the minute's end. */
  capacity: number;
  /** All nodes, booting and draining included, at the minute's end. */
  nodes: number;
  /** Mean fleet CPU over the minute (each tick capped at 1000 % so that a minute with no serving node stays a number). */
  fleetCpu: number;
}

/** The figures of one run. */
export interface SimulationResult {
  policy: string;
  /** Node-hours of booting, serving and draining nodes. */
  nodeHours: number;
  /** Seconds with fleet CPU > 90 %, divided by 60. */
  overloadMinutes90: number;
  /** Seconds with fleet CPU > 100 %, divided by 60. */
  overloadMinutes100: number;
  /** Nodes added (launched) + nodes removed (drained). */
  events: number;
  /** Most nodes at once, booting and draining included. */
  peakNodes: number;
  ticks: number;
  wallMs: number;
  /** ticks / wall seconds (0 when the injected clock did not move). */
  decisionsPerSecond: number;
  timeline: TimelinePoint[];
}

/** What `simulate` reads besides its inputs: a wall clock for decisionsPerSecond only. */
export interface SimulateDeps {
  wallNow?: () => number;
}

const MINUTE_MS = 60_000;
/** Readings older than this are dropped (in batches of TRIM_BATCH_MS): bounded memory, and scans of them stay short. */
export const READING_RETENTION_MS = 600_000;
const TRIM_BATCH_MS = 120_000;
const TIMELINE_CPU_CAP = 1000;

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal draw from a uniform source (Box-Muller). */
function normal(random: () => number): number {
  const u = 1 - random(); // (0, 1]: log(0) never happens
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** The fixed traffic weight of the k-th node (1-based), the same in every run with this seed. */
function nodeWeight(seed: number, k: number, skew: number): number {
  if (skew <= 0) return 1;
  const random = mulberry32((seed ^ Math.imul(k, 0x9e3779b1)) >>> 0);
  return Math.max(0.1, 1 + skew * normal(random));
}

interface SimNode {
  obs: NodeObservation & { readings: { at: number; cpu: number }[] };
  weight: number;
  nextSampleAt: number;
}

function checkOptions(o: ModelOptions): void {
  const bad = (what: string) => {
    throw new RangeError(`simulate: ${what}`);
  };
  if (!(o.nodeCapacity > 0) || !Number.isFinite(o.nodeCapacity)) bad(`nodeCapacity ${o.nodeCapacity}; expected a number > 0`);
  if (!(o.tickMs > 0) || MINUTE_MS % o.tickMs !== 0) bad(`tickMs ${o.tickMs}; expected a divisor of 60000`);
  if (!(o.sampleIntervalMs > 0)) bad(`sampleIntervalMs ${o.sampleIntervalMs}; expected > 0`);
  if (!(o.bootMs >= 0) || !(o.drainMs >= 0)) bad(`bootMs ${o.bootMs} / drainMs ${o.drainMs}; expected ≥ 0`);
  if (!Number.isInteger(o.initialNodes) || o.initialNodes < 0) bad(`initialNodes ${o.initialNodes}; expected a whole number ≥ 0`);
}

/** The mutable world of one run; only `simulate` and the helpers below touch it. */
class Cluster {
  readonly serving: SimNode[] = [];
  readonly byName = new Map<string, SimNode>();
  /** Times at which booting nodes start serving (FIFO: one boot time for all). */
  readonly bootingUntil: number[] = [];
  /** Times at which draining nodes are gone. */
  readonly drainingUntil: number[] = [];
  view: NodeObservation[] = [];
  weightSum = 0;
  launched = 0;
  events = 0;
  private readonly jitterRandom: () => number;

  constructor(
    private readonly o: Required<ModelOptions>,
    private readonly controllerName: string,
  ) {
    this.jitterRandom = mulberry32((o.seed ^ 0x85ebca6b) >>> 0);
  }

  get total(): number {
    return this.serving.length + this.bootingUntil.length + this.drainingUntil.length;
  }

  /** A new serving node, first seen at `at`. */
  addServing(at: number, firstSeenAt: number): SimNode {
    const k = ++this.launched;
    const node: SimNode = {
      obs: { name: `sim-${k}`, live: true, firstSeenAt, addedAt: firstSeenAt, removable: true, readings: [] },
      weight: nodeWeight(this.o.seed, k, this.o.skew),
      nextSampleAt: at,
    };
    this.serving.push(node);
    this.byName.set(node.obs.name, node);
    this.changed();
    return node;
  }

  private changed(): void {
    this.view = this.serving.map((n) => n.obs);
    this.weightSum = this.serving.reduce((s, n) => s + n.weight, 0);
  }

  /** Boots and drains that are due by `now` end. */
  advance(now: number): void {
    while (this.drainingUntil.length > 0 && this.drainingUntil[0]! <= now) this.drainingUntil.shift();
    while (this.bootingUntil.length > 0 && this.bootingUntil[0]! <= now) {
      this.bootingUntil.shift();
      this.addServing(now, now);
    }
  }

  /** One node's CPU under this minute's demand. */
  cpuOf(node: SimNode, demand: number): number {
    const share = (demand * node.weight) / this.weightSum;
    return Math.min(100, (100 * share) / this.o.nodeCapacity);
  }

  /** A reading of `cpu` at `at`, with noise, dropping readings past the retention. */
  record(node: SimNode, at: number, cpu: number): void {
    const noisy = this.o.jitter > 0 ? Math.min(100, Math.max(0, cpu * (1 + this.o.jitter * normal(this.jitterRandom)))) : cpu;
    const readings = node.obs.readings;
    readings.push({ at, cpu: noisy });
    // Trimmed in batches (splice per sample made it the hottest line of a run): 10 to 12 minutes are kept.
    if (readings[0]!.at > at - READING_RETENTION_MS - TRIM_BATCH_MS) return;
    let old = 0;
    while (readings[old]!.at <= at - READING_RETENTION_MS) old++;
    readings.splice(0, old);
  }

  /** Every serving node whose sample is due takes one. */
  sample(now: number, demand: number): void {
    for (const node of this.serving) {
      if (node.nextSampleAt > now) continue;
      this.record(node, now, this.cpuOf(node, demand));
      node.nextSampleAt += this.o.sampleIntervalMs;
    }
  }

  /** Carry out a controller's actions at `now`. A malformed action is a bug in the controller: it throws. */
  apply(actions: readonly ControllerAction[], now: number): void {
    for (const a of actions) {
      if (a.type === "launch") {
        if (!Number.isInteger(a.count) || a.count < 1)
          throw new Error(`controller ${this.controllerName} asked to launch ${a.count} nodes; expected a whole number ≥ 1`);
        for (let i = 0; i < a.count; i++) this.bootingUntil.push(now + this.o.bootMs);
        this.events += a.count;
      } else {
        const node = this.byName.get(a.node);
        if (!node) throw new Error(`controller ${this.controllerName} asked to drain ${JSON.stringify(a.node)}, which is not serving`);
        this.byName.delete(a.node);
        this.serving.splice(this.serving.indexOf(node), 1);
        this.changed();
        this.drainingUntil.push(now + this.o.drainMs);
        this.events += 1;
      }
    }
  }
}

/** The initial fleet: serving from the start, with 10 minutes of readings at the first minute's demand. */
function seedFleet(cluster: Cluster, o: Required<ModelOptions>, startMs: number, firstDemand: number): void {
  for (let i = 0; i < o.initialNodes; i++) cluster.addServing(startMs, startMs - 86_400_000);
  for (const node of cluster.serving) {
    const cpu = cluster.cpuOf(node, firstDemand);
    for (
      let at = startMs - Math.floor(READING_RETENTION_MS / o.sampleIntervalMs) * o.sampleIntervalMs + o.sampleIntervalMs;
      at < startMs;
      at += o.sampleIntervalMs
    ) {
      cluster.record(node, at, cpu);
    }
  }
}

/**
 * Replay a trace through a controller on the model above and return the figures. Pure apart
 * from `deps.wallNow`, read twice to time the run (default: performance.now).
 */
export function simulate(
  trace: { startMs: number; requests: Float64Array },
  controller: Controller,
  options: ModelOptions,
  deps: SimulateDeps = {},
): SimulationResult {
  const o: Required<ModelOptions> = { skew: 0, jitter: 0, seed: 1, ...options };
  checkOptions(o);
  const wallNow = deps.wallNow ?? (() => performance.now());
  const wallStart = wallNow();
  const cluster = new Cluster(o, controller.name);
  const periodMs = controller.periodMs ?? 1000;
  const ticksPerMinute = MINUTE_MS / o.tickMs;
  seedFleet(cluster, o, trace.startMs, trace.requests[0] ?? 0);

  const timeline: TimelinePoint[] = [];
  let nextCallAt = trace.startMs;
  let nodeMs = 0;
  let over90Ms = 0;
  let over100Ms = 0;
  let peakNodes = cluster.total;
  for (let m = 0; m < trace.requests.length; m++) {
    const demand = trace.requests[m]!;
    let cpuSum = 0;
    for (let k = 0; k < ticksPerMinute; k++) {
      const now = trace.startMs + m * MINUTE_MS + k * o.tickMs;
      cluster.advance(now);
      cluster.sample(now, demand);
      if (now >= nextCallAt) {
        cluster.apply(controller.tick({ now, nodes: cluster.view, booting: cluster.bootingUntil.length, draining: cluster.drainingUntil.length }), now);
        cluster.advance(now); // a zero boot or drain time takes effect at once
        while (nextCallAt <= now) nextCallAt += periodMs;
      }
      const total = cluster.total;
      nodeMs += total * o.tickMs;
      if (total > peakNodes) peakNodes = total;
      const serving = cluster.serving.length;
      const fleetCpu = serving > 0 ? (100 * demand) / (serving * o.nodeCapacity) : demand > 0 ? Infinity : 0;
      if (fleetCpu > 90) over90Ms += o.tickMs;
      if (fleetCpu > 100) over100Ms += o.tickMs;
      cpuSum += Math.min(fleetCpu, TIMELINE_CPU_CAP);
    }
    timeline.push({
      minute: trace.startMs + m * MINUTE_MS,
      demand,
      capacity: cluster.serving.length * o.nodeCapacity,
      nodes: cluster.total,
      fleetCpu: cpuSum / ticksPerMinute,
    });
  }
  const ticks = trace.requests.length * ticksPerMinute;
  const wallMs = wallNow() - wallStart;
  return {
    policy: controller.name,
    nodeHours: nodeMs / 3_600_000,
    overloadMinutes90: over90Ms / MINUTE_MS,
    overloadMinutes100: over100Ms / MINUTE_MS,
    events: cluster.events,
    peakNodes,
    ticks,
    wallMs,
    decisionsPerSecond: wallMs > 0 ? (ticks * 1000) / wallMs : 0,
    timeline,
  };
}
