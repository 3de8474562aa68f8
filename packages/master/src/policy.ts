/**
 * The scaling policy: the [scaling] and [machine] settings the decision and the scaler's state
 * machine read, in milliseconds and percent. Built from the ini in one place.
 */
import { parseCron, type Config, type CronSchedule, type PolicyAction, type ScheduleAction } from "@autoscaler/shared";

/** Scale-up rate limit in target mode: at most this many more nodes, or double, per scale-up cooldown (HPA's default). */
export const DEFAULT_SCALE_UP_LIMIT = { nodes: 4, factor: 2 } as const;
/** In target mode a node's CPU is the mean of its readings over this many agent intervals. */
export const TARGET_SAMPLE_PERIODS = 3;

/** A named policy (`[policy:NAME]`), as the state machine runs it. */
export interface NamedPolicy {
  name: string;
  action: PolicyAction;
  cooldownMs: number;
}

/** A schedule (`[schedule:NAME]`): its cron expression parsed in its zone. */
export interface ScheduleRule {
  name: string;
  /** The expression as written, and its zone (empty: UTC), for status. */
  cron: string;
  timezone: string;
  runs: CronSchedule;
  action: ScheduleAction;
  graceMs: number;
}

/** The policy, from [scaling] and [machine], in milliseconds and percent. */
export interface ScalingPolicy {
  mode: "target" | "instance" | "average" | "resources";
  /** Target mode: the percent of all cores a node should run at. */
  targetCpu: number;
  /** Target mode: a ratio within 1 ± tolerance does nothing. */
  tolerance: number;
  /** Target mode: scale down only to the highest recommendation of this long. */
  scaleDownWindowMs: number;
  /** Target mode: scale up only to the lowest recommendation of this long (0: at once). */
  scaleUpWindowMs: number;
  /** Target mode: at most this many nodes removed per scale-down decision. */
  scaleDownLimit: number;
  /** Target mode: a floor from the demand 1 and 7 days earlier. */
  predictive: boolean;
  /** How long a launch takes to serve: the predictive floor looks this far ahead. */
  bootMs: number;
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
  /** A launch that has no node registered after this long has failed. */
  launchTimeoutMs: number;
  /** How long a node is drained before it is terminated. */
  drainMs: number;
  /** How long a terminated node's hello is refused. */
  forgetAfterMs: number;
  /** Resources mode: the units that must stay free across live nodes. */
  minAvailable: number;
  /** Resources mode: the units one node brings; undefined: the highest any node reported. */
  nodeCapacity: number | undefined;
  /** The named policies (none when absent). */
  policies?: readonly NamedPolicy[];
  /** The schedules (none when absent). */
  schedules?: readonly ScheduleRule[];
}

/** Build the policy from the ini. */
export function policyFromConfig(config: Config): ScalingPolicy {
  const s = config.scaling;
  return {
    mode: s.mode,
    targetCpu: s.target_cpu,
    tolerance: s.tolerance,
    scaleDownWindowMs: s.scale_down_window * 1000,
    scaleDownLimit: s.scale_down_limit,
    scaleUpWindowMs: s.scale_up_window * 1000,
    predictive: s.predictive === "on",
    bootMs: s.boot_time * 1000,
    upThreshold: s.scale_up_threshold,
    downThreshold: s.scale_down_threshold,
    windowMs: s.window * 1000,
    upCooldownMs: config.cooldowns.up * 1000,
    downCooldownMs: config.cooldowns.down * 1000,
    minNodes: s.min_nodes,
    maxNodes: s.max_nodes,
    step: s.step,
    scaleDownOrder: s.scale_down_order,
    scaleUpEnabled: config.machine.scale_up_command.trim() !== "",
    scaleDownEnabled: config.machine.scale_down_command.trim() !== "",
    // Agents' interval is theirs to set; the window's coverage allows gaps of up to twice this.
    sampleIntervalMs: Math.max(5_000, config.master.interval * 1000),
    launchTimeoutMs: config.machine.launch_timeout * 1000,
    drainMs: s.drain_seconds * 1000,
    forgetAfterMs: s.forget_after * 1000,
    minAvailable: s.min_available,
    nodeCapacity: s.node_capacity,
    policies: config.policies.map((p) => ({ name: p.name, action: p.action, cooldownMs: p.cooldown * 1000 })),
    // The config checked every expression; parsing again here cannot fail.
    schedules: config.schedules.map((x) => ({
      name: x.name,
      cron: x.cron,
      timezone: x.timezone,
      runs: parseCron(x.cron, x.timezone),
      action: x.action,
      graceMs: x.grace * 1000,
    })),
  };
}
