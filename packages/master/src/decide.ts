/**
 * The scaling decision (SPEC behaviour 2, 3, 5, 9): one pure function of the cluster's state,
 * the nodes' observations, the policy and the time. No clock reads, no IO, no logging. It is
 * the tick branch of the scaler's state machine (machine.ts).
 *
 * target (default), as the Kubernetes HPA:
 *   desired = ceil((Σ CPU of nodes with data + target × serving nodes without data) / target),
 *   compared with current = serving + booting nodes; unchanged within ±tolerance; the
 *   predictive floor, when on, raises it.
 *   desired > current ──(no up-cooldown)──► scale_up(desired − current, at most ×2 or +4)
 *   desired < current for the whole scale_down_window ──► scale_down(to the window's highest
 *   recommendation, at most scale_down_limit nodes)
 *
 * resources (SimpleScaleVM's model): the free units the nodes report (capacity_url) are kept at
 *   or above min_available: free < min ──► desired = current + ceil(deficit / per-node capacity);
 *   removing the next node(s) still leaves min ──► desired = current − k; then as target mode
 *   (cooldown, scale_down_window), without the ×2/+4 limit.
 *
 * instance / average (the seed's rules):
 *   steady ──(hot for the whole window, no up-cooldown)──► scale_up(step, capped by max)
 *     └──(cold for the whole window, no pending, above min)──► scale_down(one node)
 *
 * Clamping is its own step (`capCount`) and keeps its reason for `status`.
 */
import { DEFAULT_SCALE_UP_LIMIT, TARGET_SAMPLE_PERIODS, type ScalingPolicy } from "./policy.js";
import { predictiveFloor, type DemandHistory } from "./predictive.js";

export type { ScalingPolicy } from "./policy.js";

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
  readings: readonly { at: number; cpu: number; available?: number }[];
  /** From a launch's output or an operator (hosts.d's instance_id_from): recorded with a scale-down for the terminate command. */
  instanceId?: string | undefined;
  /** An id only the node reported: a scale-down of it skips the terminate command. */
  reportedInstanceId?: string | undefined;
  address?: string | undefined;
  /** An agent that said hello and whose hosts.d entry is not written yet. */
  registering?: boolean;
  /** Its hosts.d entry says the autoscaler launched it (source launched): teardown removes it. */
  launched?: boolean;
  /** Its hosts.d entry says an operator added it by hand (source manual): it serves with no agent. */
  manual?: boolean;
}

/** One target-mode recommendation: the desired count at a tick. */
export interface Recommendation {
  at: number;
  desired: number;
}

/** What the decision needs to remember between ticks (the scaler's state machine keeps it). */
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
  /** Target mode: the recommendations of the last scale_down_window, oldest first. */
  recommendations?: readonly Recommendation[];
  /** Target mode: since when recommendations were made without a break (start, pause). */
  recommendingSince?: number | undefined;
  /** Predictive: the fleet's demand per minute. */
  demand?: DemandHistory | undefined;
}

/** The decision, always with the reason `status` shows; target mode also says what it recommended. */
export type Decision =
  | { action: "none"; reason: string; recommendation?: number }
  | { action: "scale_up"; count: number; reason: string; capped?: string; recommendation?: number }
  | { action: "scale_down"; nodes: string[]; reason: string; recommendation?: number };

/** Clamp a wanted count so live + pending never passes max_nodes; the reason says what was cut. */
export function capCount(wanted: number, capacity: number, maxNodes: number): { count: number; capped?: string } {
  const room = Math.max(0, maxNodes - capacity);
  if (wanted <= room) return { count: wanted };
  return { count: room, capped: `capped ${wanted} → ${room} by max_nodes (${capacity} of ${maxNodes} backends or pending)` };
}

/**
 * The nodes a scale-down takes, in `scale_down_order`: only removable ones (never hand-added),
 * and with `liveOnly` only live ones. The one rule for automatic and manual scale-downs.
 */
export function chooseForRemoval(
  nodes: readonly NodeObservation[],
  count: number,
  policy: Pick<ScalingPolicy, "scaleDownOrder">,
  liveOnly: boolean,
): NodeObservation[] {
  const sign = policy.scaleDownOrder === "oldest" ? 1 : -1;
  return nodes
    .filter((n) => n.removable && (!liveOnly || n.live))
    .sort((a, b) => sign * (a.addedAt - b.addedAt) || (a.name < b.name ? -1 : 1))
    .slice(0, Math.max(0, count));
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

/**
 * The mean of a node's recent values (`pick` of each reading that has one) over the last few
 * agent intervals; undefined (missing data) for a node that is not live, younger than one
 * window, or without such a value lately.
 */
function recentMean(node: NodeObservation, policy: ScalingPolicy, now: number, pick: (r: NodeObservation["readings"][number]) => number | undefined) {
  if (!node.live || node.firstSeenAt > now - policy.windowMs) return undefined;
  const since = now - policy.sampleIntervalMs * TARGET_SAMPLE_PERIODS;
  let sum = 0;
  let n = 0;
  for (let i = node.readings.length - 1; i >= 0; i--) {
    const r = node.readings[i]!;
    if (r.at > now) continue;
    if (r.at <= since) break;
    const v = pick(r);
    if (v === undefined) continue;
    sum += v;
    n++;
  }
  return n === 0 ? undefined : sum / n;
}

/**
 * Target mode: a node's CPU now, the mean of its readings over the last few agent intervals; undefined
 * (missing data) for a node that is not live, younger than one window, or not heard lately.
 */
export function currentCpu(node: NodeObservation, policy: ScalingPolicy, now: number): number | undefined {
  return recentMean(node, policy, now, (r) => r.cpu);
}

/**
 * Resources mode: a node's free resource units now, the mean of its reports over the last few
 * agent intervals; undefined (missing data) as for `currentCpu`, and for a node whose recent
 * samples carry no report (its capacity_url failed or gave a bad answer).
 */
export function currentAvailable(node: NodeObservation, policy: ScalingPolicy, now: number): number | undefined {
  return recentMean(node, policy, now, (r) => r.available);
}

/** Resources mode: the units one node brings: `node_capacity`, else the highest free count any node has reported. */
export function perNodeCapacity(nodes: readonly NodeObservation[], policy: ScalingPolicy): number | undefined {
  if (policy.nodeCapacity !== undefined) return policy.nodeCapacity;
  let best: number | undefined;
  for (const n of nodes) for (const r of n.readings) if (r.available !== undefined && (best === undefined || r.available > best)) best = r.available;
  return best !== undefined && best > 0 ? best : undefined;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
// Loops rather than Math.min(...xs): a flood of readings must never overflow the stack.
const lowest = (xs: number[]) => xs.reduce((a, b) => (b < a ? b : a), Infinity);
const highest = (xs: number[]) => xs.reduce((a, b) => (b > a ? b : a), -Infinity);
const round = (x: number) => Math.round(x * 10) / 10;
const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

/** Shared guards: paused, below min_nodes, backoff text. Returns a decision when one applies. */
function preamble(state: ScalingState, nodes: readonly NodeObservation[], policy: ScalingPolicy, now: number): Decision | undefined {
  if (state.paused) return { action: "none", reason: "paused" };
  const capacity = nodes.length + state.pendingLaunches;
  if (capacity < policy.minNodes) {
    const why = `below min_nodes: ${capacity} backends or pending < ${policy.minNodes}`;
    if (!policy.scaleUpEnabled) return { action: "none", reason: `${why}, but scale-up is off (no scale_up_command)` };
    const blocked = upBlocked(state, now);
    if (blocked) return { action: "none", reason: `${why}, but ${blocked}` };
    const { count, capped } = capCount(policy.minNodes - capacity, capacity, policy.maxNodes);
    if (count > 0) return { action: "scale_up", count, reason: why, ...(capped ? { capped } : {}) };
  }
  return undefined;
}

function upBlocked(state: ScalingState, now: number): string | undefined {
  return state.upBlockedUntil !== undefined && now < state.upBlockedUntil
    ? `the last launch failed; retrying after a backoff (${seconds(state.upBlockedUntil - now)} left)`
    : undefined;
}

/** Why a scale-up may not happen now (off, backoff, cooldown), or undefined. */
function upHeld(state: ScalingState, policy: ScalingPolicy, now: number): string | undefined {
  if (!policy.scaleUpEnabled) return "scale-up is off (no scale_up_command)";
  const blocked = upBlocked(state, now);
  if (blocked) return blocked;
  const left = cooldownLeftMs(state, policy, now, "up");
  return left > 0 ? `in scale-up cooldown (${seconds(left)} left)` : undefined;
}

/**
 * What is left of the group's cooldown in one direction (0: none): from the last action that
 * direction and `scale_up_cooldown` / `scale_down_cooldown`. The one rule for automatic
 * decisions and named policies.
 */
export function cooldownLeftMs(
  state: { lastScaleUpAt?: number | undefined; lastScaleDownAt?: number | undefined },
  policy: Pick<ScalingPolicy, "upCooldownMs" | "downCooldownMs">,
  now: number,
  direction: "up" | "down",
): number {
  const last = direction === "up" ? state.lastScaleUpAt : state.lastScaleDownAt;
  const cooldown = direction === "up" ? policy.upCooldownMs : policy.downCooldownMs;
  return last === undefined ? 0 : Math.max(0, cooldown - (now - last));
}

/** Why a scale-down may not happen now, or undefined; `remaining` is the count after it. */
function downHeld(state: ScalingState, nodes: readonly NodeObservation[], policy: ScalingPolicy, now: number, remaining: number): string | undefined {
  const silent = nodes.filter((n) => n.unreachable).map((n) => n.name);
  // An unreachable node could be the busy one, and the reachable ones may be all that serves.
  if (silent.length > 0) return `no scale-down while ${silent.join(", ")} ${silent.length === 1 ? "is" : "are"} unreachable (missing data)`;
  if (state.pendingLaunches > 0) return `${state.pendingLaunches} launch(es) pending`;
  if (state.leaving > 0) return "a scale-down is already in progress";
  if (remaining < policy.minNodes) return `at min_nodes (${policy.minNodes})`;
  if (state.downBlockedUntil !== undefined && now < state.downBlockedUntil) {
    return `the last scale-down failed; retrying after a backoff (${seconds(state.downBlockedUntil - now)} left)`;
  }
  const left = cooldownLeftMs(state, policy, now, "down");
  return left > 0 ? `in scale-down cooldown (${seconds(left)} left)` : undefined;
}

/** Decide what to do now. */
export function decide(state: ScalingState, nodes: readonly NodeObservation[], policy: ScalingPolicy, now: number): Decision {
  const early = preamble(state, nodes, policy, now);
  if (early) return early;
  if (policy.mode === "target") return decideTarget(state, nodes, policy, now);
  if (policy.mode === "resources") return decideResources(state, nodes, policy, now);
  return decideThreshold(state, nodes, policy, now);
}

/** Target tracking (the default): size the fleet so each node runs at target_cpu. */
function decideTarget(state: ScalingState, nodes: readonly NodeObservation[], policy: ScalingPolicy, now: number): Decision {
  const target = policy.targetCpu;
  let measured = 0;
  let sum = 0;
  for (const n of nodes) {
    const cpu = currentCpu(n, policy, now);
    if (cpu === undefined) continue;
    measured++;
    sum += cpu;
  }
  // Missing data never scales: with no node measured, nothing is known.
  if (measured === 0) return { action: "none", reason: `no node has data for the whole ${seconds(policy.windowMs)} window yet` };
  const current = nodes.length + state.pendingLaunches;
  const unmeasured = nodes.length - measured;
  // A booting node carries no load yet but counts in `current`: once up it takes its share at the
  // target, so a ramp already answered by a launch is not answered twice. A serving node without
  // data yet (HPA's rule for missing metrics) counts as idle when the question is "more?" and as
  // busy when it is "fewer?", so it can cause neither: just after it joins, the others' readings
  // still hold the load it is now taking.
  const recommend = (assumed: number) => {
    const demand = sum + assumed * unmeasured;
    const within = Math.abs(demand / (current * target) - 1) <= policy.tolerance;
    return { demand, value: within ? current : Math.ceil(demand / target - 1e-9) };
  };
  const more = recommend(0);
  const fewer = recommend(100);
  const branch = more.value > current ? "more" : fewer.value < current ? "fewer" : "hold";
  const { demand, value: reactive } = branch === "more" ? more : branch === "fewer" ? fewer : { demand: more.demand, value: current };
  const floor = policy.predictive && state.demand ? predictiveFloor(state.demand, now, policy.bootMs, target) : undefined;
  let desired = Math.max(reactive, floor?.nodes ?? 0);
  let clamp = "";
  if (desired > policy.maxNodes) [desired, clamp] = [policy.maxNodes, `, capped by max_nodes ${policy.maxNodes}`];
  if (desired < policy.minNodes) [desired, clamp] = [policy.minNodes, `, raised to min_nodes ${policy.minNodes}`];
  const parts = [
    `${measured} measured`,
    unmeasured > 0 ? `${unmeasured} without data` : "",
    state.pendingLaunches > 0 ? `${state.pendingLaunches} booting` : "",
  ]
    .filter(Boolean)
    .join(" + ");
  const ceilOf = (d: number) => `ceil(${round(d)} % / ${target} %)`;
  const formula =
    unmeasured > 0 && branch === "hold"
      ? `between ${ceilOf(more.demand)} and ${ceilOf(fewer.demand)} (the nodes without data counted idle, then busy)`
      : reactive === current && Math.ceil(demand / target - 1e-9) !== current
        ? `within ${Math.round(policy.tolerance * 100)} % of ${target} % (${round(demand)} % over ${current})`
        : ceilOf(demand);
  const why = `desired ${desired} = ${formula}${floor && floor.nodes > reactive ? `, raised to the predictive floor ${floor.nodes} (${round(floor.demand)} % a day or a week ago)` : ""}${clamp}; ${parts}`;
  return settle(state, nodes, policy, now, { desired, current, why, rateLimit: true });
}

/**
 * Resources mode (SimpleScaleVM's model): keep the free units across live nodes at or above
 * `min_available`. Booting nodes count at the per-node capacity. A node without a recent report
 * counts as fully free when the question is "more?" and as full when it is "fewer?", so missing
 * data causes neither; with no report at all, nothing is known and nothing moves.
 *   free < min_available ──► desired = current + ceil(deficit / per-node capacity)
 *   removing the next node(s) in scale_down_order still leaves min_available ──► desired = current − k
 */
function decideResources(state: ScalingState, nodes: readonly NodeObservation[], policy: ScalingPolicy, now: number): Decision {
  const min = policy.minAvailable;
  const available = new Map<string, number>();
  let sum = 0;
  for (const n of nodes) {
    const a = currentAvailable(n, policy, now);
    if (a === undefined) continue;
    available.set(n.name, a);
    sum += a;
  }
  if (available.size === 0)
    return {
      action: "none",
      reason: `no node has reported free resource units (capacity_url) over the last ${seconds(policy.sampleIntervalMs * TARGET_SAMPLE_PERIODS)}`,
    };
  const perNode = perNodeCapacity(nodes, policy);
  if (perNode === undefined)
    return {
      action: "none",
      reason: "no node has reported a free count above 0 yet, so the capacity a new node brings is unknown (set [scaling] node_capacity)",
    };
  const current = nodes.length + state.pendingLaunches;
  const unmeasured = nodes.length - available.size;
  const booting = state.pendingLaunches * perNode;
  const high = sum + booting + unmeasured * perNode;
  const low = sum + booting;
  let desired: number;
  let detail: string;
  if (high < min) {
    const deficit = min - high;
    desired = current + Math.ceil(deficit / perNode - 1e-9);
    detail = `${round(high)} free < min_available ${min}: ceil(${round(deficit)} / ${round(perNode)} per node)`;
  } else {
    // Remove in scale_down_order while what stays free still covers min_available; a node without data is never counted out.
    let left = low;
    let k = 0;
    let stop = "removing a node would leave less";
    for (const n of chooseForRemoval(nodes, nodes.length, policy, true)) {
      const a = available.get(n.name);
      if (a === undefined) {
        stop = `the next node to remove (${n.name}) has no report`;
        break;
      }
      if (left - a < min) break;
      left -= a;
      k++;
    }
    desired = current - k;
    const free = unmeasured > 0 ? `${round(low)} to ${round(high)}` : `${round(low)}`;
    detail = k > 0 ? `${free} free; without ${k} node(s) ${round(left)} ≥ min_available ${min}` : `${free} free, min_available ${min}: ${stop}`;
  }
  let clamp = "";
  if (desired > policy.maxNodes) [desired, clamp] = [policy.maxNodes, `, capped by max_nodes ${policy.maxNodes}`];
  if (desired < policy.minNodes) [desired, clamp] = [policy.minNodes, `, raised to min_nodes ${policy.minNodes}`];
  const parts = [
    `${available.size} reporting`,
    unmeasured > 0 ? `${unmeasured} without data` : "",
    state.pendingLaunches > 0 ? `${state.pendingLaunches} booting` : "",
  ]
    .filter(Boolean)
    .join(" + ");
  const why = `desired ${desired} (${detail}${clamp}); ${parts}`;
  return settle(state, nodes, policy, now, { desired, current, why, rateLimit: false });
}

/**
 * Move toward a desired count (target and resources modes): up at once (cooldown, backoff,
 * scale_up_window, and in target mode the ×2/+4 rate limit, then max_nodes); down only when every
 * recommendation of scale_down_window was below the current count, to the highest of them.
 */
function settle(
  state: ScalingState,
  nodes: readonly NodeObservation[],
  policy: ScalingPolicy,
  now: number,
  { desired, current, why, rateLimit }: { desired: number; current: number; why: string; rateLimit: boolean },
): Decision {
  const rec = { recommendation: desired };

  if (desired > current) {
    const held = upHeld(state, policy, now);
    if (held) return { action: "none", reason: `${why}, but ${held}`, ...rec };
    // Scale up to the lowest recommendation of scale_up_window: a spike shorter than that is not answered.
    const upStart = now - policy.scaleUpWindowMs;
    let lowestRecent = desired;
    for (const r of state.recommendations ?? []) if (r.at > upStart && r.desired < lowestRecent) lowestRecent = r.desired;
    if (policy.scaleUpWindowMs > 0 && now - (state.recommendingSince ?? now) < policy.scaleUpWindowMs) lowestRecent = current;
    if (lowestRecent <= current)
      return {
        action: "none",
        reason: `${why}, but held at ${current} for scale_up_window: the lowest recommendation of the last ${seconds(policy.scaleUpWindowMs)} is ${lowestRecent}`,
        ...rec,
      };
    const limit = rateLimit ? Math.max(current + DEFAULT_SCALE_UP_LIMIT.nodes, current * DEFAULT_SCALE_UP_LIMIT.factor) : Infinity;
    const to = Math.min(lowestRecent, limit);
    const { count, capped } = capCount(to - current, current, policy.maxNodes);
    if (count === 0) return { action: "none", reason: `${why}, but ${capped}`, ...rec };
    const limited = to < desired ? ` (limited to ${to}: at most ×${DEFAULT_SCALE_UP_LIMIT.factor} or +${DEFAULT_SCALE_UP_LIMIT.nodes} per scale-up)` : "";
    return { action: "scale_up", count, reason: `scale-up: ${why}; +${count}${limited}`, ...(capped ? { capped } : {}), ...rec };
  }
  if (desired < current) {
    if (!policy.scaleDownEnabled) return { action: "none", reason: `${why} (scale-down is off: no scale_down_command)`, ...rec };
    const since = state.recommendingSince ?? now;
    if (now - since < policy.scaleDownWindowMs) {
      return {
        action: "none",
        reason: `${why}, but recommendations cover ${seconds(now - since)} of the ${seconds(policy.scaleDownWindowMs)} scale_down_window`,
        ...rec,
      };
    }
    const windowStart = now - policy.scaleDownWindowMs;
    let stable = desired;
    for (const r of state.recommendations ?? []) if (r.at > windowStart && r.desired > stable) stable = r.desired;
    if (stable >= current)
      return {
        action: "none",
        reason: `${why}, but held at ${current}: the highest recommendation of the last ${seconds(policy.scaleDownWindowMs)} is ${stable}`,
        ...rec,
      };
    const remove = Math.min(current - stable, policy.scaleDownLimit);
    const held = downHeld(state, nodes, policy, now, current - remove);
    if (held) return { action: "none", reason: `${why}, but ${held}`, ...rec };
    const chosen = chooseForRemoval(nodes, remove, policy, true);
    if (chosen.length === 0) return { action: "none", reason: `${why}, but no node may be removed (hand-added hosts are never scaled down)`, ...rec };
    const names = chosen.map((n) => n.name);
    return {
      action: "scale_down",
      nodes: names,
      reason: `scale-down: ${why}; every recommendation of the last ${seconds(policy.scaleDownWindowMs)} ≤ ${stable}; −${names.length} (${names.join(", ")}, ${policy.scaleDownOrder} first)`,
      ...rec,
    };
  }
  return { action: "none", reason: why, ...rec };
}

/** The seed's rules: `instance` (any one node hot for the whole window) and `average` (the mean). */
function decideThreshold(state: ScalingState, nodes: readonly NodeObservation[], policy: ScalingPolicy, now: number): Decision {
  const live = nodes.filter((n) => n.live);
  const capacity = nodes.length + state.pendingLaunches;
  // Missing data never scales: only live nodes that were heard for the whole window count.
  const observed = live
    .map((n) => ({ node: n, cpu: windowReadings(n, policy, now) }))
    .filter((o): o is { node: NodeObservation; cpu: number[] } => o.cpu !== undefined);
  if (observed.length === 0) return { action: "none", reason: `no node has data for the whole ${seconds(policy.windowMs)} window yet` };
  const average = () => mean(observed.map((o) => mean(o.cpu)));

  const hot =
    policy.mode === "instance"
      ? observed
          .filter((o) => lowest(o.cpu) >= policy.upThreshold)
          .map((o) => `node ${o.node.name} at ${round(mean(o.cpu))} % ≥ ${policy.upThreshold} % for ${seconds(policy.windowMs)}`)[0]
      : average() >= policy.upThreshold
        ? `average ${round(average())} % of ${observed.length} nodes ≥ ${policy.upThreshold} % for ${seconds(policy.windowMs)}`
        : undefined;
  if (hot) {
    const held = upHeld(state, policy, now);
    if (held) return { action: "none", reason: `${hot}, but ${held}` };
    const { count, capped } = capCount(policy.step, capacity, policy.maxNodes);
    if (count === 0) return { action: "none", reason: `${hot}, but ${capped}` };
    return { action: "scale_up", count, reason: `scale-up: ${hot}`, ...(capped ? { capped } : {}) };
  }

  if (!policy.scaleDownEnabled) return { action: "none", reason: "within thresholds (scale-down is off: no scale_down_command)" };
  // Every live node must be known cold: one node without a full window could be the busy one.
  if (observed.length < live.length) return { action: "none", reason: "not every live node has data for the whole window" };
  const cold = policy.mode === "instance" ? observed.every((o) => highest(o.cpu) < policy.downThreshold) : average() < policy.downThreshold;
  if (!cold) return { action: "none", reason: "within thresholds" };
  const why =
    policy.mode === "instance"
      ? `every node < ${policy.downThreshold} % for ${seconds(policy.windowMs)}`
      : `average ${round(average())} % < ${policy.downThreshold} % for ${seconds(policy.windowMs)}`;
  const held = downHeld(state, nodes, policy, now, nodes.length - 1);
  if (held) return { action: "none", reason: `${why}, but ${held}` };
  const chosen = chooseForRemoval(nodes, 1, policy, true)[0];
  if (!chosen) return { action: "none", reason: `${why}, but no node may be removed (hand-added hosts are never scaled down)` };
  return { action: "scale_down", nodes: [chosen.name], reason: `scale-down: ${why}; ${chosen.name} is the ${policy.scaleDownOrder} removable node` };
}
