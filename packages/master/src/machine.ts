/**
 * The scaler's state machine: `step(state, event, policy, now) → { state, effects, reply }`,
 * pure. The runner (scaler.ts) feeds it events (ticks, command results, registrations, the
 * operator's commands) and performs its effects in order: a `save` comes before the action it
 * records, and when the save fails the runner keeps the old state and performs nothing. The
 * simulator drives the same function with a model of the cloud.
 *
 *   launch:  running (saved, command starts) ──ok──► pending ──nodes registered──► done
 *                 │                                    └──launch_timeout──► failed (backoff)
 *                 └──command failed──► failed (backoff; its cooldown is put back)
 *
 *   drain:   draining (saved; runtime `drain`, or out of the config) ──drain_seconds──►
 *            out of the config (confirmed on the live file) ──► terminating (saved, command
 *            starts) ──ok──► done (entry removed) / ──failed──► failed (back in service, backoff)
 *
 *   start:   a launch still `running` had its command interrupted: pending (never run again)
 *            until a node registers or launch_timeout. A drain still `terminating` is never
 *            run again either: its entry is removed as if it had run.
 *
 * Every open drain's node is left out of haproxy.cfg (`excludedNames`), by the master and by
 * the CLI alike, so a CLI apply never puts a leaving node back.
 *
 *   named policy (execute, webhook, schedule): unknown ──► refused
 *            paused (webhook, schedule) ──► refused; target = current ──► no_change
 *            in its own cooldown or the group's (that direction) ──► discarded, says which
 *            else ──► its run recorded with the launch or drains (one save) ──► as above
 *
 *   schedule (each tick): latest run time ≤ now not handled yet ──within grace──► run (the
 *            run time is recorded before any command) / ──older──► skipped (never run late)
 *
 *   terminate <node>: unknown / hand-added / leaving / at min_nodes (no --force) ──► refused
 *            else ──► a drain of that node (drain_seconds, or 0 with --no-drain) ──► as above
 *   a node's leave (its own connection): ──► a drain of that node, min_nodes aside; the next
 *            tick launches a replacement when min_nodes or the policy needs one
 *   teardown: paused + teardown recorded with the drains of every launched node (one save)
 *            ──each tick──► launched nodes that came since are drained too ──resume──► ended
 */
import { capCount, chooseForRemoval, cooldownLeftMs, currentCpu, decide, type Decision, type NodeObservation, type Recommendation } from "./decide.js";
import { clampToLimits, describeAction, describeScheduleAction, ON_TIME_MS, percentChange, policyTarget, scheduleDue } from "./policies.js";
import type { ScalingPolicy, ScheduleRule } from "./policy.js";
import { recordDemand, type DemandHistory } from "./predictive.js";
import { emptyState, type Backoff, type DrainRecord, type DurableState, type LaunchRecord, type RunRecord } from "./state-store.js";

/** Counts since this master started (status and metrics). */
export interface ActionCounters {
  launches: number;
  launch_failures: number;
  launch_timeouts: number;
  terminations: number;
  terminate_failures: number;
  not_recorded: number;
}

/** Everything the state machine holds: the durable part (state.json) and what lives in memory. */
export interface ScalerState {
  durable: DurableState;
  /** Target mode: the recommendations of the last scale_down_window. */
  recommendations: readonly Recommendation[];
  recommendingSince: number | undefined;
  /** Predictive: demand per minute (kept in state_dir by the runner). */
  demand: DemandHistory | undefined;
  lastDecision: { at: number; decision: Decision } | undefined;
  /** Drains with an effect in flight (taken out of the config, or terminating): not started twice. */
  busy: readonly string[];
  counters: ActionCounters;
  /** Makes ids unique within one run. */
  seq: number;
  /**
   * Nodes that claimed a launch before its command printed the instances, with what they said:
   * the output, once printed, vouches for their instance ids (in memory: a restart loses the
   * output anyway).
   */
  earlyClaims: readonly { launch: string; node: string; address: string; instanceId?: string | undefined }[];
  /** Runs of each named policy and schedule since this master started, by outcome (metrics). */
  runs: { policies: Readonly<Record<string, RunCounts>>; schedules: Readonly<Record<string, RunCounts>> };
}

/** How a policy or schedule run ended. */
export type RunOutcome = RunRecord["outcome"];
/** Runs by outcome. */
export type RunCounts = Readonly<Partial<Record<RunOutcome, number>>>;

/** Who asks for a named policy: by hand (`execute`), a webhook or a schedule. Pause holds all but the first. */
export interface PolicyTrigger {
  via: string;
  manual: boolean;
}

/** A node's word about itself, as the registration passes it on, with what its credential proved. */
export interface NodeHello {
  name: string;
  address: string;
  instanceId?: string | undefined;
  /** The launch whose join credential it presented: it may claim that launch only. */
  launchId?: string | undefined;
  /**
   * It may claim a launch that printed no instances, as any new node: it presented the cluster
   * secret (the weaker mode), or a node credential for a name the master never saw.
   */
  anyLaunch?: boolean;
}

/** What a claim answers: whether the node fulfils a launch, and the instance id that launch's own output gives it. */
export interface LaunchClaim {
  claimed: boolean;
  instanceId?: string;
}

/** A hosts.d entry, as reconciliation on start needs it. */
export interface HostRef {
  name: string;
  address: string;
  source: string;
  addedAt: string;
  instanceId?: string | undefined;
  /** The launch whose join credential this node registered with (so a new leader can match it when the launch printed nothing). */
  launch?: string | undefined;
  /** Set when a launch's output or an operator vouched for instanceId (hosts.d instance_id_from). */
  instanceIdFrom?: string | undefined;
}

/** One instance a launch command printed (run-instances JSON). */
export interface LaunchedInstance {
  instanceId: string;
  privateAddress?: string;
}

/** What happens to the scaler. */
export type ScalerEvent =
  | { type: "start"; hosts: readonly HostRef[] }
  | { type: "tick"; nodes: readonly NodeObservation[] }
  | { type: "launch_finished"; id: string; ok: boolean; instances: readonly LaunchedInstance[]; detail: string }
  | { type: "node_registered"; hello: NodeHello }
  | { type: "removed_from_config"; id: string; confirmed: boolean }
  | { type: "terminate_finished"; id: string; ok: boolean; detail: string }
  | { type: "scale_up"; count: number | undefined; percent?: number | undefined; nodes: readonly NodeObservation[] }
  | { type: "scale_down"; count: number | undefined; percent?: number | undefined; nodes: readonly NodeObservation[] }
  | { type: "execute_policy"; name: string; trigger: PolicyTrigger; nodes: readonly NodeObservation[] }
  | { type: "set_capacity"; desired: number; nodes: readonly NodeObservation[] }
  /** `autoscaler terminate <name | instance-id>`: drain (unless `drain` is false), then terminate that node. */
  | { type: "terminate_node"; target: string; drain: boolean; force: boolean; nodes: readonly NodeObservation[] }
  /** A node asked to leave on its own connection (the name its hello registered there). */
  | { type: "node_leave"; node: string; nodes: readonly NodeObservation[] }
  /** `autoscaler teardown`: pause, then drain and terminate every node the autoscaler launched. */
  | { type: "teardown"; nodes: readonly NodeObservation[] }
  | { type: "webhook_add"; name: string; policy: string; sha256: string }
  | { type: "webhook_remove"; name: string }
  | { type: "pause" }
  | { type: "resume" };

/** What the runner must do, in order. */
export type Effect =
  | { kind: "save" }
  | { kind: "launch"; id: string; count: number }
  | { kind: "drain"; id: string; node: string }
  | { kind: "remove_from_config"; id: string; node: string }
  | { kind: "terminate"; id: string; node: string; instanceId: string; address: string }
  | { kind: "restore"; node: string }
  | { kind: "remove_host"; node: string }
  /** A launch's own output names this node's instance: record it in hosts.d as vouched for (instance_id_from = launch). */
  | { kind: "vouch"; node: string; instanceId: string }
  | { kind: "save_demand" }
  | { kind: "log"; level: "debug" | "info" | "warn" | "error"; event?: string; message: string; fields?: Record<string, unknown> };

/** The answer to an operator's command. */
export type Reply = { ok: true; value: unknown } | { ok: false; error: string };

/** One transition. */
export interface StepResult {
  state: ScalerState;
  effects: Effect[];
  reply?: Reply;
}

const KEEP_FINISHED = 20;

/** Backoff after a failed command: 30 s, doubling, at most 10 minutes. */
export function failureBackoffMs(consecutiveFailures: number): number {
  if (consecutiveFailures <= 0) return 0;
  return Math.min(30_000 * 2 ** (consecutiveFailures - 1), 600_000);
}

/** A fresh state machine over a loaded state.json. */
export function initialState(durable: DurableState = emptyState(), demand?: DemandHistory): ScalerState {
  return {
    durable,
    recommendations: [],
    recommendingSince: undefined,
    demand,
    lastDecision: undefined,
    busy: [],
    counters: { launches: 0, launch_failures: 0, launch_timeouts: 0, terminations: 0, terminate_failures: 0, not_recorded: 0 },
    seq: 0,
    earlyClaims: [],
    runs: { policies: {}, schedules: {} },
  };
}

/**
 * The policy with the limits a schedule set (durable, over the ini's min_nodes / max_nodes)
 * while that schedule is still in the ini; min never above max, should a reloaded ini cross them.
 */
export function effectivePolicy(policy: ScalingPolicy, d: DurableState): ScalingPolicy {
  const limits = d.limits;
  // Limits hold while the schedule that set them is in the ini: removing it gives the ini's back.
  if (!limits || !(policy.schedules ?? []).some((x) => `schedule ${x.name}` === limits.by)) return policy;
  const maxNodes = limits.maxNodes ?? policy.maxNodes;
  const minNodes = Math.min(limits.minNodes ?? policy.minNodes, maxNodes);
  return minNodes === policy.minNodes && maxNodes === policy.maxNodes ? policy : { ...policy, minNodes, maxNodes };
}

export const isOpenLaunch = (l: LaunchRecord) => l.status === "running" || l.status === "pending";
export const isOpenDrain = (d: DrainRecord) => d.status === "draining" || d.status === "terminating";
/** How many nodes a launch still waits for: the instances it printed, else the count asked for. */
const expected = (l: LaunchRecord) => (l.instances.length > 0 ? l.instances.length : l.count);
const waitingFor = (l: LaunchRecord) => (isOpenLaunch(l) ? Math.max(0, expected(l) - l.nodes.length) : 0);
/** Nodes launched that have not registered yet. */
export const pendingCount = (d: DurableState) => d.launches.reduce((n, l) => n + waitingFor(l), 0);
/**
 * Launches still waiting, less the agents that said hello but are not in hosts.d yet and claimed
 * no launch: each is most likely the node one of those launches is about to claim, so it is not
 * counted twice (as a node and as pending).
 */
export function effectivePending(d: DurableState, nodes: readonly NodeObservation[]): number {
  const claimed = (name: string) => d.launches.some((l) => l.nodes.includes(name));
  const arriving = nodes.filter((n) => n.registering && !claimed(n.name)).length;
  return Math.max(0, pendingCount(d) - arriving);
}

/** The nodes that must be left out of haproxy.cfg: every open drain's (the one rule for master and CLI). */
export const excludedNames = (d: DurableState): ReadonlySet<string> => new Set(d.drains.filter(isOpenDrain).map((x) => x.node));

/** The instance of a launch's own output a node is: by its instance id, else by its address. */
function launchInstance(record: LaunchRecord, instanceId: string | undefined, address: string) {
  return record.instances.find((i) => i.instanceId === instanceId) ?? record.instances.find((i) => i.privateAddress === address);
}

/**
 * Backends whose instance id a launch's own output vouches for (the node is one of the launch's
 * nodes and its id is one the launch printed) but whose hosts.d entry does not say so yet: a
 * follower registered it as any agent, or the claim came before the output. The same rule as a claim.
 */
export function launchVouches(d: DurableState, hosts: readonly HostRef[]): { node: string; instanceId: string }[] {
  const out: { node: string; instanceId: string }[] = [];
  for (const h of hosts) {
    if (h.source === "manual" || h.instanceIdFrom !== undefined) continue;
    const record = d.launches.find((l) => l.nodes.includes(h.name));
    const instance = record ? launchInstance(record, h.instanceId, h.address) : undefined;
    if (instance) out.push({ node: h.name, instanceId: instance.instanceId });
  }
  return out;
}

/**
 * Whether a node is the one a scale-down took out: the same instance id when both have one (a
 * new instance may reuse a terminated one's address, and its name when names come from the
 * hostname), else the same name and address.
 */
function drainedNode(d: DrainRecord, node: { name: string; address: string; instanceId?: string | undefined }): boolean {
  return d.instanceId && node.instanceId ? d.instanceId === node.instanceId : d.node === node.name && d.address === node.address;
}

/**
 * Backends a finished scale-down removed, still in this proxy's hosts.d: a follower's copy (the
 * leader removes only its own entry), or one a restart left behind. An entry older than the
 * drain's end; or a newer one of the same node, registered within forget_after of that end by a
 * master that did not know of the drain yet (it had just started, or not yet read the leader's
 * write), unless a later launch claimed it (a warm pool's start-instances may bring an instance
 * back). Any other node of that name that registered afterwards stays.
 */
export function removedByDrains(d: DurableState, hosts: readonly HostRef[], policy: Pick<ScalingPolicy, "forgetAfterMs">): string[] {
  const claimedAfter = (name: string, at: number) => d.launches.some((l) => l.decidedAt > at && l.nodes.includes(name));
  const removed = (h: HostRef, x: DrainRecord) => {
    if (x.node !== h.name || x.status !== "done" || x.finishedAt === undefined) return false;
    const added = Date.parse(h.addedAt);
    if (added <= x.finishedAt) return true;
    return added - x.finishedAt < policy.forgetAfterMs && drainedNode(x, h) && !claimedAfter(h.name, x.finishedAt);
  };
  return hosts
    .filter((h) => h.source !== "manual")
    .filter((h) => d.drains.some((x) => removed(h, x)))
    .map((h) => h.name);
}

/** Accumulates a transition: copy-on-write helpers over the state, and the effects in order. */
class Transition {
  effects: Effect[] = [];
  private memo: { limits: DurableState["limits"]; policy: ScalingPolicy } | undefined;
  constructor(
    public state: ScalerState,
    /** The ini's policy; `policy` adds the limits a schedule set. */
    readonly base: ScalingPolicy,
    readonly now: number,
  ) {}
  get policy(): ScalingPolicy {
    const limits = this.durable.limits;
    if (this.memo && this.memo.limits === limits) return this.memo.policy;
    const policy = effectivePolicy(this.base, this.durable);
    this.memo = { limits, policy };
    return policy;
  }
  get durable() {
    return this.state.durable;
  }
  set(patch: Partial<ScalerState>) {
    this.state = { ...this.state, ...patch };
  }
  setDurable(patch: Partial<DurableState>) {
    this.set({ durable: { ...this.durable, ...patch } });
  }
  launch(id: string, patch: Partial<LaunchRecord>) {
    this.setDurable({ launches: this.durable.launches.map((l) => (l.id === id ? { ...l, ...patch } : l)) });
  }
  drain(id: string, patch: Partial<DrainRecord>) {
    this.setDurable({ drains: this.durable.drains.map((d) => (d.id === id ? { ...d, ...patch } : d)) });
  }
  count(key: keyof ActionCounters) {
    this.set({ counters: { ...this.state.counters, [key]: this.state.counters[key] + 1 } });
  }
  busy(id: string, on: boolean) {
    this.set({ busy: on ? [...this.state.busy, id] : this.state.busy.filter((x) => x !== id) });
  }
  newId(prefix: string) {
    this.set({ seq: this.state.seq + 1 });
    return `${prefix}-${this.now.toString(36)}-${this.state.seq.toString(36)}`;
  }
  emit(...effects: Effect[]) {
    this.effects.push(...effects);
  }
  log(event: string, message: string, fields: Record<string, unknown> = {}, level: "info" | "warn" | "error" = "info") {
    this.effects.push({ kind: "log", level, event, message, fields });
  }
  /**
   * One place for failure bookkeeping: back off that direction and, for a command that failed
   * (`undo`), put back the cooldown its decision started. Returns the backoff in ms.
   */
  failed(direction: "up" | "down", undo?: { decidedAt: number; previous: number | undefined }): number {
    const failures = (this.durable.backoff[direction]?.failures ?? 0) + 1;
    const backoff: Backoff = { failures, until: this.now + failureBackoffMs(failures) };
    const key = direction === "up" ? "lastScaleUpAt" : "lastScaleDownAt";
    // A command that did not happen starts no cooldown: only the backoff holds the next one.
    const cooldown = undo && this.durable[key] === undo.decidedAt ? { [key]: undo.previous } : {};
    this.setDurable({ backoff: { ...this.durable.backoff, [direction]: backoff }, ...cooldown });
    return failureBackoffMs(failures);
  }
  succeeded(direction: "up" | "down") {
    if (this.durable.backoff[direction] === undefined) return;
    const { [direction]: _, ...rest } = this.durable.backoff;
    this.setDurable({ backoff: rest });
  }
  /** Keep the last KEEP_FINISHED finished launches and drains. */
  prune() {
    const trim = <T extends { status: string }>(list: T[], open: (x: T) => boolean) => {
      const finished = list.filter((x) => !open(x));
      if (finished.length <= KEEP_FINISHED) return list;
      const drop = new Set(finished.slice(0, finished.length - KEEP_FINISHED));
      return list.filter((x) => !drop.has(x));
    };
    this.setDurable({ launches: trim(this.durable.launches, isOpenLaunch), drains: trim(this.durable.drains, isOpenDrain) });
  }
  result(reply?: Reply): StepResult {
    return reply ? { state: this.state, effects: this.effects, reply } : { state: this.state, effects: this.effects };
  }
}

const seconds = (ms: number) => Math.round(ms / 1000);

/** One transition of the scaler. Pure: the same inputs give the same outputs. */
export function step(state: ScalerState, event: ScalerEvent, policy: ScalingPolicy, now: number): StepResult {
  const t = new Transition(state, policy, now);
  switch (event.type) {
    case "start":
      return reconcile(t, event.hosts);
    case "tick":
      return tick(t, event.nodes);
    case "launch_finished":
      return launchFinished(t, event);
    case "node_registered":
      return claimLaunch(t, event.hello);
    case "removed_from_config":
      return removedFromConfig(t, event);
    case "terminate_finished":
      return terminateFinished(t, event);
    case "scale_up":
      return manualScaleUp(t, event.count, event.percent, event.nodes);
    case "scale_down":
      return manualScaleDown(t, event.count, event.percent, event.nodes);
    case "execute_policy":
      return executePolicy(t, event.name, event.trigger, event.nodes);
    case "set_capacity":
      return setCapacity(t, event.desired, event.nodes);
    case "terminate_node":
      return terminateNode(t, event, event.nodes);
    case "node_leave":
      return nodeLeaves(t, event.node, event.nodes);
    case "teardown":
      return startTeardown(t, event.nodes);
    case "webhook_add":
      return addWebhook(t, event);
    case "webhook_remove":
      return removeWebhook(t, event.name);
    case "pause":
    case "resume":
      return setPaused(t, event.type === "pause");
  }
}

// ---- decisions -----------------------------------------------------------------------------

/** Record a launch (the runner saves it before the command starts). */
function recordLaunch(t: Transition, count: number, reason: string, manual: boolean): LaunchRecord {
  const record: LaunchRecord = { id: t.newId("launch"), decidedAt: t.now, count, reason, status: "running", instances: [], nodes: [], manual };
  if (t.durable.lastScaleUpAt !== undefined) record.previousScaleUpAt = t.durable.lastScaleUpAt;
  t.setDurable({ launches: [...t.durable.launches, record], lastScaleUpAt: t.now });
  t.count("launches");
  return record;
}

/** Record a drain of each node (saved before anything is drained). */
function recordDrains(
  t: Transition,
  chosen: readonly NodeObservation[],
  reason: string,
  manual: boolean,
  options: { drainMs?: number; operatorInstanceId?: string } = {},
): DrainRecord[] {
  const previous = t.durable.lastScaleDownAt;
  const records = chosen.map((n): DrainRecord => {
    // An id the operator named on the command line is their say-so for it (`terminate i-…`).
    const instanceId = n.instanceId ?? options.operatorInstanceId;
    const record: DrainRecord = {
      id: t.newId("drain"),
      node: n.name,
      instanceId: instanceId ?? "",
      ...(instanceId === undefined && n.reportedInstanceId !== undefined ? { reportedInstanceId: n.reportedInstanceId } : {}),
      address: n.address ?? "",
      decidedAt: t.now,
      drainUntil: t.now + (options.drainMs ?? t.policy.drainMs),
      status: "draining",
      reason,
      manual,
    };
    if (previous !== undefined) record.previousScaleDownAt = previous;
    return record;
  });
  t.setDurable({ drains: [...t.durable.drains, ...records], lastScaleDownAt: t.now });
  return records;
}

function emitLaunch(t: Transition, record: LaunchRecord) {
  t.emit({ kind: "save" });
  t.log("scale_up", `launching ${record.count} node(s): ${record.reason}`, { launch: record.id, count: record.count, manual: record.manual });
  t.emit({ kind: "launch", id: record.id, count: record.count });
}

function emitDrains(t: Transition, records: readonly DrainRecord[]) {
  t.emit({ kind: "save" });
  for (const r of records) {
    t.log("scale_down", `draining ${r.node} for ${seconds(r.drainUntil - t.now)} s, then terminating it: ${r.reason}`, {
      drain: r.id,
      node: r.node,
      manual: r.manual,
    });
    t.emit({ kind: "drain", id: r.id, node: r.node });
  }
}

/** The decision's view of the durable state. */
function decisionState(s: ScalerState, nodes: readonly NodeObservation[]) {
  const d = s.durable;
  const blocked = (b: Backoff | undefined) => b?.until;
  return {
    pendingLaunches: effectivePending(d, nodes),
    leaving: d.drains.filter(isOpenDrain).length,
    lastScaleUpAt: d.lastScaleUpAt,
    lastScaleDownAt: d.lastScaleDownAt,
    upBlockedUntil: blocked(d.backoff.up),
    downBlockedUntil: blocked(d.backoff.down),
    paused: d.paused,
    recommendations: s.recommendations,
    recommendingSince: s.recommendingSince,
    demand: s.demand,
  };
}

/** Observations without the nodes on their way out. */
function serving(s: ScalerState, nodes: readonly NodeObservation[]) {
  const leaving = excludedNames(s.durable);
  return leaving.size === 0 ? nodes : nodes.filter((n) => !leaving.has(n.name));
}

/** Each tick: expire launches, move drains on, record demand, decide, act. */
function tick(t: Transition, all: readonly NodeObservation[]): StepResult {
  const dirty = expireLaunches(t);
  advanceDrains(t);
  runSchedules(t, all);
  continueTeardown(t, all);
  const nodes = serving(t.state, all);
  if (t.policy.predictive) recordFleetDemand(t, nodes);
  const decision = decide(decisionState(t.state, nodes), nodes, t.policy, t.now);
  rememberRecommendation(t, decision);
  if (t.state.lastDecision?.decision.reason !== decision.reason)
    t.emit({ kind: "log", level: "debug", message: "decision", fields: { action: decision.action, reason: decision.reason } });
  t.set({ lastDecision: { at: t.now, decision } });
  if (decision.action === "scale_up") {
    const reason = decision.capped ? `${decision.reason} (${decision.capped})` : decision.reason;
    emitLaunch(t, recordLaunch(t, decision.count, reason, false));
  } else if (decision.action === "scale_down") {
    const chosen = decision.nodes.map((name) => nodes.find((n) => n.name === name)!);
    emitDrains(t, recordDrains(t, chosen, decision.reason, false));
  } else if (dirty) {
    t.emit({ kind: "save" });
  }
  return t.result();
}

function rememberRecommendation(t: Transition, decision: Decision) {
  if (decision.recommendation === undefined || t.state.durable.paused) {
    if (t.state.recommendingSince !== undefined) t.set({ recommendations: [], recommendingSince: undefined });
    return;
  }
  const start = t.now - Math.max(t.policy.scaleDownWindowMs, t.policy.scaleUpWindowMs);
  const kept = t.state.recommendations.filter((r) => r.at > start);
  // Only a change of value is stored: the window's highest is the same, and a week replays fast.
  const last = kept[kept.length - 1];
  if (last && last.desired === decision.recommendation && kept.length > 1 && kept[kept.length - 2]!.desired === decision.recommendation)
    kept[kept.length - 1] = { at: t.now, desired: last.desired };
  else kept.push({ at: t.now, desired: decision.recommendation });
  t.set({ recommendations: kept, recommendingSince: t.state.recommendingSince ?? t.now });
}

function recordFleetDemand(t: Transition, nodes: readonly NodeObservation[]) {
  let sum = 0;
  let measured = 0;
  for (const n of nodes) {
    const cpu = currentCpu(n, t.policy, t.now);
    if (cpu !== undefined) {
      sum += cpu;
      measured++;
    }
  }
  if (measured === 0) return;
  const { history, closed } = recordDemand(t.state.demand ?? { lastMinute: 0, values: [] }, t.now, sum);
  t.set({ demand: history });
  if (closed) t.emit({ kind: "save_demand" });
}

// ---- launches ------------------------------------------------------------------------------

function expireLaunches(t: Transition): boolean {
  let changed = false;
  for (const l of t.durable.launches) {
    if (l.status !== "pending") continue;
    if (waitingFor(l) === 0) {
      t.launch(l.id, { status: "done", finishedAt: t.now });
      changed = true;
      continue;
    }
    if (t.now - l.decidedAt < t.policy.launchTimeoutMs) continue;
    const error = `launch_timeout: ${l.nodes.length} of ${expected(l)} node(s) registered within ${seconds(t.policy.launchTimeoutMs)} s`;
    t.launch(l.id, { status: "failed", finishedAt: t.now, error });
    changed = true;
    // A launch that never produces a node is a failure like a failed command: back off before the next.
    t.count("launch_timeouts");
    const wait = t.failed("up");
    t.log(
      "launch_timeout",
      `launch ${l.id} failed: ${error}; it no longer counts as pending (no automatic launch for ${seconds(wait)} s)`,
      { launch: l.id },
      "warn",
    );
  }
  if (changed) t.prune();
  return changed;
}

function launchFinished(t: Transition, e: Extract<ScalerEvent, { type: "launch_finished" }>): StepResult {
  const record = t.durable.launches.find((l) => l.id === e.id);
  if (!record) return t.result();
  if (e.ok) {
    const instances = e.instances.map((i) => ({ instanceId: i.instanceId, ...(i.privateAddress ? { privateAddress: i.privateAddress } : {}) }));
    const next = { ...record, instances };
    const status = record.status === "running" ? (next.nodes.length >= expected(next) ? "done" : "pending") : record.status;
    t.launch(record.id, { instances, status, ...(status === "done" ? { finishedAt: t.now } : {}) });
    const ids = instances.map((i) => i.instanceId).join(", ");
    t.log(
      "launch_started",
      `launch command for ${record.count} node(s) succeeded${e.detail ? ` ${e.detail}` : ""}${ids ? `: ${ids}` : " (no run-instances JSON: the next new node(s) will be matched)"}`,
      { launch: record.id },
    );
    t.emit({ kind: "save" });
    vouchClaimed(t, next);
  } else {
    t.launch(record.id, { status: "failed", finishedAt: t.now, error: e.detail.slice(0, 4000) });
    t.count("launch_failures");
    const wait = t.failed("up", { decidedAt: record.decidedAt, previous: record.previousScaleUpAt });
    t.log("launch_failed", `launch command failed (${e.detail}); no automatic launch for ${seconds(wait)} s`, { launch: record.id }, "error");
    t.emit({ kind: "save" });
  }
  t.prune();
  return t.result();
}

/**
 * Nodes that claimed a launch while its command still ran (before it printed the instances):
 * the launch's own output now vouches for their instance ids, matched by the id they reported,
 * else by address, each instance once.
 */
function vouchClaimed(t: Transition, record: LaunchRecord) {
  const taken = new Set<string>();
  for (const c of t.state.earlyClaims.filter((x) => x.launch === record.id)) {
    const free = record.instances.filter((i) => !taken.has(i.instanceId));
    const instance = free.find((i) => i.instanceId === c.instanceId) ?? free.find((i) => i.privateAddress === c.address);
    if (!instance) continue;
    taken.add(instance.instanceId);
    t.emit({ kind: "vouch", node: c.node, instanceId: instance.instanceId });
  }
  t.set({ earlyClaims: t.state.earlyClaims.filter((x) => x.launch !== record.id) });
}

/**
 * A node hosts.d did not have registered: it may be one a pending launch waits for. A join
 * credential names its launch; otherwise the launch's printed instances match by id or address,
 * and only a node with the cluster secret may stand in for "any new node". Replies a LaunchClaim.
 */
function claimLaunch(t: Transition, hello: NodeHello): StepResult {
  const claimed = (record: LaunchRecord): LaunchClaim => {
    const instance = launchInstance(record, hello.instanceId, hello.address);
    return instance ? { claimed: true, instanceId: instance.instanceId } : { claimed: true };
  };
  // Already claimed (the master stopped after saving the claim, before writing hosts.d).
  const before = t.durable.launches.find((l) => l.nodes.includes(hello.name));
  if (before) return t.result({ ok: true, value: claimed(before) });
  const open = t.durable.launches.filter((l) => isOpenLaunch(l) && waitingFor(l) > 0);
  let record: LaunchRecord | undefined;
  if (hello.launchId !== undefined) record = open.find((l) => l.id === hello.launchId);
  else {
    // An instance id is unique; an address may be shared (NAT, one host): ids first.
    const byId = hello.instanceId === undefined ? undefined : open.find((l) => l.instances.some((i) => i.instanceId === hello.instanceId));
    const byAddress = open.find((l) => l.instances.some((i) => i.privateAddress === hello.address));
    record = byId ?? byAddress ?? (hello.anyLaunch ? open.find((l) => l.instances.length === 0) : undefined);
  }
  if (!record) return t.result({ ok: true, value: { claimed: false } satisfies LaunchClaim });
  const nodes = [...record.nodes, hello.name];
  const done = nodes.length >= expected(record) && record.status === "pending";
  t.launch(record.id, { nodes, ...(done ? { status: "done" as const, finishedAt: t.now } : {}) });
  if (record.status === "running") {
    t.set({ earlyClaims: [...t.state.earlyClaims, { launch: record.id, node: hello.name, address: hello.address, instanceId: hello.instanceId }] });
  }
  // A node arrived: launches work, so the failure backoff starts over.
  t.succeeded("up");
  t.emit({ kind: "save" });
  t.log("launch_registered", `${hello.name} (${hello.address}) registered for launch ${record.id} (${nodes.length} of ${expected(record)})`, {
    launch: record.id,
    node: hello.name,
  });
  return t.result({ ok: true, value: claimed(record) });
}

// ---- drains --------------------------------------------------------------------------------

/** A drain whose time is up is taken out of the config (once at a time); then it is terminated. */
function advanceDrains(t: Transition) {
  for (const d of t.durable.drains) {
    if (d.status !== "draining" || t.now < d.drainUntil || t.state.busy.includes(d.id)) continue;
    t.busy(d.id, true);
    t.emit({ kind: "remove_from_config", id: d.id, node: d.node });
  }
}

/**
 * A drain whose terminate command is not run: an instance id that only the node reported (it
 * could name any instance the role may stop). A node with no id at all is terminated with
 * INSTANCE_ID empty, for a scale_down_command that goes by NODE_NAME or ADDRESS; one that needs
 * the id fails, and says so.
 */
function terminateSkipped(d: Pick<DrainRecord, "instanceId" | "reportedInstanceId">): boolean {
  return d.instanceId === "" && d.reportedInstanceId !== undefined;
}

function removedFromConfig(t: Transition, e: Extract<ScalerEvent, { type: "removed_from_config" }>): StepResult {
  const d = t.durable.drains.find((x) => x.id === e.id);
  if (!d || d.status !== "draining") {
    t.busy(e.id, false);
    return t.result();
  }
  if (!e.confirmed) {
    // Tried again on the next tick.
    t.busy(e.id, false);
    t.emit({ kind: "log", level: "warn", message: "node still in haproxy.cfg; terminate waits for the next tick", fields: { node: d.node } });
    return t.result();
  }
  if (terminateSkipped(d)) {
    // Never terminate on a node's word: the id it sent could be any instance the role may stop.
    t.drain(d.id, { status: "done", finishedAt: t.now, note: "terminate skipped: the instance id was only the node's own" });
    t.log(
      "terminate_skipped",
      `${d.node} is out of service and removed, but not terminated: its instance id (${d.reportedInstanceId}) is only the node's own word, not from a launch's output or an operator. Stop the instance yourself; for next time, vouch for a node's id with: autoscaler trust ${d.node}`,
      { drain: d.id, node: d.node },
      "warn",
    );
    t.emit({ kind: "remove_host", node: d.node }, { kind: "save" });
    return t.result();
  }
  t.drain(d.id, { status: "terminating" });
  t.emit({ kind: "save" }, { kind: "terminate", id: d.id, node: d.node, instanceId: d.instanceId, address: d.address });
  return t.result();
}

function terminateFinished(t: Transition, e: Extract<ScalerEvent, { type: "terminate_finished" }>): StepResult {
  t.busy(e.id, false);
  const d = t.durable.drains.find((x) => x.id === e.id);
  if (!d || d.status !== "terminating") return t.result();
  if (e.ok) {
    t.succeeded("down");
    finishTermination(t, d, `${d.node} terminated (instance ${d.instanceId || "unknown"})${e.detail ? `: ${e.detail}` : ""}`);
  } else {
    t.drain(d.id, { status: "failed", finishedAt: t.now, error: e.detail.slice(0, 4000) });
    t.count("terminate_failures");
    t.failed("down", { decidedAt: d.decidedAt, previous: d.previousScaleDownAt });
    t.log("terminate_failed", `terminate command for ${d.node} failed (${e.detail}); the node is back in service`, { drain: d.id }, "error");
    t.emit({ kind: "save" }, { kind: "restore", node: d.node });
  }
  t.prune();
  return t.result();
}

/** The entry goes first, then the record says done: a crash in between finishes it again on start. */
function finishTermination(t: Transition, d: DrainRecord, message: string, save = true) {
  t.drain(d.id, { status: "done", finishedAt: t.now });
  t.count("terminations");
  t.log("terminated", message, { drain: d.id, node: d.node });
  t.emit({ kind: "remove_host", node: d.node });
  if (save) t.emit({ kind: "save" });
}

/**
 * Whether a hello may register: a message when it comes from a node this master terminated (or
 * is terminating) within forget_after, so a node shutting down is not put back in service.
 */
export function admitHello(state: ScalerState, hello: NodeHello, policy: ScalingPolicy, now: number): string | undefined {
  const d = state.durable.drains.find(
    (x) => (x.status === "terminating" || (x.status === "done" && now - (x.finishedAt ?? 0) < policy.forgetAfterMs)) && drainedNode(x, hello),
  );
  if (!d) return undefined;
  // A launch whose command has returned and that waits for this instance, or for any new node
  // (no run-instances JSON), may be bringing it back: a warm pool's start-instances reuses ids.
  const awaited = state.durable.launches.some(
    (l) =>
      l.status === "pending" &&
      waitingFor(l) > 0 &&
      l.decidedAt > (d.finishedAt ?? d.decidedAt) &&
      (l.instances.length === 0 || (hello.instanceId !== undefined && l.instances.some((i) => i.instanceId === hello.instanceId))),
  );
  if (awaited) return undefined;
  const what = d.instanceId ? `instance ${d.instanceId}` : `${d.node} at ${d.address}`;
  const skipped = terminateSkipped(d);
  const when =
    d.status === "terminating"
      ? "is being terminated"
      : skipped
        ? "was taken out of service"
        : `was terminated ${Math.max(0, seconds(now - (d.finishedAt ?? now)))} s ago`;
  return `${what} ${when} by this master (scale-down ${d.id}); a node shutting down is not put back in service (a new node needs its own instance id; this holds for forget_after, ${seconds(policy.forgetAfterMs)} s)`;
}

// ---- start ---------------------------------------------------------------------------------

function reconcile(t: Transition, hosts: readonly HostRef[]): StepResult {
  let changed = false;
  const note =
    "the master stopped while the launch command ran; its outcome is unknown, so it is not run again and counts as pending until a node registers or launch_timeout";
  for (const l of t.durable.launches.filter((x) => x.status === "running")) {
    t.launch(l.id, { status: "pending", note });
    changed = true;
    t.log("launch_recovered", `launch ${l.id} (${l.count} node(s)) was interrupted by a restart: ${note}`, { launch: l.id }, "warn");
  }
  for (const l of t.durable.launches.filter((x) => x.status === "pending")) {
    // A node that registered while the master was down (and is in hosts.d now) fulfils its launch.
    const nodes = [...l.nodes];
    for (const h of hosts) {
      if (nodes.includes(h.name) || nodes.length >= expected(l)) continue;
      // Its join credential names this launch: that is proof enough (the credential is the launch's own).
      if (h.launch === l.id && h.source !== "manual" && !t.durable.launches.some((x) => x.nodes.includes(h.name))) {
        nodes.push(h.name);
        continue;
      }
      if (l.instances.length === 0) continue;
      // Never a hand-added host, a node older than the decision, or one another launch holds: they
      // may share the instance's address (NAT, one host, a reused address) without being its node.
      if (h.source === "manual" || !(Date.parse(h.addedAt) >= l.decidedAt) || t.durable.launches.some((x) => x.nodes.includes(h.name))) continue;
      if (l.instances.some((i) => i.instanceId === h.instanceId || i.privateAddress === h.address)) nodes.push(h.name);
    }
    // So does a node that registered before the master stopped, while the command still ran.
    const done = nodes.length >= expected(l);
    if (nodes.length !== l.nodes.length || done) {
      t.launch(l.id, { nodes, ...(done ? { status: "done" as const, finishedAt: t.now } : {}) });
      changed = true;
    }
  }
  for (const d of t.durable.drains.filter((x) => x.status === "terminating")) {
    const dnote = "the master stopped while the terminate command ran; it is not run again";
    t.drain(d.id, { note: dnote });
    t.log("terminate_recovered", `scale-down of ${d.node} was interrupted by a restart: ${dnote}; its entry is removed`, { drain: d.id }, "warn");
    finishTermination(t, { ...d, note: dnote }, `${d.node} removed after an interrupted terminate (outcome unknown, not repeated)`, false);
    changed = true;
  }
  if (changed) t.emit({ kind: "save" });
  for (const node of removedByDrains(t.durable, hosts, t.policy)) t.emit({ kind: "remove_host", node });
  for (const v of launchVouches(t.durable, hosts)) t.emit({ kind: "vouch", ...v });
  for (const d of t.durable.drains.filter((x) => x.status === "draining")) {
    t.log("drain_recovered", `scale-down of ${d.node} continues after a restart (terminate at ${new Date(d.drainUntil).toISOString()})`, { drain: d.id });
    t.emit({ kind: "drain", id: d.id, node: d.node });
  }
  return t.result();
}

// ---- the operator's commands ---------------------------------------------------------------

/** Serving nodes (leaving ones aside) and the count a change starts from: they plus pending launches. */
function currentCount(t: Transition, all: readonly NodeObservation[]) {
  const nodes = serving(t.state, all);
  return { nodes, current: nodes.length + effectivePending(t.durable, nodes) };
}

/** Launch `wanted` more nodes (capped by max_nodes), recorded before the command runs. */
function grow(t: Transition, wanted: number, current: number, reason: string): Reply {
  if (!t.policy.scaleUpEnabled) return { ok: false, error: "no [machine] scale_up_command is set, so there is nothing to run" };
  const { count, capped } = capCount(wanted, current, t.policy.maxNodes);
  if (count === 0) return { ok: false, error: `cannot scale up: ${capped}` };
  const why = `${reason}${capped ? ` (${capped})` : ""}`;
  const record = recordLaunch(t, count, why, true);
  emitLaunch(t, record);
  return { ok: true, value: { launched: count, launch: record.id, reason: why } };
}

/** Drain `wanted` removable nodes (never below min_nodes), recorded before anything is drained. */
function shrink(t: Transition, wanted: number, nodes: readonly NodeObservation[], reason: string): Reply {
  if (!t.policy.scaleDownEnabled) return { ok: false, error: "no [machine] scale_down_command is set, so nodes cannot be terminated" };
  const room = nodes.length - t.policy.minNodes;
  if (room <= 0) return { ok: false, error: `cannot scale down: ${nodes.length} backend(s) is already at min_nodes (${t.policy.minNodes})` };
  const chosen = chooseForRemoval(nodes, Math.min(wanted, room), t.policy, false);
  if (chosen.length === 0) return { ok: false, error: "cannot scale down: no backend may be removed (hand-added hosts are never scaled down)" };
  const why = `${reason}${chosen.length < wanted ? ` (limited to ${chosen.length} by min_nodes ${t.policy.minNodes} and removable nodes)` : ""}`;
  emitDrains(t, recordDrains(t, chosen, why, true));
  return { ok: true, value: { draining: chosen.map((n) => n.name), reason: why } };
}

/** The nodes `N` or `N%` asks for (a percent of the current count, rounded away from zero, at least 1). */
function wantedOf(requested: number | undefined, percent: number | undefined, current: number, fallback: number): { wanted: number; said: string } {
  if (percent !== undefined) {
    const wanted = Math.abs(percentChange(current, percent));
    return { wanted, said: `${Math.abs(percent)}% of ${current} = ${wanted}` };
  }
  const wanted = requested ?? fallback;
  return { wanted, said: String(wanted) };
}

function manualScaleUp(t: Transition, requested: number | undefined, percent: number | undefined, all: readonly NodeObservation[]): StepResult {
  const { current } = currentCount(t, all);
  const { wanted, said } = wantedOf(requested, percent, current, t.policy.step);
  return t.result(grow(t, wanted, current, `manual scale-up of ${said}`));
}

function manualScaleDown(t: Transition, requested: number | undefined, percent: number | undefined, all: readonly NodeObservation[]): StepResult {
  const { nodes } = currentCount(t, all);
  // A percent of the serving nodes: those are what a scale-down can take.
  const { wanted, said } = wantedOf(requested, percent, nodes.length, 1);
  return t.result(shrink(t, wanted, nodes, `manual scale-down of ${said}`));
}

/** Move the count to `target` (already within min/max): a launch, drains, or nothing. */
function changeTo(t: Transition, target: number, all: readonly NodeObservation[], reason: string): Reply | undefined {
  const { nodes, current } = currentCount(t, all);
  if (target > current) return grow(t, target - current, current, reason);
  if (target < current) return shrink(t, current - target, nodes, reason);
  return undefined;
}

/** `autoscaler set-capacity N` (and a schedule's `desired`): to N within min/max, no cooldown (as AWS set-desired-capacity). */
function setCapacity(t: Transition, desired: number, all: readonly NodeObservation[]): StepResult {
  const { current } = currentCount(t, all);
  const { target, clamped } = clampToLimits(desired, t.policy.minNodes, t.policy.maxNodes);
  const reason = `set-capacity ${desired}${clamped ? ` (${clamped})` : ""}`;
  const reply = changeTo(t, target, all, reason);
  if (!reply) return t.result({ ok: true, value: { changed: false, reason: `${reason}: already at ${current}` } });
  if (reply.ok) t.log("set_capacity", `${reason}: from ${current} to ${target}`, { desired, target });
  return t.result(reply.ok ? { ok: true, value: { changed: true, ...(reply.value as object) } } : reply);
}

/** Count a run and log it; `record` keeps it in the durable state. */
function noteRun(t: Transition, kind: "policies" | "schedules", name: string, run: RunRecord) {
  const counts = t.state.runs[kind][name] ?? {};
  t.set({ runs: { ...t.state.runs, [kind]: { ...t.state.runs[kind], [name]: { ...counts, [run.outcome]: (counts[run.outcome] ?? 0) + 1 } } } });
  const what = kind === "policies" ? `policy ${name}` : `schedule ${name}`;
  const level = run.outcome === "executed" || run.outcome === "no_change" ? "info" : "warn";
  t.log(
    kind === "policies" ? `policy_${run.outcome}` : `schedule_${run.outcome}`,
    `${what} (${run.via}): ${run.result}`,
    { [kind === "policies" ? "policy" : "schedule"]: name, via: run.via, outcome: run.outcome },
    level,
  );
}

/**
 * Run a named policy: its target from the current count, clamped to min/max; discarded inside
 * its own cooldown or the group's for that direction (the reply says which). The run is recorded
 * in the durable state before any command starts (the same save as the launch or drain).
 */
function runPolicy(t: Transition, name: string, trigger: PolicyTrigger, all: readonly NodeObservation[]): Reply {
  const p = t.policy.policies?.find((x) => x.name === name);
  if (!p) {
    const known = (t.policy.policies ?? []).map((x) => x.name);
    return {
      ok: false,
      error: `unknown policy ${JSON.stringify(name)}; ${known.length ? `the ini has ${known.join(", ")}` : "the ini has no [policy:NAME] section"}`,
    };
  }
  const previous = t.durable.policies?.[name];
  const record = (outcome: RunOutcome, result: string, changed: boolean) => {
    const lastChangeAt = changed ? t.now : previous?.lastChangeAt;
    const run: RunRecord = { at: t.now, via: trigger.via, outcome, result: result.slice(0, 1024) };
    t.setDurable({ policies: { ...t.durable.policies, [name]: { ...(lastChangeAt !== undefined ? { lastChangeAt } : {}), last: run } } });
    return run;
  };
  const finish = (outcome: RunOutcome, result: string): Reply => {
    noteRun(t, "policies", name, record(outcome, result, false));
    t.emit({ kind: "save" });
    const value = { policy: name, outcome, result };
    return outcome === "no_change" ? { ok: true, value } : { ok: false, error: `policy ${name} ${outcome}: ${result}` };
  };
  if (!trigger.manual && t.durable.paused)
    return finish("refused", "automatic scaling is paused (autoscaler resume); only autoscaler execute runs a policy now");
  const { current } = currentCount(t, all);
  const { target, clamped } = clampToLimits(policyTarget(p.action, current), t.policy.minNodes, t.policy.maxNodes);
  const asked = `${describeAction(p.action)} from ${current}${clamped ? ` (${clamped})` : ""}`;
  if (target === current) return finish("no_change", `${asked}: already at ${current}`);
  const direction = target > current ? "up" : "down";
  const own = previous?.lastChangeAt === undefined ? 0 : Math.max(0, p.cooldownMs - (t.now - previous.lastChangeAt));
  const group = cooldownLeftMs(t.durable, t.policy, t.now, direction);
  if (own > 0 || group > 0) {
    const why = [
      own > 0 ? `policy ${name}'s own cooldown (${seconds(own)} s left)` : "",
      group > 0 ? `the group's scale_${direction}_cooldown (${seconds(group)} s left)` : "",
    ].filter(Boolean);
    return finish("discarded", `${asked} to ${target}: inside ${why.join(" and ")}`);
  }
  // Recorded first, so the save that records the launch or drains records the run too.
  const run = record("executed", `${asked} to ${target}`, true);
  const reply = changeTo(t, target, all, `policy ${name} (${trigger.via}): ${asked} to ${target}`);
  if (!reply?.ok) return finish("refused", `${asked} to ${target}: ${reply ? reply.error : "nothing to do"}`);
  noteRun(t, "policies", name, run);
  return { ok: true, value: { policy: name, outcome: "executed", result: run.result, ...(reply.value as object) } };
}

function executePolicy(t: Transition, name: string, trigger: PolicyTrigger, all: readonly NodeObservation[]): StepResult {
  return t.result(runPolicy(t, name, trigger, all));
}

/** Each tick: every schedule whose run time has come (see `scheduleDue`). */
function runSchedules(t: Transition, all: readonly NodeObservation[]) {
  for (const rule of t.base.schedules ?? []) {
    // A tick comes once per [master] interval: a run time up to two of them old is on time.
    const due = scheduleDue(rule, t.durable.schedules?.[rule.name]?.slot, t.now, Math.max(ON_TIME_MS, 2 * t.policy.sampleIntervalMs));
    if (due.kind === "none") continue;
    const via = `schedule ${rule.name}`;
    const record = (outcome: RunOutcome, result: string) => {
      const run: RunRecord = { at: t.now, via, outcome, result: result.slice(0, 1024) };
      t.setDurable({ schedules: { ...t.durable.schedules, [rule.name]: { slot: due.slot, last: run } } });
      return run;
    };
    const at = new Date(due.slot).toISOString();
    let run: RunRecord;
    if (due.kind === "missed") {
      run = record(
        "skipped",
        `the run of ${at} is ${seconds(due.lateMs)} s past (the master was not running then, or the schedule is new): beyond grace (${seconds(rule.graceMs)} s), so it is not run late`,
      );
    } else if (t.durable.paused) {
      run = record("refused", `the run of ${at}: automatic scaling is paused`);
    } else {
      // The run time is recorded before the action, in the same save as any launch it starts: never run twice.
      record("executed", `the run of ${at}: ${describeScheduleAction(rule.action)}`);
      const reply = scheduleAction(t, rule, all);
      const text = reply.ok ? ((reply.value as { result?: string; reason?: string }).result ?? (reply.value as { reason?: string }).reason ?? "") : reply.error;
      run = record(reply.ok ? "executed" : "refused", `the run of ${at}: ${describeScheduleAction(rule.action)}${text ? `; ${text}` : ""}`);
    }
    noteRun(t, "schedules", rule.name, run);
    t.emit({ kind: "save" });
  }
}

/** A schedule's action: run its policy, or set limits (durable, over the ini's) and then the desired count. */
function scheduleAction(t: Transition, rule: ScheduleRule, all: readonly NodeObservation[]): Reply {
  const a = rule.action;
  if (a.kind === "policy") return runPolicy(t, a.policy, { via: `schedule ${rule.name}`, manual: false }, all);
  const minNodes = a.minNodes ?? t.policy.minNodes;
  const maxNodes = a.maxNodes ?? t.policy.maxNodes;
  if (minNodes > maxNodes) return { ok: false, error: `min_nodes ${minNodes} would be above max_nodes ${maxNodes}; limits unchanged` };
  const parts: string[] = [];
  if (a.minNodes !== undefined || a.maxNodes !== undefined) {
    const previous = t.durable.limits;
    t.setDurable({
      limits: {
        ...(a.minNodes !== undefined ? { minNodes: a.minNodes } : previous?.minNodes !== undefined ? { minNodes: previous.minNodes } : {}),
        ...(a.maxNodes !== undefined ? { maxNodes: a.maxNodes } : previous?.maxNodes !== undefined ? { maxNodes: previous.maxNodes } : {}),
        by: `schedule ${rule.name}`,
        at: t.now,
      },
    });
    parts.push(`limits now min_nodes ${t.policy.minNodes}, max_nodes ${t.policy.maxNodes}`);
  }
  if (a.desired !== undefined) {
    const { target, clamped } = clampToLimits(a.desired, t.policy.minNodes, t.policy.maxNodes);
    const reply = changeTo(t, target, all, `schedule ${rule.name}: desired ${a.desired}${clamped ? ` (${clamped})` : ""}`);
    if (reply && !reply.ok) return { ok: false, error: [...parts, reply.error].join("; ") };
    parts.push(reply ? String((reply.value as { reason: string }).reason) : `desired ${target}: already there`);
  }
  return { ok: true, value: { result: parts.join("; ") } };
}

/** Store a webhook (its secret's SHA-256 only) for a named policy. */
function addWebhook(t: Transition, e: Extract<ScalerEvent, { type: "webhook_add" }>): StepResult {
  if (!(t.policy.policies ?? []).some((p) => p.name === e.policy)) return t.result({ ok: false, error: `unknown policy ${JSON.stringify(e.policy)}` });
  const hooks = t.durable.webhooks ?? [];
  if (hooks.some((h) => h.name === e.name)) return t.result({ ok: false, error: `a webhook named ${e.name} exists; remove it first or choose another --name` });
  if (hooks.length >= 1000) return t.result({ ok: false, error: "1000 webhooks exist; remove some first" });
  t.setDurable({ webhooks: [...hooks, { name: e.name, policy: e.policy, sha256: e.sha256, createdAt: t.now }] });
  t.emit({ kind: "save" });
  t.log("webhook_added", `webhook ${e.name} added for policy ${e.policy}`, { webhook: e.name, policy: e.policy });
  return t.result({ ok: true, value: { name: e.name, policy: e.policy } });
}

function removeWebhook(t: Transition, name: string): StepResult {
  const hooks = t.durable.webhooks ?? [];
  const hook = hooks.find((h) => h.name === name);
  if (!hook) return t.result({ ok: false, error: `no webhook named ${JSON.stringify(name)}; see autoscaler webhook list` });
  t.setDurable({ webhooks: hooks.filter((h) => h !== hook) });
  t.emit({ kind: "save" });
  t.log("webhook_removed", `webhook ${name} (policy ${hook.policy}) removed`, { webhook: name, policy: hook.policy });
  return t.result({ ok: true, value: { name, policy: hook.policy } });
}

function setPaused(t: Transition, paused: boolean): StepResult {
  if (t.durable.paused === paused) return t.result({ ok: true, value: { paused } });
  // Resuming ends a teardown: nodes launched from now on stay.
  if (!paused && t.durable.teardown) {
    t.setDurable({ teardown: undefined });
    t.log("teardown_ended", "teardown ended by resume: automatic scaling is on again and launched nodes stay");
  }
  t.setDurable({ paused });
  t.emit({ kind: "save" });
  t.log(paused ? "paused" : "resumed", paused ? "automatic scaling paused; manual scale-up and scale-down still work" : "automatic scaling resumed");
  return t.result({ ok: true, value: { paused } });
}

// ---- fleet operations: terminate one node, a node's own leave, teardown ---------------------

/** The node a name or an instance id names: by name first, then by its instance id (vouched for, or only its own word). */
export function findNode(all: readonly NodeObservation[], target: string): { node: NodeObservation; byId: boolean } | undefined {
  const byName = all.find((n) => n.name === target);
  if (byName) return { node: byName, byId: false };
  const byId = all.find((n) => n.instanceId === target) ?? all.find((n) => n.reportedInstanceId === target);
  return byId ? { node: byId, byId: true } : undefined;
}

/**
 * `autoscaler terminate`: one named node, drained (or at once with --no-drain), then terminated
 * through scale_down_command, recorded first like any scale-down. min_nodes holds unless
 * `force`; a hand-added host is refused. Naming the instance id is the operator's say-so for it.
 */
function terminateNode(t: Transition, e: Extract<ScalerEvent, { type: "terminate_node" }>, all: readonly NodeObservation[]): StepResult {
  if (!t.policy.scaleDownEnabled) return t.result({ ok: false, error: "no [machine] scale_down_command is set, so nodes cannot be terminated" });
  const found = findNode(all, e.target);
  if (!found) return t.result({ ok: false, error: `unknown node or instance id ${JSON.stringify(e.target)}; see autoscaler instances` });
  const { node, byId } = found;
  if (!node.removable)
    return t.result({
      ok: false,
      error: `${node.name} is a hand-added host: the autoscaler never terminates one; take it out with autoscaler remove-host ${node.name}`,
    });
  if (excludedNames(t.durable).has(node.name)) return t.result({ ok: false, error: `${node.name} is already being drained or terminated` });
  if (node.registering) return t.result({ ok: false, error: `${node.name} is still registering; try again in a moment` });
  const { nodes } = currentCount(t, all);
  if (!e.force && nodes.length - 1 < t.policy.minNodes)
    return t.result({
      ok: false,
      error: `cannot terminate ${node.name}: ${nodes.length} backend(s) is already at min_nodes (${t.policy.minNodes}); --force terminates it anyway (a replacement is then launched up to min_nodes)`,
    });
  const reason = `autoscaler terminate ${e.target}${e.drain ? "" : " --no-drain"}${e.force ? " --force" : ""}`;
  const operatorInstanceId = byId && node.instanceId === undefined ? e.target : undefined;
  const records = recordDrains(t, [node], reason, true, { ...(e.drain ? {} : { drainMs: 0 }), ...(operatorInstanceId ? { operatorInstanceId } : {}) });
  emitDrains(t, records);
  const r = records[0]!;
  return t.result({
    ok: true,
    value: {
      node: node.name,
      instance_id: r.instanceId || null,
      terminate: !terminateSkipped(r),
      drain_until: r.drainUntil,
      reason,
    },
  });
}

/**
 * A node asked to leave (`autoscaler leave`, or its leave_url): a scale-down of that node alone,
 * recorded, drained and terminated as any other; min_nodes does not keep it (the node wants to
 * go), and the next tick launches a replacement when min_nodes or the policy needs one.
 */
function nodeLeaves(t: Transition, name: string, all: readonly NodeObservation[]): StepResult {
  const node = all.find((n) => n.name === name);
  const refuse = (error: string) => {
    t.log("leave_refused", `${name} asked to leave, refused: ${error}`, { node: name }, "warn");
    return t.result({ ok: false, error });
  };
  if (excludedNames(t.durable).has(name)) return t.result({ ok: true, value: { node: name, already: true } });
  if (!node || node.registering) return refuse("it is not a backend of this master yet");
  if (!node.removable) return refuse("it is a hand-added host");
  if (!t.policy.scaleDownEnabled) return refuse("no [machine] scale_down_command is set, so nodes cannot be terminated");
  const records = recordDrains(t, [node], `${name} asked to leave`, false);
  emitDrains(t, records);
  return t.result({ ok: true, value: { node: name, drain: records[0]!.id } });
}

/** Nodes the autoscaler launched that are still serving (not being drained already). */
function launchedServing(t: Transition, all: readonly NodeObservation[]) {
  const leaving = excludedNames(t.durable);
  return all.filter((n) => n.launched && n.removable && !n.registering && !leaving.has(n.name));
}

/**
 * `autoscaler teardown`: pause (so nothing is launched back), record the teardown, and drain
 * every node the autoscaler launched; each is then terminated through the usual drain
 * lifecycle. While the teardown holds (until `resume`), each tick drains any launched node that
 * registers late (a launch still pending). Hand-added hosts and agents that registered on their
 * own stay. min_nodes does not hold.
 */
function startTeardown(t: Transition, all: readonly NodeObservation[]): StepResult {
  if (!t.policy.scaleDownEnabled) return t.result({ ok: false, error: "no [machine] scale_down_command is set, so nodes cannot be terminated" });
  const first = t.durable.teardown === undefined;
  if (first) {
    t.setDurable({ paused: true, teardown: { at: t.now } });
    t.log("teardown", "teardown: automatic scaling paused; every node the autoscaler launched is drained and terminated");
  }
  const chosen = launchedServing(t, all);
  if (chosen.length > 0) emitDrains(t, recordDrains(t, chosen, "teardown", true));
  else if (first) t.emit({ kind: "save" });
  return t.result({ ok: true, value: { draining: chosen.map((n) => n.name), since: t.durable.teardown!.at } });
}

/** Each tick during a teardown: drain launched nodes that came since (not while a terminate backs off). */
function continueTeardown(t: Transition, all: readonly NodeObservation[]) {
  if (!t.durable.teardown) return;
  const backoff = t.durable.backoff.down;
  if (backoff && t.now < backoff.until) return;
  const chosen = launchedServing(t, all);
  if (chosen.length > 0) emitDrains(t, recordDrains(t, chosen, "teardown (a launched node that registered or came back since)", true));
}
