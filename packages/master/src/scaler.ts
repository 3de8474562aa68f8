/**
 * The scaler's runner (SPEC behaviour 2–6 and 9): it feeds the state machine (machine.ts)
 * its events — a tick every `[master] interval`, command results, registrations, the
 * operator's commands — one at a time, and performs the effects it returns: save first, then
 * act. A decision whose save fails is dropped (the old state stays) and nothing runs. Clock
 * and timer are injected, so tests drive it on a fake clock.
 */
import { promises as fs } from "node:fs";
import {
  describeExit,
  launchCredential,
  renderServerLine,
  sendCliCommand,
  type CommandRunner,
  type Config,
  type HostEntry,
  type Logger,
} from "@autoscaler/shared";
import type { HelloMessage } from "@autoscaler/shared/protocol";
import { commandEnvironment, parseRunInstancesOutput, runInstancesOutputWarning, summariseOutput } from "./actuator.js";
import { createDemandStore, type DemandStore } from "./demand-store.js";
import type { NodeObservation } from "./decide.js";
import type { EventLog } from "./events.js";
import {
  admitHello,
  effectivePending,
  effectivePolicy,
  excludedNames,
  initialState,
  isOpenDrain,
  isOpenLaunch,
  launchVouches,
  pendingCount,
  removedByDrains,
  step,
  type ActionCounters,
  type LaunchClaim,
  type Effect,
  type PolicyTrigger,
  type RunCounts,
  type ScalerEvent,
  type ScalerState,
} from "./machine.js";
import { describeAction, describeScheduleAction } from "./policies.js";
import { policyFromConfig } from "./policy.js";
import type { Registry } from "./registry.js";
import { isActive } from "./serving.js";
import { findWebhook, hashSecret, newWebhookSecret } from "./webhooks.js";
import type { Role } from "./role.js";
import { emptyState, type DurableState, type StateStore } from "./state-store.js";

export { failureBackoffMs } from "./machine.js";
export { policyFromConfig } from "./policy.js";

/** Runs `fn` every `ms`; returns the function that stops it. */
export type Every = (ms: number, fn: () => void) => () => void;
const realEvery: Every = (ms, fn) => {
  const timer = setInterval(fn, ms);
  return () => clearInterval(timer);
};

/** What the scaler needs from the master. */
export interface ScalerDeps {
  config: Config;
  /**
   * Without etcd, the role from the config: a decider leads from the start with `store`
   * (state.json). With etcd (`shared`), the master calls `lead` on each term it wins and
   * `follow` when it ends; until then the scaler only follows.
   */
  role: Role;
  store: StateStore;
  /** With etcd: the shared state lives there; a follower keeps a copy (`observe`). */
  shared?: boolean;
  /** With etcd: whether this master's lease is surely alive now (checked before every decision). */
  mayAct?: () => boolean;
  /** With etcd: the master that leads, for a follower's refusals. */
  leaderName?: () => string | undefined;
  registry: Registry;
  events: EventLog;
  logger: Logger;
  runner: CommandRunner;
  now: () => number;
  /** The decision timer (default: setInterval). */
  every?: Every;
  /** The backends in hosts.d, as the master holds them in memory. */
  hosts: () => readonly HostEntry[];
  /** Render and apply HAProxy now (debounced) and wait until it is done. */
  applyNow: (reason: string) => Promise<void>;
  /** Remove a backend's hosts.d entry (the master then applies). */
  removeHost: (name: string) => Promise<void>;
  /** The launch whose join credential a node registered with on this proxy, if any (names.json). */
  launchOf?: (name: string) => string | undefined;
  /** Record in hosts.d that a launch's own output gives `name` this instance id (instance_id_from = launch). */
  vouch: (name: string, instanceId: string) => Promise<void>;
}

/** The capacity figures status shows. */
export interface Capacity {
  /** Backends that serve (serving.ts): nodes whose agent reports, and hand-added backends; not leaving ones. */
  active: number;
  /** Nodes launched that have not registered yet. */
  pending: number;
  /** Nodes being drained or terminated. */
  leaving: number;
  /** What the cluster is heading for: every backend not leaving, plus pending launches. */
  desired: number;
  min: number;
  max: number;
}

/** One named policy in status and `autoscaler policies`. */
export interface PolicyStatus {
  name: string;
  /** `+2`, `-1`, `+50%`, `=4`. */
  action: string;
  cooldown_seconds: number;
  /** What is left of the policy's own cooldown (the group's is in `cooldown`). */
  cooldown_left_seconds: number;
  last_run_at: string | null;
  last_via: string | null;
  last_outcome: string | null;
  last_result: string | null;
  /** Runs since this master started, by outcome. */
  runs: RunCounts;
}

/** One schedule in status and `autoscaler schedules`. */
export interface ScheduleStatus {
  name: string;
  cron: string;
  timezone: string;
  action: string;
  grace_seconds: number;
  next_run_at: string | null;
  last_run_at: string | null;
  last_outcome: string | null;
  last_result: string | null;
  runs: RunCounts;
}

/** The scaler's part of status. */
export interface ScalerStatus {
  capacity: Capacity;
  paused: boolean;
  cooldown: { scale_up_seconds: number; scale_down_seconds: number };
  last_decision: { at: string; action: string; reason: string } | null;
  /** Counts since this master started. */
  actions: ActionCounters;
  launches: {
    id: string;
    status: string;
    count: number;
    nodes: string[];
    instances: string[];
    /** What the launch command printed: each instance with its private address (null when it printed none). */
    expected: { instance_id: string; private_address: string | null }[];
    decided_at: string;
    finished_at: string | null;
    manual: boolean;
    reason: string;
    note: string | null;
    error: string | null;
  }[];
  drains: {
    id: string;
    node: string;
    instance_id: string;
    status: string;
    decided_at: string;
    drain_until: string;
    finished_at: string | null;
    manual: boolean;
    reason: string;
    note: string | null;
    error: string | null;
  }[];
  policies: PolicyStatus[];
  schedules: ScheduleStatus[];
  /** Names and policies only: a webhook's secret is shown once, when it is made, and never stored. */
  webhooks: { name: string; policy: string; created_at: string }[];
  /** min_nodes / max_nodes in force: the ini's, or a schedule's (durable) when `set_by` says so. */
  limits: { min_nodes: number; max_nodes: number; set_by: string | null; set_at: string | null };
  /** Since when `autoscaler teardown` holds (until resume); null when none. */
  teardown: { since: string } | null;
  /** Each node a launch claimed, with that launch's id (every launch state.json keeps). */
  launched_by: Record<string, string>;
}

/** What a webhook call found: the hook (by name) and whether this master may run it. */
export type WebhookLookup = { found: false } | { found: true; name: string; policy: string };

/** A running scaler. */
export interface Scaler {
  /** Run one decision tick now (the timer calls it every `[master] interval`). */
  tick(): Promise<void>;
  /**
   * Take over (etcd term won): load the state from `store`, reconcile what a previous leader
   * left in flight exactly as a restart does, and start deciding. Throws when the state cannot be read.
   */
  lead(store: StateStore, demand?: DemandStore): Promise<void>;
  /** Stop deciding now (etcd term lost): commands this term started are killed, their outcomes dropped. */
  follow(reason: string): void;
  /**
   * A follower's copy of the shared state (the leader's view): whether the nodes it leaves out of
   * HAProxy changed, and the backends the leader's finished scale-downs removed (the master
   * removes them from this proxy's hosts.d too).
   */
  observe(durable: DurableState): { excludedChanged: boolean; removed: string[]; vouched: { node: string; instanceId: string }[] };
  /** Whether this master decides now. */
  leading(): boolean;
  /**
   * Called when a node registers that hosts.d did not have: claims a pending launch (the one its
   * join credential names, else by its printed instances; "any new node" only with the cluster
   * secret, or with a node credential for a name this master never saw, which a compromised node
   * does not have) and says whether it did, with the instance id the launch's own output gives it.
   */
  claimLaunch(hello: HelloMessage, proof: { launchId?: string | undefined; anyLaunch: boolean }): Promise<LaunchClaim>;
  /** Launches still waiting for nodes (0 on a follower). */
  pending(): number;
  /**
   * Whether a hello may register: a message when it comes from a node this master terminated
   * (or is terminating) within forget_after, so a node shutting down is not put back in service.
   */
  admit(hello: HelloMessage): string | undefined;
  /** Names that must be left out of haproxy.cfg: every node being drained or terminated. */
  excluded(): ReadonlySet<string>;
  scaleUp(count: number | undefined, percent?: number): Promise<{ launched: number; reason: string }>;
  scaleDown(count: number | undefined, percent?: number): Promise<{ draining: string[]; reason: string }>;
  /** Run a named policy now (by hand, a webhook or, inside the machine, a schedule). */
  executePolicy(name: string, trigger: PolicyTrigger): Promise<unknown>;
  /** Move the count to `desired` within min/max (no cooldown). */
  setCapacity(desired: number): Promise<unknown>;
  /** Make a webhook for a policy: its URL path's secret is returned once and only its hash is kept. */
  addWebhook(policy: string, name: string | undefined): Promise<{ name: string; policy: string; secret: string }>;
  removeWebhook(name: string): Promise<{ name: string; policy: string }>;
  /** The stored webhook whose secret this is (constant time over all of them). */
  findWebhook(secret: string): WebhookLookup;
  setPaused(paused: boolean): Promise<{ paused: boolean }>;
  /** `autoscaler terminate`: drain (unless `drain` is false) and terminate one node, named or by instance id. */
  terminate(target: string, drain: boolean, force: boolean): Promise<unknown>;
  /** A node asked to leave on its own connection; ignored on a follower (the leader hears it too). */
  leave(name: string): Promise<unknown>;
  /** `autoscaler teardown`: pause, then drain and terminate every node the autoscaler launched. */
  teardown(): Promise<unknown>;
  status(): ScalerStatus;
  /** Wait for commands in flight (used by tests and on stop). */
  idle(): Promise<void>;
  /** Swap in a reloaded config (SIGHUP): policy, commands, timeouts, AWS values, runtime socket and tick apply from now on. */
  reconfigure(next: Config): void;
  stop(): void;
}

/** How often a refusal to act without a record (a state_dir that cannot be written) is logged again while it repeats. */
const NOT_RECORDED_REPEAT_MS = 60_000;
const iso = (t: number) => new Date(t).toISOString();
/** Effects that act on the world: a failed save before one of them means it must not happen. */
const ACTIONS = new Set<Effect["kind"]>(["launch", "drain", "terminate"]);

/**
 * Load the durable state, reconcile what a previous run left in flight, and start ticking.
 * Throws (and the master refuses to start) when state.json cannot be read.
 */
export async function startScaler(deps: ScalerDeps): Promise<Scaler> {
  const { registry, events, logger, runner, now } = deps;
  /** `aws ec2 run-instances` printing something other than JSON is said once per master run. */
  let warnedOutputFormat = false;
  const every = deps.every ?? realEvery;
  // `let`: a SIGHUP swaps in a reloaded config (see `reconfigure`); everything reads these at use.
  let config = deps.config;
  let policy = policyFromConfig(config);
  /** Every server_line in use since start: a node's line in the live file may still have an older one. */
  const serverLineFormats = new Set([config.haproxy.server_line]);
  /** Where the predictive floor's history is kept: state_dir, or (with etcd) the shared copy of this term. */
  let demandStore: DemandStore = createDemandStore(config.master.state_dir);
  /** Where decisions are recorded: state.json, or (with etcd) the shared state fenced on this term. */
  let store = deps.store;
  // With etcd the state is read when a term is won; without, now (a follower only warns about it).
  let state: ScalerState = initialState(deps.shared ? emptyState() : await store.load());
  /** Whether this master decides: from the start for a decider without etcd, per term with it. */
  let leading = false;
  /** One object per term: an outcome that arrives after the term ended is dropped. */
  let term: { readonly abort: AbortController } = { abort: new AbortController() };
  const mayAct = () => leading && (deps.mayAct?.() ?? true);
  const inFlight = new Set<Promise<unknown>>();
  let stopped = false;

  const track = (p: Promise<unknown>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
  };

  // Events run one at a time, in order: each sees the state the previous one left.
  let queue: Promise<unknown> = Promise.resolve();
  const dispatch = (event: ScalerEvent): Promise<{ ok: true; value: unknown } | { ok: false; error: string } | undefined> => {
    const run = queue.then(() => apply(event));
    queue = run.catch(() => undefined);
    return run;
  };

  const apply = async (event: ScalerEvent) => {
    if (leading && !mayAct())
      return { ok: false as const, error: "this master's leadership is not confirmed (its etcd lease may be ending), so it does not act" };
    const before = state;
    const result = step(state, event, policy, now());
    state = result.state;
    for (const [i, effect] of result.effects.entries()) {
      if (effect.kind !== "save") {
        await perform(effect);
        continue;
      }
      const failure = await save();
      if (failure === undefined) continue;
      const rest = result.effects.slice(i + 1);
      const action = rest.find((e) => ACTIONS.has(e.kind));
      if (action || result.reply) {
        // Nothing runs without a record: the decision is dropped, the old state stays.
        // What was seen (the decision, recommendations) stays; what was decided does not.
        const seen = {
          lastDecision: state.lastDecision,
          recommendations: state.recommendations,
          recommendingSince: state.recommendingSince,
          demand: state.demand,
        };
        state = { ...before, ...seen, counters: { ...before.counters, not_recorded: before.counters.not_recorded + 1 } };
        reportNotRecorded(refusalSubject(action), failure);
        const what = action?.kind === "launch" ? "the launch" : action?.kind === "drain" ? "the scale-down" : "the change";
        return { ok: false as const, error: `${what} could not be recorded in state_dir, so nothing was run: ${failure} (${store.file})` };
      }
      logger.error("cannot record an outcome in state_dir; it is kept in memory and saved with the next change", { file: store.file, error: failure });
    }
    return result.reply;
  };

  const save = async (): Promise<string | undefined> => {
    try {
      await store.save(state.durable);
    } catch (err) {
      return (err as Error).message;
    }
    if (refusals.streak > 0) {
      event("recorded", `decisions are recorded in ${store.file} again (${refusals.streak} refused while it could not be written)`, {
        refused: refusals.streak,
      });
      refusals.streak = 0;
      refusals.last = "";
    }
    return undefined;
  };

  const refusalSubject = (action: Effect | undefined) =>
    action?.kind === "launch"
      ? `not launching ${action.count} node(s)`
      : action?.kind === "drain"
        ? `not scaling down ${action.node}`
        : action?.kind === "terminate"
          ? `not terminating ${action.node}`
          : "not acting";

  /**
   * A state_dir that stays unwritable (a full disk) would refuse a decision every tick, so a
   * refusal like the last one is logged again only once a minute, with how many there were.
   */
  const refusals = { streak: 0, since: 0, reportedAt: 0, last: "" };
  const reportNotRecorded = (what: string, error: string) => {
    const at = now();
    if (refusals.streak === 0) refusals.since = at;
    refusals.streak++;
    const message = `${what}: the decision could not be recorded in ${store.file} (${error}); nothing runs without a record`;
    if (refusals.streak === 1 || message !== refusals.last || at - refusals.reportedAt >= NOT_RECORDED_REPEAT_MS) {
      const repeated = refusals.streak > 1 ? ` (${refusals.streak} decisions refused since ${iso(refusals.since)})` : "";
      event("not_recorded", message + repeated, { refused: refusals.streak }, "error");
      refusals.reportedAt = at;
      refusals.last = message;
    } else {
      logger.debug(message, { event: "not_recorded", refused: refusals.streak });
    }
  };

  const event = (kind: string, message: string, fields: Record<string, unknown> = {}, level: "info" | "warn" | "error" = "info") => {
    events.add(kind, message);
    logger[level](message, { event: kind, ...fields });
  };

  // ---- effects -----------------------------------------------------------------------------

  /**
   * Run an operator command in the ini's folder with `env`; a spawn failure is a failed result,
   * never a throw. It is killed when this term ends (a deposed leader runs no command on).
   */
  const runCommand = (command: string, env: Record<string, string>) =>
    runner
      .run(command, { env, cwd: config.dir, timeoutMs: config.machine.command_timeout * 1000, signal: term.abort.signal })
      .catch((err: Error) => ({ code: null, signal: null, stdout: "", stderr: err.message, timedOut: false, durationMs: 0 }));

  const runtimeCommand = async (command: string): Promise<string | undefined> => {
    const socket = config.haproxy.runtime_socket;
    if (!socket) return "no runtime_socket";
    try {
      const answer = (await sendCliCommand(socket, command)).trim();
      return answer === "" ? undefined : answer;
    } catch (err) {
      return (err as Error).message;
    }
  };
  const serverRef = (name: string) => `${config.haproxy.backend}/${name}`;

  /** True when the live haproxy.cfg no longer has this node's server line. */
  const outOfConfig = async (name: string): Promise<boolean> => {
    const entry = deps.hosts().find((h) => h.name === name);
    if (!entry) return true;
    const text = await fs.readFile(config.haproxy.config, "utf8").catch(() => "");
    return ![...serverLineFormats].some((format) => text.includes(renderServerLine(format, entry).trim()));
  };

  /** Dispatch for an effect's outcome: dropped (and said) when the term that started it has ended. */
  const inTerm = () => {
    const mine = term;
    return async (event: ScalerEvent) => {
      if (mine !== term) {
        logger.warn("an outcome arrived after this master stopped leading; the leader counts it as interrupted", {
          event: "outcome_dropped",
          outcome: event.type,
        });
        return undefined;
      }
      return dispatch(event);
    };
  };

  const perform = async (effect: Effect): Promise<void> => {
    switch (effect.kind) {
      case "log":
        if (effect.event) events.add(effect.event, effect.message);
        logger[effect.level](effect.message, effect.event ? { event: effect.event, ...effect.fields } : { ...effect.fields });
        return;
      case "remove_host":
        // The entry goes before the record says done; a failure here is put right by forget_after.
        await deps.removeHost(effect.node).catch((err: Error) => logger.error("cannot remove hosts.d entry", { node: effect.node, error: err.message }));
        registry.forget(effect.node);
        return;
      case "vouch":
        await deps
          .vouch(effect.node, effect.instanceId)
          .catch((err: Error) => logger.error("cannot record the launch's instance id in hosts.d", { node: effect.node, error: err.message }));
        return;
      case "save_demand":
        if (state.demand) void demandStore.save(state.demand).catch((err: Error) => logger.warn("cannot record demand history", { error: err.message }));
        return;
      case "launch":
        track(
          (async () => {
            const dispatch = inTerm();
            // The nodes of this launch register with its join credential (AUTOSCALER_JOIN_CREDENTIAL), good for its count until launch_timeout.
            const joinCredential = config.master.token
              ? launchCredential(config.master.token, { launchId: effect.id, count: effect.count, expiresAt: now() + config.machine.launch_timeout * 1000 })
              : undefined;
            const env = commandEnvironment(config, { kind: "scale_up", count: effect.count, joinCredential });
            const result = await runCommand(config.machine.scale_up_command, env);
            const output = summariseOutput(result.stdout, result.stderr, joinCredential ? [...config.secrets, joinCredential] : config.secrets);
            const ok = result.code === 0;
            const instances = ok ? parseRunInstancesOutput(result.stdout) : [];
            const notJson = ok && !warnedOutputFormat ? runInstancesOutputWarning(config.machine.scale_up_command, result.stdout, instances) : undefined;
            if (notJson) {
              warnedOutputFormat = true;
              logger.warn(notJson, { event: "run_instances_not_json", launch: effect.id });
              events.add("run_instances_not_json", notJson);
            }
            const detail = ok ? `in ${Math.round(result.durationMs)} ms` : `${describeExit(result)}${output ? `: ${output}` : ""}`;
            await dispatch({ type: "launch_finished", id: effect.id, ok, instances, detail });
          })(),
        );
        return;
      case "drain":
        track(
          (async () => {
            const problem = await runtimeCommand(`set server ${serverRef(effect.node)} state drain`);
            if (problem === undefined) {
              logger.info("node drained through the runtime socket", { node: effect.node, socket: config.haproxy.runtime_socket });
              return;
            }
            if (config.haproxy.runtime_socket)
              logger.warn("runtime socket drain failed; taking the node out of the config instead", { node: effect.node, problem });
            await deps.applyNow(`drain ${effect.node}`);
          })().catch((err: Error) => logger.error("drain failed", { node: effect.node, error: err.message })),
        );
        return;
      case "remove_from_config":
        track(
          (async () => {
            const dispatch = inTerm();
            // Out of the config first, confirmed on the live file, so no request goes to a node being terminated.
            await deps
              .applyNow(`terminate ${effect.node}`)
              .catch((err: Error) => logger.error("apply before terminate failed", { node: effect.node, error: err.message }));
            await dispatch({ type: "removed_from_config", id: effect.id, confirmed: await outOfConfig(effect.node) });
          })(),
        );
        return;
      case "terminate":
        track(
          (async () => {
            const dispatch = inTerm();
            const env = commandEnvironment(config, { kind: "scale_down", instanceId: effect.instanceId, nodeName: effect.node, nodeAddress: effect.address });
            const result = await runCommand(config.machine.scale_down_command, env);
            const output = summariseOutput(result.stdout, result.stderr, config.secrets);
            const ok = result.code === 0;
            await dispatch({ type: "terminate_finished", id: effect.id, ok, detail: ok ? output : `${describeExit(result)}${output ? `: ${output}` : ""}` });
          })(),
        );
        return;
      case "restore":
        track(
          (async () => {
            await runtimeCommand(`set server ${serverRef(effect.node)} state ready`);
            await deps.applyNow(`${effect.node} back in service`);
          })().catch((err: Error) => logger.error("putting a node back in service failed", { node: effect.node, error: err.message })),
        );
        return;
      case "save":
        return; // handled by apply()
    }
  };

  // ---- what the state machine sees ---------------------------------------------------------

  /**
   * One observation per backend in hosts.d and per registered agent. An agent whose entry is
   * not written yet is `registering`: it may be the node a pending launch is about to claim,
   * and the state machine does not count it twice (`effectivePending`).
   */
  const observations = (at: number): NodeObservation[] => {
    const hostMap = new Map(deps.hosts().map((h) => [h.name, h]));
    const names = new Set<string>([...hostMap.keys(), ...registry.list().map((r) => r.name)]);
    const out: NodeObservation[] = [];
    for (const name of names) {
      const record = registry.get(name);
      const entry = hostMap.get(name);
      const firstSeenAt = record?.firstSeenAt ?? at;
      const added = entry ? Date.parse(entry.addedAt) : NaN;
      const nodeState = record ? registry.stateOf(record, at) : undefined;
      out.push({
        name,
        live: nodeState === "live",
        unreachable: nodeState === "unreachable",
        firstSeenAt,
        addedAt: Number.isFinite(added) ? added : firstSeenAt,
        removable: entry !== undefined && entry.source !== "manual",
        readings: record?.readings ?? [],
        // Only a launch's output or an operator vouches for an id the terminate command may get.
        instanceId: entry?.instanceIdFrom ? entry.instanceId : undefined,
        reportedInstanceId: entry?.instanceIdFrom ? undefined : (entry?.instanceId ?? record?.instanceId),
        address: entry?.address ?? record?.address,
        ...(entry === undefined ? { registering: true } : {}),
        ...(entry?.source === "launched" ? { launched: true } : {}),
        ...(entry?.source === "manual" ? { manual: true } : {}),
      });
    }
    return out;
  };

  const capacity = (at: number): Capacity => {
    const leaving = excludedNames(state.durable);
    const nodes = observations(at).filter((n) => !leaving.has(n.name));
    const pending = effectivePending(state.durable, nodes);
    return {
      active: nodes.filter((n) => isActive(n.live, n.manual === true)).length,
      pending,
      leaving: leaving.size,
      desired: nodes.length + pending,
      min: effectivePolicy(policy, state.durable).minNodes,
      max: effectivePolicy(policy, state.durable).maxNodes,
    };
  };

  // ---- start -------------------------------------------------------------------------------

  /** Start deciding with `next` as the record: load it, then reconcile as a restart does. */
  const lead = (next: StateStore, demand?: DemandStore): Promise<void> => {
    const run = queue.then(async () => {
      follow(undefined);
      if (demand) demandStore = demand;
      const durable = await next.load();
      store = next;
      state = { ...initialState(durable, policy.predictive ? await demandStore.load(logger) : undefined), counters: state.counters };
      leading = true;
      await apply({ type: "start", hosts: deps.hosts().map((h) => ({ ...h, launch: deps.launchOf?.(h.name) })) });
    });
    queue = run.catch(() => undefined);
    return run;
  };
  /** Stop deciding: the term's commands are killed; their outcomes are dropped (the next leader reconciles). */
  const follow = (reason: string | undefined) => {
    const was = leading;
    leading = false;
    term.abort.abort();
    term = { abort: new AbortController() };
    if (was && reason) event("following", `stopped deciding: ${reason}`, {}, "warn");
  };

  if (deps.role === "decider" && !deps.shared) await lead(store);
  else if (!deps.shared && (state.durable.launches.some(isOpenLaunch) || state.durable.drains.some(isOpenDrain))) {
    logger.warn("state.json holds launches or drains in progress, but this master is a follower and will not act on them", { file: store.file });
  }

  let ticking = false;
  const tick = async () => {
    if (!leading || stopped || ticking) return;
    ticking = true;
    try {
      await dispatch({ type: "tick", nodes: observations(now()) });
    } catch (err) {
      logger.error("decision tick failed", { error: (err as Error).message });
    } finally {
      ticking = false;
    }
  };
  const tickEvery = () => Math.max(100, config.master.interval * 1000);
  let stopTimer = every(tickEvery(), () => void tick());

  const requireDecider = (what: string) => {
    if (leading) return;
    if (deps.shared) {
      const leader = deps.leaderName?.();
      throw new Error(
        `this master is a follower (only the leader runs ${what}); ${leader ? `${leader} leads now: run it there` : "no master leads now (is etcd reachable?)"}`,
      );
    }
    throw new Error(
      `this master is a follower (only the decider runs ${what}); run it on the first proxy of [haproxy] servers, or set [master] role = decider there`,
    );
  };
  /** An operator's command: its reply, or its refusal as an error. */
  const command = async <T>(event: ScalerEvent): Promise<T> => {
    const reply = await dispatch(event);
    if (!reply) throw new Error("no answer from the scaler");
    if (!reply.ok) throw new Error(reply.error);
    return reply.value as T;
  };

  return {
    tick,
    lead,
    follow,
    leading: () => leading,
    observe(durable) {
      if (leading) return { excludedChanged: false, removed: [], vouched: [] };
      const before = [...excludedNames(state.durable)].sort().join(",");
      state = { ...state, durable };
      const hosts = deps.hosts();
      return {
        excludedChanged: [...excludedNames(durable)].sort().join(",") !== before,
        removed: removedByDrains(durable, hosts, policy),
        vouched: launchVouches(durable, hosts),
      };
    },
    async claimLaunch(hello, proof) {
      if (!leading) return { claimed: false };
      return command<LaunchClaim>({
        type: "node_registered",
        hello: { name: hello.name, address: hello.address, instanceId: hello.instance_id, launchId: proof.launchId, anyLaunch: proof.anyLaunch },
      });
    },
    pending: () => (leading || deps.shared ? pendingCount(state.durable) : 0),
    admit: (hello) =>
      leading || deps.shared ? admitHello(state, { name: hello.name, address: hello.address, instanceId: hello.instance_id }, policy, now()) : undefined,
    excluded: () => excludedNames(state.durable),
    async scaleUp(count, percent) {
      requireDecider("scale commands");
      return command({ type: "scale_up", count, percent, nodes: observations(now()) });
    },
    async scaleDown(count, percent) {
      requireDecider("scale commands");
      return command({ type: "scale_down", count, percent, nodes: observations(now()) });
    },
    async executePolicy(name, trigger) {
      requireDecider("policies");
      return command({ type: "execute_policy", name, trigger, nodes: observations(now()) });
    },
    async setCapacity(desired) {
      requireDecider("scale commands");
      return command({ type: "set_capacity", desired, nodes: observations(now()) });
    },
    async addWebhook(policyName, name) {
      requireDecider("webhook changes");
      const taken = new Set((state.durable.webhooks ?? []).map((h) => h.name));
      let chosen = name;
      for (let i = 1; chosen === undefined; i++) if (!taken.has(`${policyName}-${i}`)) chosen = `${policyName}-${i}`;
      const secret = newWebhookSecret();
      const added = await command<{ name: string; policy: string }>({ type: "webhook_add", name: chosen, policy: policyName, sha256: hashSecret(secret) });
      return { ...added, secret };
    },
    async removeWebhook(name) {
      requireDecider("webhook changes");
      return command({ type: "webhook_remove", name });
    },
    findWebhook(secret) {
      const hook = findWebhook(state.durable.webhooks ?? [], secret);
      return hook ? { found: true, name: hook.name, policy: hook.policy } : { found: false };
    },
    async setPaused(paused) {
      if (deps.shared) requireDecider(paused ? "pause" : "resume");
      return command({ type: paused ? "pause" : "resume" });
    },
    async terminate(target, drain, force) {
      requireDecider("scale commands");
      return command({ type: "terminate_node", target, drain, force, nodes: observations(now()) });
    },
    async leave(name) {
      if (!leading) return { ignored: "this master does not decide; the deciding master acts on the node's leave" };
      return command({ type: "node_leave", node: name, nodes: observations(now()) });
    },
    async teardown() {
      requireDecider("teardown");
      return command({ type: "teardown", nodes: observations(now()) });
    },
    status() {
      const at = now();
      const d = state.durable;
      const left = (last: number | undefined, ms: number) => (last === undefined ? 0 : Math.max(0, Math.ceil((ms - (at - last)) / 1000)));
      const limits = effectivePolicy(policy, d);
      const last = state.lastDecision;
      return {
        capacity: capacity(at),
        paused: d.paused,
        cooldown: { scale_up_seconds: left(d.lastScaleUpAt, policy.upCooldownMs), scale_down_seconds: left(d.lastScaleDownAt, policy.downCooldownMs) },
        last_decision: last ? { at: iso(last.at), action: last.decision.action, reason: last.decision.reason } : null,
        actions: { ...state.counters },
        // The last ten, and every open one however old.
        launches: d.launches
          .filter((l, i) => isOpenLaunch(l) || i >= d.launches.length - 10)
          .map((l) => ({
            id: l.id,
            status: l.status,
            count: l.count,
            nodes: [...l.nodes],
            instances: l.instances.map((i) => i.instanceId),
            expected: l.instances.map((i) => ({ instance_id: i.instanceId, private_address: i.privateAddress ?? null })),
            decided_at: iso(l.decidedAt),
            finished_at: l.finishedAt === undefined ? null : iso(l.finishedAt),
            manual: l.manual,
            reason: l.reason,
            note: l.note ?? null,
            error: l.error ?? null,
          })),
        drains: d.drains
          .filter((x, i) => isOpenDrain(x) || i >= d.drains.length - 10)
          .map((x) => ({
            id: x.id,
            node: x.node,
            instance_id: x.instanceId,
            status: x.status,
            decided_at: iso(x.decidedAt),
            drain_until: iso(x.drainUntil),
            finished_at: x.finishedAt === undefined ? null : iso(x.finishedAt),
            manual: x.manual,
            reason: x.reason,
            note: x.note ?? null,
            error: x.error ?? null,
          })),
        policies: (policy.policies ?? []).map((p) => {
          const run = d.policies?.[p.name];
          return {
            name: p.name,
            action: describeAction(p.action),
            cooldown_seconds: p.cooldownMs / 1000,
            cooldown_left_seconds: left(run?.lastChangeAt, p.cooldownMs),
            last_run_at: run ? iso(run.last.at) : null,
            last_via: run?.last.via ?? null,
            last_outcome: run?.last.outcome ?? null,
            last_result: run?.last.result ?? null,
            runs: state.runs.policies[p.name] ?? {},
          };
        }),
        schedules: (policy.schedules ?? []).map((x) => {
          const run = d.schedules?.[x.name];
          const next = x.runs.next(at);
          return {
            name: x.name,
            cron: x.cron,
            timezone: x.timezone || "UTC",
            action: describeScheduleAction(x.action),
            grace_seconds: x.graceMs / 1000,
            next_run_at: next === undefined ? null : iso(next),
            last_run_at: run ? iso(run.last.at) : null,
            last_outcome: run?.last.outcome ?? null,
            last_result: run?.last.result ?? null,
            runs: state.runs.schedules[x.name] ?? {},
          };
        }),
        webhooks: (d.webhooks ?? []).map((h) => ({ name: h.name, policy: h.policy, created_at: iso(h.createdAt) })),
        limits: {
          min_nodes: limits.minNodes,
          max_nodes: limits.maxNodes,
          set_by: d.limits?.by ?? null,
          set_at: d.limits ? iso(d.limits.at) : null,
        },
        teardown: d.teardown ? { since: iso(d.teardown.at) } : null,
        launched_by: Object.fromEntries(d.launches.flatMap((l) => l.nodes.map((n) => [n, l.id] as const))),
      };
    },
    async idle() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      await queue;
    },
    reconfigure(next) {
      const interval = tickEvery();
      config = next;
      policy = policyFromConfig(next);
      serverLineFormats.add(next.haproxy.server_line);
      if (tickEvery() !== interval && !stopped) {
        stopTimer();
        stopTimer = every(tickEvery(), () => void tick());
      }
    },
    stop() {
      stopped = true;
      stopTimer();
    },
  };
}
