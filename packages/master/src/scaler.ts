/**
 * The scaler (SPEC behaviour 2–6 and 9): each tick it builds the decision's inputs, asks
 * `decide()`, and acts through the operator's commands. Every action that leads to a command
 * is saved to state_dir before the command starts, so a master killed at any moment and
 * started again neither repeats nor forgets it.
 *
 *   launch:  running (saved, command starts) ──ok──► pending ──nodes registered──► done
 *                 │                                    └──launch_timeout──► failed
 *                 └──command failed──► failed (backoff before the next automatic launch)
 *
 *   drain:   draining (saved; runtime socket `drain`, or out of the config) ──drain_seconds──►
 *            terminating (out of the config, saved, command starts) ──ok──► done (entry removed)
 *                                                                   └──failed──► failed (back in service)
 *
 * On start, a launch still `running` had its command interrupted: its outcome is unknown, so
 * it is kept as pending (never run again) until a node registers or launch_timeout passes. A
 * drain still `terminating` is never run again either: the entry is removed as if it had run.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { describeExit, renderServerLine, sendCliCommand, type CommandRunner, type Config, type HostEntry, type Logger } from "@autoscaler/shared";
import type { HelloMessage } from "@autoscaler/shared/protocol";
import { commandEnvironment, parseRunInstancesOutput, summariseOutput } from "./actuator.js";
import { capCount, decide, type Decision, type NodeObservation, type ScalingPolicy } from "./decide.js";
import type { EventLog } from "./events.js";
import type { Registry } from "./registry.js";
import type { Role } from "./role.js";
import type { DrainRecord, DurableState, LaunchRecord, StateStore } from "./state-store.js";

/** What the scaler needs from the master. */
export interface ScalerDeps {
  config: Config;
  role: Role;
  store: StateStore;
  registry: Registry;
  events: EventLog;
  logger: Logger;
  runner: CommandRunner;
  now: () => number;
  /** The backends in hosts.d, as the master holds them in memory. */
  hosts: () => readonly HostEntry[];
  /** Render and apply HAProxy now (debounced) and wait until it is done. */
  applyNow: (reason: string) => Promise<void>;
  /** Remove a backend's hosts.d entry (the master then applies). */
  removeHost: (name: string) => Promise<void>;
}

/** The capacity figures status shows. */
export interface Capacity {
  /** Live nodes (agents heard within node_timeout). */
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

/** The scaler's part of status. */
export interface ScalerStatus {
  capacity: Capacity;
  paused: boolean;
  cooldown: { scale_up_seconds: number; scale_down_seconds: number };
  last_decision: { at: string; action: string; reason: string } | null;
  /** Counts since this master started. */
  actions: { launches: number; launch_failures: number; launch_timeouts: number; terminations: number; terminate_failures: number; not_recorded: number };
  launches: { id: string; status: string; count: number; nodes: string[]; instances: string[]; decided_at: string; finished_at: string | null; manual: boolean; reason: string; note: string | null; error: string | null }[];
  drains: { id: string; node: string; instance_id: string; status: string; decided_at: string; drain_until: string; finished_at: string | null; manual: boolean; reason: string; note: string | null; error: string | null }[];
}

/** A running scaler. */
export interface Scaler {
  /** Run one decision tick now (the timer calls it every `[master] interval`). */
  tick(): Promise<void>;
  /** Called when a node registers that hosts.d did not have: claims a pending launch and says whether it did. */
  claimLaunch(hello: HelloMessage): Promise<boolean>;
  /**
   * Whether a hello may register: a message when it comes from a node this master terminated
   * (or is terminating) within forget_after, so a node shutting down is not put back in service.
   */
  admit(hello: HelloMessage): string | undefined;
  /** Names that must be left out of haproxy.cfg (nodes drained without a runtime socket, or about to be terminated). */
  excluded(): ReadonlySet<string>;
  /** HAProxy was reloaded: a new worker forgot runtime drains, so send them again. */
  afterReload(): void;
  scaleUp(count: number | undefined): Promise<{ launched: number; reason: string }>;
  scaleDown(count: number | undefined): Promise<{ draining: string[]; reason: string }>;
  setPaused(paused: boolean): Promise<{ paused: boolean }>;
  status(): ScalerStatus;
  /** Wait for commands in flight (used by tests and on stop). */
  idle(): Promise<void>;
  /** Swap in a reloaded config (SIGHUP): policy, commands, timeouts, AWS values, runtime socket and tick apply from now on. */
  reconfigure(next: Config): void;
  stop(): void;
}

/** Backoff after a failed command: 30 s, doubling, at most 10 minutes. */
export function failureBackoffMs(consecutiveFailures: number): number {
  if (consecutiveFailures <= 0) return 0;
  return Math.min(30_000 * 2 ** (consecutiveFailures - 1), 600_000);
}

const KEEP_FINISHED = 20;
/** How often a refusal to act without a record (a state_dir that cannot be written) is logged again while it repeats. */
const NOT_RECORDED_REPEAT_MS = 60_000;
const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
const iso = (t: number) => new Date(t).toISOString();
const isOpenLaunch = (l: LaunchRecord) => l.status === "running" || l.status === "pending";
const isOpenDrain = (d: DrainRecord) => d.status === "draining" || d.status === "terminating";
/** How many nodes a launch still waits for: the instances it printed, else the count asked for. */
const expected = (l: LaunchRecord) => (l.instances.length > 0 ? l.instances.length : l.count);
const waitingFor = (l: LaunchRecord) => (isOpenLaunch(l) ? Math.max(0, expected(l) - l.nodes.length) : 0);

/** Build the policy from the ini. */
export function policyFromConfig(config: Config): ScalingPolicy {
  const s = config.scaling;
  return {
    mode: s.mode,
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
  };
}

/**
 * Load the durable state, reconcile what a previous run left in flight, and start ticking.
 * Throws (and the master refuses to start) when state.json cannot be read.
 */
export async function startScaler(deps: ScalerDeps): Promise<Scaler> {
  const { store, registry, events, logger, runner, now } = deps;
  // `let`: a SIGHUP swaps in a reloaded config (see `reconfigure`); everything reads these at use.
  let config = deps.config;
  let policy = policyFromConfig(config);
  /** Every server_line in use since start: a node's line in the live file may still have an older one. */
  const serverLineFormats = new Set([config.haproxy.server_line]);
  const decider = deps.role === "decider";
  const state: DurableState = await store.load();
  const failures = { up: 0, down: 0 };
  /** The cooldown each action replaced, put back when its command fails (in memory: a restart keeps the cooldown). */
  const cooldownBefore = new Map<string, number | undefined>();
  const actions = { launches: 0, launch_failures: 0, launch_timeouts: 0, terminations: 0, terminate_failures: 0, not_recorded: 0 };
  const blocked: { up?: number; down?: number } = {};
  const inFlight = new Set<Promise<unknown>>();
  const terminating = new Set<string>();
  let lastDecision: { at: number; decision: Decision } | undefined;
  let stopped = false;
  let ticking = false;

  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  };

  // Saves are serialised and always write the latest state; a failed save is reported to the caller.
  let saving: Promise<void> = Promise.resolve();
  const persist = (): Promise<void> => {
    const next = saving.then(() => {
      prune();
      return store.save(state);
    });
    saving = next.catch(() => undefined);
    return next;
  };
  const prune = () => {
    const trim = <T extends { status: string }>(list: T[], open: (x: T) => boolean) => {
      const finished = list.filter((x) => !open(x));
      const drop = new Set(finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED)));
      return list.filter((x) => !drop.has(x));
    };
    state.launches = trim(state.launches, isOpenLaunch);
    state.drains = trim(state.drains, isOpenDrain);
  };

  /**
   * Save a decision before its command runs; when the save fails, undo it in memory, say so, and
   * throw: nothing runs without a record. A state_dir that stays unwritable (a full disk) would
   * refuse a decision every tick, so a refusal like the last one is logged again only once a
   * minute, with how many there were; the first save that works again says so.
   */
  const refusals = { streak: 0, since: 0, reportedAt: 0, last: "" };
  const saveOrUndo = async (what: string, undo: () => void): Promise<void> => {
    try {
      await persist();
    } catch (err) {
      undo();
      actions.not_recorded++;
      const at = now();
      if (refusals.streak === 0) refusals.since = at;
      refusals.streak++;
      const message = `${what}: the decision could not be recorded in ${store.file} (${(err as Error).message}); nothing runs without a record`;
      if (refusals.streak === 1 || message !== refusals.last || at - refusals.reportedAt >= NOT_RECORDED_REPEAT_MS) {
        const repeated = refusals.streak > 1 ? ` (${refusals.streak} decisions refused since ${new Date(refusals.since).toISOString()})` : "";
        event("not_recorded", message + repeated, { refused: refusals.streak }, "error");
        refusals.reportedAt = at;
        refusals.last = message;
      } else {
        logger.debug(message, { event: "not_recorded", refused: refusals.streak });
      }
      throw err;
    }
    if (refusals.streak > 0) {
      event("recorded", `decisions are recorded in ${store.file} again (${refusals.streak} refused while it could not be written)`, { refused: refusals.streak });
      refusals.streak = 0;
      refusals.last = "";
    }
  };

  /** Run an operator command in the ini's folder with `env`; a spawn failure is a failed result, never a throw. */
  const runCommand = (command: string, env: Record<string, string>) =>
    runner
      .run(command, { env, cwd: config.dir, timeoutMs: config.machine.command_timeout * 1000 })
      .catch((err: Error) => ({ code: null, signal: null, stdout: "", stderr: err.message, timedOut: false, durationMs: 0 }));

  const event = (kind: string, message: string, fields: Record<string, unknown> = {}, level: "info" | "warn" | "error" = "info") => {
    events.add(kind, message);
    logger[level](message, { event: kind, ...fields });
  };

  const hostByName = (name: string) => deps.hosts().find((h) => h.name === name);
  const leavingNames = () => new Set(state.drains.filter(isOpenDrain).map((d) => d.node));
  const pendingCount = () => state.launches.reduce((n, l) => n + waitingFor(l), 0);

  const observations = (at: number): NodeObservation[] => {
    const leaving = leavingNames();
    const hostMap = new Map(deps.hosts().map((h) => [h.name, h]));
    const names = new Set<string>([...hostMap.keys(), ...registry.list().map((r) => r.name)]);
    const out: NodeObservation[] = [];
    for (const name of names) {
      if (leaving.has(name)) continue;
      const record = registry.get(name);
      const entry = hostMap.get(name);
      const firstSeenAt = record?.firstSeenAt ?? at;
      const added = entry ? Date.parse(entry.addedAt) : NaN;
      out.push({
        name,
        live: record !== undefined && registry.stateOf(record, at) === "live",
        unreachable: record !== undefined && registry.stateOf(record, at) === "unreachable",
        firstSeenAt,
        addedAt: Number.isFinite(added) ? added : firstSeenAt,
        removable: entry !== undefined && entry.source !== "manual",
        readings: record?.readings ?? [],
      });
    }
    return out;
  };

  const capacity = (at: number): Capacity => {
    const nodes = observations(at);
    const pending = pendingCount();
    return {
      active: nodes.filter((n) => n.live).length,
      pending,
      leaving: leavingNames().size,
      desired: nodes.length + pending,
      min: policy.minNodes,
      max: policy.maxNodes,
    };
  };

  // ---- launches ----------------------------------------------------------------------------

  /** Record a launch (saved before anything runs); throws when it cannot be saved. */
  const recordLaunch = async (count: number, reason: string, manual: boolean): Promise<LaunchRecord> => {
    const at = now();
    const record: LaunchRecord = { id: newId("launch"), decidedAt: at, count, reason, status: "running", instances: [], nodes: [], manual };
    state.launches.push(record);
    const lastBefore = state.lastScaleUpAt;
    state.lastScaleUpAt = at;
    await saveOrUndo(`not launching ${count} node(s)`, () => {
      state.launches = state.launches.filter((l) => l !== record);
      state.lastScaleUpAt = lastBefore;
    });
    cooldownBefore.set(record.id, lastBefore);
    return record;
  };

  /** Run a recorded launch's command and record how it ended. */
  const runLaunch = async (record: LaunchRecord): Promise<void> => {
    const { count, reason, manual } = record;
    actions.launches++;
    event("scale_up", `launching ${count} node(s): ${reason}`, { launch: record.id, count, manual });
    const result = await runCommand(config.machine.scale_up_command, commandEnvironment(config, { kind: "scale_up", count }));
    const output = summariseOutput(result.stdout, result.stderr, config.secrets);
    if (result.code === 0) {
      cooldownBefore.delete(record.id);
      record.instances = parseRunInstancesOutput(result.stdout).map((i) => ({ instanceId: i.instanceId, ...(i.privateAddress ? { privateAddress: i.privateAddress } : {}) }));
      if (record.status === "running") record.status = record.nodes.length >= expected(record) ? "done" : "pending";
      if (record.status === "done") record.finishedAt = now();
      const ids = record.instances.map((i) => i.instanceId).join(", ");
      event("launch_started", `launch command for ${count} node(s) succeeded in ${Math.round(result.durationMs)} ms${ids ? `: ${ids}` : " (no run-instances JSON: the next new node(s) will be matched)"}`, { launch: record.id, output });
    } else {
      record.status = "failed";
      record.finishedAt = now();
      record.error = `${describeExit(result)}${output ? `: ${output}` : ""}`.slice(0, 4000);
      actions.launch_failures++;
      // A launch that did not happen starts no cooldown: only the failure backoff holds the next one.
      if (state.lastScaleUpAt === record.decidedAt) state.lastScaleUpAt = cooldownBefore.get(record.id);
      cooldownBefore.delete(record.id);
      failures.up++;
      blocked.up = now() + failureBackoffMs(failures.up);
      event("launch_failed", `launch command failed (${describeExit(result)}); no automatic launch for ${Math.round(failureBackoffMs(failures.up) / 1000)} s${output ? `: ${output}` : ""}`, { launch: record.id, exit_code: result.code }, "error");
    }
    await persist().catch((err: Error) => logger.error("cannot record the launch's outcome", { launch: record.id, error: err.message }));
  };

  const claimLaunch = async (hello: HelloMessage): Promise<boolean> => {
    // Already claimed (the master stopped after saving the claim, before writing hosts.d).
    if (state.launches.some((l) => l.nodes.includes(hello.name))) return true;
    const open = state.launches.filter((l) => isOpenLaunch(l) && waitingFor(l) > 0);
    if (open.length === 0) return false;
    // Matched by instance id or address when the command printed run-instances JSON, else by any new node.
    // An instance id is unique; an address may be shared (NAT, one host): ids first.
    const byId = hello.instance_id === undefined ? undefined : open.find((l) => l.instances.some((i) => i.instanceId === hello.instance_id));
    const byAddress = open.find((l) => l.instances.some((i) => i.privateAddress === hello.address));
    const record = byId ?? byAddress ?? open.find((l) => l.instances.length === 0);
    if (!record) return false;
    record.nodes.push(hello.name);
    // A node arrived: launches work, so the failure backoff starts over.
    failures.up = 0;
    delete blocked.up;
    if (record.nodes.length >= expected(record) && record.status === "pending") {
      record.status = "done";
      record.finishedAt = now();
    }
    await persist();
    event("launch_registered", `${hello.name} (${hello.address}) registered for launch ${record.id} (${record.nodes.length} of ${expected(record)})`, { launch: record.id, node: hello.name });
    return true;
  };

  const expireLaunches = async (at: number) => {
    let changed = false;
    for (const l of state.launches) {
      if (l.status !== "pending") continue;
      if (waitingFor(l) === 0) {
        l.status = "done";
        l.finishedAt = at;
        changed = true;
        continue;
      }
      if (at - l.decidedAt < config.machine.launch_timeout * 1000) continue;
      l.status = "failed";
      l.finishedAt = at;
      l.error = `launch_timeout: ${l.nodes.length} of ${expected(l)} node(s) registered within ${config.machine.launch_timeout} s`;
      changed = true;
      // A launch that never produces a node is a failure like a failed command: back off before the next.
      actions.launch_timeouts++;
      failures.up++;
      blocked.up = at + failureBackoffMs(failures.up);
      event("launch_timeout", `launch ${l.id} failed: ${l.error}; it no longer counts as pending (no automatic launch for ${Math.round(failureBackoffMs(failures.up) / 1000)} s)`, { launch: l.id }, "warn");
    }
    if (changed) await persist();
  };

  // ---- drains ------------------------------------------------------------------------------

  const runtimeSocket = () => config.haproxy.runtime_socket;
  const serverRef = (name: string) => `${config.haproxy.backend}/${name}`;
  const runtimeCommand = async (command: string): Promise<string | undefined> => {
    const socket = runtimeSocket();
    if (!socket) return "no runtime_socket";
    try {
      const answer = (await sendCliCommand(socket, command)).trim();
      return answer === "" ? undefined : answer;
    } catch (err) {
      return (err as Error).message;
    }
  };
  /** Names drained in the config itself: without a runtime socket, or when the socket refused. */
  const configDrained = new Set<string>();
  /** Names about to be terminated or gone: always out of the config. */
  const removing = new Set<string>();
  const excluded = () => new Set([...configDrained, ...removing]);

  const startDrain = async (record: DrainRecord) => {
    const problem = await runtimeCommand(`set server ${serverRef(record.node)} state drain`);
    if (problem === undefined) {
      logger.info("node drained through the runtime socket", { node: record.node, socket: runtimeSocket() });
      return;
    }
    if (runtimeSocket()) logger.warn("runtime socket drain failed; taking the node out of the config instead", { node: record.node, problem });
    configDrained.add(record.node);
    await deps.applyNow(`drain ${record.node}`);
  };

  /** True when the live haproxy.cfg no longer has this node's server line. */
  const outOfConfig = async (name: string): Promise<boolean> => {
    const entry = hostByName(name);
    if (!entry) return true;
    const text = await fs.readFile(config.haproxy.config, "utf8").catch(() => "");
    return ![...serverLineFormats].some((format) => text.includes(renderServerLine(format, entry).trim()));
  };

  const drain = async (name: string, reason: string, manual: boolean): Promise<void> => {
    const entry = hostByName(name);
    const node = registry.get(name);
    const at = now();
    const record: DrainRecord = {
      id: newId("drain"),
      node: name,
      instanceId: entry?.instanceId ?? node?.instanceId ?? "",
      address: entry?.address ?? node?.address ?? "",
      decidedAt: at,
      drainUntil: at + config.scaling.drain_seconds * 1000,
      status: "draining",
      reason,
      manual,
    };
    state.drains.push(record);
    const lastBefore = state.lastScaleDownAt;
    state.lastScaleDownAt = at;
    await saveOrUndo(`not scaling down ${name}`, () => {
      state.drains = state.drains.filter((d) => d !== record);
      state.lastScaleDownAt = lastBefore;
    });
    cooldownBefore.set(record.id, lastBefore);
    event("scale_down", `draining ${name} for ${config.scaling.drain_seconds} s, then terminating it: ${reason}`, { drain: record.id, node: name, manual });
    await startDrain(record);
  };

  const restore = async (record: DrainRecord) => {
    removing.delete(record.node);
    configDrained.delete(record.node);
    await runtimeCommand(`set server ${serverRef(record.node)} state ready`);
    await deps.applyNow(`${record.node} back in service`);
  };

  const terminate = async (record: DrainRecord): Promise<void> => {
    // Out of the config first, confirmed on the live file, so no request goes to a node being terminated.
    removing.add(record.node);
    await deps.applyNow(`terminate ${record.node}`);
    if (!(await outOfConfig(record.node))) {
      logger.warn("node still in haproxy.cfg; terminate waits for the next tick", { node: record.node });
      return;
    }
    record.status = "terminating";
    await persist();
    const result = await runCommand(config.machine.scale_down_command, commandEnvironment(config, { kind: "scale_down", instanceId: record.instanceId, nodeName: record.node, nodeAddress: record.address }));
    const output = summariseOutput(result.stdout, result.stderr, config.secrets);
    if (result.code === 0) {
      cooldownBefore.delete(record.id);
      failures.down = 0;
      delete blocked.down;
      await finishTermination(record, `${record.node} terminated (instance ${record.instanceId || "unknown"})${output ? `: ${output}` : ""}`);
    } else {
      record.status = "failed";
      record.finishedAt = now();
      record.error = `${describeExit(result)}${output ? `: ${output}` : ""}`.slice(0, 4000);
      actions.terminate_failures++;
      if (state.lastScaleDownAt === record.decidedAt) state.lastScaleDownAt = cooldownBefore.get(record.id);
      cooldownBefore.delete(record.id);
      failures.down++;
      blocked.down = now() + failureBackoffMs(failures.down);
      await persist();
      event("terminate_failed", `terminate command for ${record.node} failed (${describeExit(result)}); the node is back in service${output ? `: ${output}` : ""}`, { drain: record.id, exit_code: result.code }, "error");
      await restore(record);
    }
  };

  const finishTermination = async (record: DrainRecord, message: string) => {
    await deps.removeHost(record.node);
    registry.forget(record.node);
    record.status = "done";
    record.finishedAt = now();
    await persist();
    removing.delete(record.node);
    configDrained.delete(record.node);
    actions.terminations++;
    event("terminated", message, { drain: record.id, node: record.node });
  };

  /**
   * The same node as a scale-down's: the same instance id when both have one (a new instance may
   * reuse a terminated one's address, and its name when names come from the hostname), else the
   * same name and address.
   */
  const sameNode = (d: DrainRecord, hello: HelloMessage) =>
    d.instanceId && hello.instance_id ? d.instanceId === hello.instance_id : d.node === hello.name && d.address === hello.address;
  const admit = (hello: HelloMessage): string | undefined => {
    const at = now();
    const keepMs = config.scaling.forget_after * 1000;
    const d = state.drains.find((x) => (x.status === "terminating" || (x.status === "done" && at - (x.finishedAt ?? 0) < keepMs)) && sameNode(x, hello));
    if (!d) return undefined;
    // A launch whose command has returned and that waits for this instance, or for any new node
    // (no run-instances JSON), may be bringing it back: a warm pool's start-instances reuses ids.
    const awaited = state.launches.some(
      (l) => l.status === "pending" && waitingFor(l) > 0 && l.decidedAt > (d.finishedAt ?? d.decidedAt) && (l.instances.length === 0 || (hello.instance_id !== undefined && l.instances.some((i) => i.instanceId === hello.instance_id))),
    );
    if (awaited) return undefined;
    const what = d.instanceId ? `instance ${d.instanceId}` : `${d.node} at ${d.address}`;
    const when = d.status === "terminating" ? "is being terminated" : `was terminated ${Math.max(0, Math.round((at - (d.finishedAt ?? at)) / 1000))} s ago`;
    return `${what} ${when} by this master (scale-down ${d.id}); a node shutting down is not put back in service (a new node needs its own instance id; this holds for forget_after, ${config.scaling.forget_after} s)`;
  };

  const advanceDrains = (at: number) => {
    for (const d of state.drains) {
      if (d.status !== "draining" || at < d.drainUntil || terminating.has(d.id)) continue;
      terminating.add(d.id);
      void track(
        terminate(d)
          .catch((err: Error) => logger.error("scale-down step failed; retried on the next tick", { node: d.node, error: err.message }))
          .finally(() => terminating.delete(d.id)),
      );
    }
  };

  // ---- reconcile on start ------------------------------------------------------------------

  const reconcile = async () => {
    let changed = false;
    for (const l of state.launches.filter((x) => x.status === "running")) {
      l.status = "pending";
      l.note = "the master stopped while the launch command ran; its outcome is unknown, so it is not run again and counts as pending until a node registers or launch_timeout";
      changed = true;
      event("launch_recovered", `launch ${l.id} (${l.count} node(s)) was interrupted by a restart: ${l.note}`, { launch: l.id }, "warn");
    }
    for (const l of state.launches.filter((x) => x.status === "pending")) {
      // A node that registered while the master was down (and is in hosts.d now) fulfils its launch.
      for (const h of l.instances.length > 0 ? deps.hosts() : []) {
        if (l.nodes.includes(h.name) || waitingFor(l) === 0) continue;
        // Never a hand-added host, a node older than the decision, or one another launch holds: they
        // may share the instance's address (NAT, one host, a reused address) without being its node.
        if (h.source === "manual" || !(Date.parse(h.addedAt) >= l.decidedAt) || state.launches.some((x) => x.nodes.includes(h.name))) continue;
        if (l.instances.some((i) => i.instanceId === h.instanceId || i.privateAddress === h.address)) {
          l.nodes.push(h.name);
          changed = true;
        }
      }
      // So does a node that registered before the master stopped, while the command still ran.
      if (l.nodes.length >= expected(l)) {
        l.status = "done";
        l.finishedAt = now();
        changed = true;
      }
    }
    for (const d of state.drains.filter((x) => x.status === "terminating")) {
      d.note = "the master stopped while the terminate command ran; it is not run again";
      event("terminate_recovered", `scale-down of ${d.node} was interrupted by a restart: ${d.note}; its entry is removed`, { drain: d.id }, "warn");
      await finishTermination(d, `${d.node} removed after an interrupted terminate (outcome unknown, not repeated)`);
      changed = true;
    }
    if (changed) await persist();
    for (const d of state.drains.filter((x) => x.status === "draining")) {
      event("drain_recovered", `scale-down of ${d.node} continues after a restart (terminate at ${iso(d.drainUntil)})`, { drain: d.id });
      await startDrain(d);
    }
  };
  if (decider) await reconcile();
  else if (state.launches.some(isOpenLaunch) || state.drains.some(isOpenDrain)) {
    logger.warn("state.json holds launches or drains in progress, but this master is a follower and will not act on them", { file: store.file });
  }

  // ---- the tick ----------------------------------------------------------------------------

  const tick = async () => {
    if (!decider || stopped || ticking) return;
    ticking = true;
    try {
      const at = now();
      await expireLaunches(at);
      advanceDrains(at);
      const nodes = observations(at);
      const decision = decide(
        {
          pendingLaunches: pendingCount(),
          leaving: leavingNames().size,
          lastScaleUpAt: state.lastScaleUpAt,
          lastScaleDownAt: state.lastScaleDownAt,
          upBlockedUntil: blocked.up,
          downBlockedUntil: blocked.down,
          paused: state.paused,
        },
        nodes,
        policy,
        at,
      );
      if (lastDecision?.decision.reason !== decision.reason) logger.debug("decision", { action: decision.action, reason: decision.reason });
      lastDecision = { at, decision };
      if (decision.action === "scale_up") {
        const reason = decision.capped ? `${decision.reason} (${decision.capped})` : decision.reason;
        const record = await recordLaunch(decision.count, reason, false).catch(() => undefined);
        if (record) void track(runLaunch(record));
      } else if (decision.action === "scale_down") {
        void track(drain(decision.node, decision.reason, false).catch(() => undefined));
      }
    } catch (err) {
      logger.error("decision tick failed", { error: (err as Error).message });
    } finally {
      ticking = false;
    }
  };
  const tickEvery = () => Math.max(100, config.master.interval * 1000);
  let timer = setInterval(() => void tick(), tickEvery());

  const requireDecider = (what: string) => {
    if (!decider) throw new Error(`this master is a follower (only the decider runs ${what}); run it on the first proxy of [haproxy] servers, or set [master] role = decider there`);
  };

  return {
    tick,
    claimLaunch: (hello) => (decider ? claimLaunch(hello) : Promise.resolve(false)),
    admit: (hello) => (decider ? admit(hello) : undefined),
    excluded,
    afterReload() {
      if (!runtimeSocket()) return;
      for (const d of state.drains) {
        if (d.status === "draining" && !configDrained.has(d.node)) void runtimeCommand(`set server ${serverRef(d.node)} state drain`);
      }
    },
    async scaleUp(count) {
      requireDecider("scale commands");
      if (!policy.scaleUpEnabled) throw new Error("no [machine] scale_up_command is set, so there is nothing to run");
      const wanted = count ?? policy.step;
      const at = now();
      const cap = capacity(at);
      const { count: n, capped } = capCount(wanted, cap.desired, policy.maxNodes);
      if (n === 0) throw new Error(`cannot scale up: ${capped}`);
      const reason = `manual scale-up of ${wanted}${capped ? ` (${capped})` : ""}`;
      // Saved before this answers; the command runs on.
      const record = await recordLaunch(n, reason, true).catch((err: Error) => {
        throw new Error(`the launch could not be recorded in state_dir, so nothing was run: ${err.message}`);
      });
      void track(runLaunch(record));
      return { launched: n, reason };
    },
    async scaleDown(count) {
      requireDecider("scale commands");
      if (!config.machine.scale_down_command.trim()) throw new Error("no [machine] scale_down_command is set, so nodes cannot be terminated");
      const wanted = count ?? 1;
      const at = now();
      const nodes = observations(at);
      const room = nodes.length - policy.minNodes;
      if (room <= 0) throw new Error(`cannot scale down: ${nodes.length} backend(s) is already at min_nodes (${policy.minNodes})`);
      const order = (a: NodeObservation, b: NodeObservation) => (policy.scaleDownOrder === "oldest" ? a.addedAt - b.addedAt : b.addedAt - a.addedAt) || (a.name < b.name ? -1 : 1);
      const candidates = nodes.filter((n) => n.removable).sort(order);
      if (candidates.length === 0) throw new Error("cannot scale down: no backend may be removed (hand-added hosts are never scaled down)");
      const chosen = candidates.slice(0, Math.min(wanted, room));
      const reason = `manual scale-down of ${wanted}${chosen.length < wanted ? ` (limited to ${chosen.length} by min_nodes ${policy.minNodes} and removable nodes)` : ""}`;
      for (const n of chosen) await drain(n.name, reason, true);
      return { draining: chosen.map((n) => n.name), reason };
    },
    async setPaused(paused) {
      if (state.paused === paused) return { paused };
      state.paused = paused;
      try {
        await persist();
      } catch (err) {
        state.paused = !paused;
        throw new Error(`cannot record the pause flag in ${store.file}: ${(err as Error).message}`);
      }
      event(paused ? "paused" : "resumed", paused ? "automatic scaling paused; manual scale-up and scale-down still work" : "automatic scaling resumed");
      return { paused };
    },
    status() {
      const at = now();
      const left = (last: number | undefined, ms: number) => (last === undefined ? 0 : Math.max(0, Math.ceil((ms - (at - last)) / 1000)));
      return {
        capacity: capacity(at),
        paused: state.paused,
        cooldown: { scale_up_seconds: left(state.lastScaleUpAt, policy.upCooldownMs), scale_down_seconds: left(state.lastScaleDownAt, policy.downCooldownMs) },
        last_decision: lastDecision ? { at: iso(lastDecision.at), action: lastDecision.decision.action, reason: lastDecision.decision.reason } : null,
        actions: { ...actions },
        launches: state.launches.slice(-10).map((l) => ({
          id: l.id,
          status: l.status,
          count: l.count,
          nodes: [...l.nodes],
          instances: l.instances.map((i) => i.instanceId),
          decided_at: iso(l.decidedAt),
          finished_at: l.finishedAt === undefined ? null : iso(l.finishedAt),
          manual: l.manual,
          reason: l.reason,
          note: l.note ?? null,
          error: l.error ?? null,
        })),
        drains: state.drains.slice(-10).map((d) => ({
          id: d.id,
          node: d.node,
          instance_id: d.instanceId,
          status: d.status,
          decided_at: iso(d.decidedAt),
          drain_until: iso(d.drainUntil),
          finished_at: d.finishedAt === undefined ? null : iso(d.finishedAt),
          manual: d.manual,
          reason: d.reason,
          note: d.note ?? null,
          error: d.error ?? null,
        })),
      };
    },
    async idle() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      await saving;
    },
    reconfigure(next) {
      const interval = tickEvery();
      config = next;
      policy = policyFromConfig(next);
      serverLineFormats.add(next.haproxy.server_line);
      if (tickEvery() !== interval && !stopped) {
        clearInterval(timer);
        timer = setInterval(() => void tick(), tickEvery());
      }
    },
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
