/**
 * The scaling decision (SPEC behaviour 2, 3, 5, 9): one pure function of the cluster's state,
 * the nodes' observations, the policy and the time. No clock reads, no IO, no logging.
 *
 *   steady ──(hot for the whole window, no up-cooldown)──► scale_up(step, capped by max)
 *     │  ▲                                                   │
 *     │  └──────────── cooldown ends ◄──── cooldown ◄────────┘
 *     └──(cold for the whole window, no pending, above min)──► scale_down(one node)
 *
 * Clamping is its own step (`capCount`) and keeps its reason for `status`.
 */

/**
 * One backend as the decision sees it: its readings (master's clock), when it was first seen,
 * where it came from. Every backend counts as capacity (hand-added ones, and unreachable ones
 * until they are forgotten); only live ones with a full window of readings count as data.
 * Nodes on their way out (draining, terminating) are left out by the caller.
 */
export interface NodeObservation {
  name: string;
  live: boolean;
  firstSeenAt: number;
  /** Time the node was added to hosts.d (for scale_down_order). */
  addedAt: number;
  /** Only nodes the autoscaler launched or that registered as agents may be scaled down. */
  removable: boolean;
  /** An agent that was heard and has gone silent past node_timeout: its data is missing, not low. */
  unreachable?: boolean;
  readings: readonly { at: number; cpu: number }[];
}

/** The policy, from [scaling], in milliseconds and percent. */
export interface ScalingPolicy {
  mode: "instance" | "average";
  upThreshold: number;
  downThreshold: number;
  windowMs: number;
  upCooldownMs: number;
  downCooldownMs: number;
  minNodes: number;
  maxNodes: number;
  step: number;
  scaleDownOrder: "oldest" | "newest";
  /** False when there is no scale_up_command. */
  scaleUpEnabled: boolean;
  /** False when there is no scale_down_command. */
  scaleDownEnabled: boolean;
  /** The agents' sample interval: a window is "covered" when its first reading is at most this late. */
  sampleIntervalMs: number;
}

/** What the master remembers between decisions (durable in state_dir). */
export interface ScalingState {
  /** Nodes launched (or being launched) that have not registered yet. */
  pendingLaunches: number;
  /** Scale-downs in progress (draining or terminating): no automatic scale-down starts meanwhile. */
  leaving: number;
  lastScaleUpAt: number | undefined;
  lastScaleDownAt: number | undefined;
  /** After a failed command, no automatic action in that direction before this time (backoff). */
  upBlockedUntil?: number | undefined;
  downBlockedUntil?: number | undefined;
  paused: boolean;
}

/** The decision, always with the reason `status` shows. */
export type Decision =
  | { action: "none"; reason: string }
  | { action: "scale_up"; count: number; reason: string; capped?: string }
  | { action: "scale_down"; node: string; reason: string };

/** Clamp a wanted count so live + pending never passes max_nodes; the reason says what was cut. */
export function capCount(wanted: number, capacity: number, maxNodes: number): { count: number; capped?: string } {
  const room = Math.max(0, maxNodes - capacity);
  if (wanted <= room) return { count: wanted };
  return { count: room, capped: `capped ${wanted} → ${room} by max_nodes (${capacity} of ${maxNodes} backends or pending)` };
}

/** The readings inside the window ending at `now`, or undefined when they do not cover it (missing data). */
export function windowReadings(node: NodeObservation, policy: ScalingPolicy, now: number): number[] | undefined {
  const start = now - policy.windowMs;
  if (node.firstSeenAt > start) return undefined; // younger than one window
  const inside = node.readings.filter((r) => r.at > start && r.at <= now);
  if (inside.length === 0) return undefined;
  // The first reading must come within one interval (plus slack) of the window's start, the last
  // within one interval of now: a gap means the node was not heard for part of the window.
  const slack = policy.sampleIntervalMs * 2;
  if (inside[0]!.at - start > slack || now - inside[inside.length - 1]!.at > slack) return undefined;
  return inside.map((r) => r.cpu);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const round = (x: number) => Math.round(x * 10) / 10;
const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

/** Decide what to do now. */
export function decide(state: ScalingState, nodes: readonly NodeObservation[], policy: ScalingPolicy, now: number): Decision {
  if (state.paused) return { action: "none", reason: "paused" };
  const live = nodes.filter((n) => n.live);
  const capacity = nodes.length + state.pendingLaunches;
  const upBlocked = state.upBlockedUntil !== undefined && now < state.upBlockedUntil ? `the last launch failed; retrying after a backoff (${seconds(state.upBlockedUntil - now)} left)` : undefined;

  if (capacity < policy.minNodes) {
    const why = `below min_nodes: ${capacity} backends or pending < ${policy.minNodes}`;
    if (!policy.scaleUpEnabled) return { action: "none", reason: `${why}, but scale-up is off (no scale_up_command)` };
    if (upBlocked) return { action: "none", reason: `${why}, but ${upBlocked}` };
    const { count, capped } = capCount(policy.minNodes - capacity, capacity, policy.maxNodes);
    if (count > 0) return { action: "scale_up", count, reason: why, ...(capped ? { capped } : {}) };
  }

  // Missing data never scales: only live nodes that were heard for the whole window count.
  const observed = live.map((n) => ({ node: n, cpu: windowReadings(n, policy, now) })).filter((o): o is { node: NodeObservation; cpu: number[] } => o.cpu !== undefined);
  if (observed.length === 0) return { action: "none", reason: `no node has data for the whole ${seconds(policy.windowMs)} window yet` };

  const hot =
    policy.mode === "instance"
      ? observed.filter((o) => Math.min(...o.cpu) >= policy.upThreshold).map((o) => `node ${o.node.name} at ${round(mean(o.cpu))} % ≥ ${policy.upThreshold} % for ${seconds(policy.windowMs)}`)[0]
      : mean(observed.map((o) => mean(o.cpu))) >= policy.upThreshold
        ? `average ${round(mean(observed.map((o) => mean(o.cpu))))} % of ${observed.length} nodes ≥ ${policy.upThreshold} % for ${seconds(policy.windowMs)}`
        : undefined;
  if (hot) {
    if (!policy.scaleUpEnabled) return { action: "none", reason: `${hot}, but scale-up is off (no scale_up_command)` };
    if (upBlocked) return { action: "none", reason: `${hot}, but ${upBlocked}` };
    if (state.lastScaleUpAt !== undefined && now - state.lastScaleUpAt < policy.upCooldownMs) {
      return { action: "none", reason: `${hot}, but in scale-up cooldown (${seconds(policy.upCooldownMs - (now - state.lastScaleUpAt))} left)` };
    }
    const { count, capped } = capCount(policy.step, capacity, policy.maxNodes);
    if (count === 0) return { action: "none", reason: `${hot}, but ${capped}` };
    return { action: "scale_up", count, reason: `scale-up: ${hot}`, ...(capped ? { capped } : {}) };
  }

  if (!policy.scaleDownEnabled) return { action: "none", reason: "within thresholds (scale-down is off: no scale_down_command)" };
  // Every live node must be known cold: one node without a full window could be the busy one.
  if (observed.length < live.length) return { action: "none", reason: "not every live node has data for the whole window" };
  // An unreachable node could be the busy one too, and the reachable ones may be all that serves.
  const silent = nodes.filter((n) => n.unreachable).map((n) => n.name);
  if (silent.length > 0) return { action: "none", reason: `no scale-down while ${silent.join(", ")} ${silent.length === 1 ? "is" : "are"} unreachable (missing data)` };
  const cold =
    policy.mode === "instance"
      ? observed.every((o) => Math.max(...o.cpu) < policy.downThreshold)
      : mean(observed.map((o) => mean(o.cpu))) < policy.downThreshold;
  if (!cold) return { action: "none", reason: "within thresholds" };
  const why = policy.mode === "instance" ? `every node < ${policy.downThreshold} % for ${seconds(policy.windowMs)}` : `average ${round(mean(observed.map((o) => mean(o.cpu))))} % < ${policy.downThreshold} % for ${seconds(policy.windowMs)}`;
  if (state.pendingLaunches > 0) return { action: "none", reason: `${why}, but ${state.pendingLaunches} launch(es) pending` };
  if (state.leaving > 0) return { action: "none", reason: `${why}, but a scale-down is already in progress` };
  if (nodes.length - 1 < policy.minNodes) return { action: "none", reason: `${why}, but at min_nodes (${policy.minNodes})` };
  if (state.downBlockedUntil !== undefined && now < state.downBlockedUntil) {
    return { action: "none", reason: `${why}, but the last scale-down failed; retrying after a backoff (${seconds(state.downBlockedUntil - now)} left)` };
  }
  if (state.lastScaleDownAt !== undefined && now - state.lastScaleDownAt < policy.downCooldownMs) {
    return { action: "none", reason: `${why}, but in scale-down cooldown (${seconds(policy.downCooldownMs - (now - state.lastScaleDownAt))} left)` };
  }
  const candidates = live.filter((n) => n.removable).sort((a, b) => (policy.scaleDownOrder === "oldest" ? a.addedAt - b.addedAt : b.addedAt - a.addedAt) || (a.name < b.name ? -1 : 1));
  const chosen = candidates[0];
  if (!chosen) return { action: "none", reason: `${why}, but no node may be removed (hand-added hosts are never scaled down)` };
  return { action: "scale_down", node: chosen.name, reason: `scale-down: ${why}; ${chosen.name} is the ${policy.scaleDownOrder} removable node` };
}
