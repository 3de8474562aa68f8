/** The master's status, as `autoscaler status`, the control socket and `/status` show it. */
import { SHARED_TOKEN_NOTE, type CredentialKind, type HostEntry } from "@autoscaler/shared";
import type { ApplierState } from "./applier.js";
import type { MasterEvent } from "./events.js";
import type { NodeRecord, NodeState, Registry } from "./registry.js";
import type { Role } from "./role.js";
import type { Capacity, ScalerStatus } from "./scaler.js";
import { isActive } from "./serving.js";
import type { ClusterStatus } from "./cluster/campaign.js";

/** One node line of the status. CPU figures are percent of all the node's cores. */
export interface NodeStatus {
  name: string;
  address: string;
  port: number;
  source: HostEntry["source"] | "unknown";
  state: NodeState | "configured";
  healthy: boolean | null;
  cpu_now: number | null;
  cpu_window: number | null;
  samples_in_window: number;
  last_seen_seconds_ago: number | null;
  connections: number;
  instance_id: string | null;
  /** A launch's output or an operator vouches for instance_id: a scale-down may terminate it. */
  instance_id_trusted: boolean;
  /** What the node presented: its own credential, a launch's, the cluster secret (shared), or nothing (operator: hand-added). */
  credential: CredentialKind | null;
  /** When its hosts.d entry was written (null: an agent whose entry is not written yet). */
  added_at: string | null;
  /** Its last report of free resource units (capacity_url), or null. */
  available_now: number | null;
}

/** The whole status document. */
export interface MasterStatus {
  version: string;
  role: Role;
  role_reason: string;
  listen: string;
  now: string;
  nodes: NodeStatus[];
  capacity: Capacity;
  paused: boolean;
  /** Seconds left in each cooldown (0: none). */
  cooldown: ScalerStatus["cooldown"];
  /** The last decision tick's outcome and reason (the decider only). */
  last_decision: ScalerStatus["last_decision"];
  actions: ScalerStatus["actions"];
  launches: ScalerStatus["launches"];
  drains: ScalerStatus["drains"];
  /** Named policies, schedules, webhooks (names only) and the limits in force. */
  policies: ScalerStatus["policies"];
  schedules: ScalerStatus["schedules"];
  webhooks: ScalerStatus["webhooks"];
  limits: ScalerStatus["limits"] | null;
  haproxy: {
    config: string;
    applies: number;
    reloads: number;
    /** Changes applied through the runtime API (no reload), and runtime commands that failed and fell back to a reload. */
    runtime_applies: number;
    runtime_fallbacks: number;
    /** Why changes take the reload path now although runtime_socket is set (null: they do not, or no socket). */
    reload_because: string | null;
    reload_failures: number;
    check_failures: number;
    last_applied_at: string | null;
    last_error: { at: string; code: string; message: string; details: string[] } | null;
  };
  events: { at: string; kind: string; message: string }[];
  /** Whether agents may present the cluster secret itself, and the note that says so. */
  credentials: { shared_token: "allow" | "refuse"; note: string | null };
  /** With [cluster] etcd: etcd, the leader, every master campaigning; null without etcd. */
  cluster: ClusterStatus | null;
  /** Since when `autoscaler teardown` holds (until resume); null when none. */
  teardown: ScalerStatus["teardown"];
}

/** Mean CPU of the readings inside the window ending at `now`, or null when there are none. */
export function windowAverage(record: NodeRecord, now: number, windowMs: number): { mean: number | null; count: number } {
  const inWindow = record.readings.filter((r) => r.at > now - windowMs);
  if (inWindow.length === 0) return { mean: null, count: 0 };
  return { mean: Math.round((inWindow.reduce((a, r) => a + r.cpu, 0) / inWindow.length) * 100) / 100, count: inWindow.length };
}

/** Inputs to {@link buildStatus}. */
export interface StatusInputs {
  version: string;
  role: { role: Role; why: string };
  listen: string;
  haproxyConfig: string;
  registry: Registry;
  hosts: HostEntry[];
  applier: ApplierState;
  events: MasterEvent[];
  windowMs: number;
  now: number;
  /** The scaler's part; absent only while the master starts. */
  scaling: ScalerStatus | undefined;
  sharedToken: "allow" | "refuse";
  cluster?: ClusterStatus | undefined;
}

/** Assemble the status from the registry (live data) and hosts.d (configured backends). */
export function buildStatus(i: StatusInputs): MasterStatus {
  const iso = (t: number) => new Date(t).toISOString();
  const byName = new Map(i.hosts.map((h) => [h.name, h]));
  const nodes: NodeStatus[] = i.registry.list().map((r) => {
    const w = windowAverage(r, i.now, i.windowMs);
    return {
      name: r.name,
      address: r.address,
      port: r.port,
      source: byName.get(r.name)?.source ?? "unknown",
      state: i.registry.stateOf(r, i.now),
      healthy: r.healthy,
      cpu_now: r.readings.at(-1)?.cpu ?? null,
      cpu_window: w.mean,
      samples_in_window: w.count,
      last_seen_seconds_ago: Math.round((i.now - r.lastSeenAt) / 100) / 10,
      connections: r.connections,
      ...instanceOf(byName.get(r.name), r.instanceId),
      credential: byName.get(r.name)?.source === "manual" ? "operator" : r.credential,
      added_at: byName.get(r.name)?.addedAt ?? null,
      available_now: r.readings.findLast((x) => x.available !== undefined)?.available ?? null,
    };
  });
  for (const h of i.hosts) {
    if (i.registry.get(h.name)) continue;
    nodes.push({
      name: h.name,
      address: h.address,
      port: h.port,
      source: h.source,
      state: "configured",
      healthy: null,
      cpu_now: null,
      cpu_window: null,
      samples_in_window: 0,
      last_seen_seconds_ago: null,
      connections: 0,
      ...instanceOf(h, undefined),
      credential: h.source === "manual" ? "operator" : null,
      added_at: h.addedAt,
      available_now: null,
    });
  }
  nodes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const active = nodes.filter((n) => isActive(n.state === "live", n.source === "manual")).length;
  const err = i.applier.lastError;
  return {
    version: i.version,
    role: i.role.role,
    role_reason: i.role.why,
    listen: i.listen,
    now: iso(i.now),
    nodes,
    capacity: i.scaling?.capacity ?? { active, pending: 0, leaving: 0, desired: active, min: 0, max: 0 },
    paused: i.scaling?.paused ?? false,
    cooldown: i.scaling?.cooldown ?? { scale_up_seconds: 0, scale_down_seconds: 0 },
    last_decision: i.scaling?.last_decision ?? null,
    actions: i.scaling?.actions ?? { launches: 0, launch_failures: 0, launch_timeouts: 0, terminations: 0, terminate_failures: 0, not_recorded: 0 },
    launches: i.scaling?.launches ?? [],
    drains: i.scaling?.drains ?? [],
    policies: i.scaling?.policies ?? [],
    schedules: i.scaling?.schedules ?? [],
    webhooks: i.scaling?.webhooks ?? [],
    limits: i.scaling?.limits ?? null,
    haproxy: {
      config: i.haproxyConfig,
      applies: i.applier.applies,
      reloads: i.applier.reloads,
      runtime_applies: i.applier.runtimeApplies,
      runtime_fallbacks: i.applier.runtimeFallbacks,
      reload_because: i.applier.reloadBecause ?? null,
      reload_failures: i.applier.reloadFailures,
      check_failures: i.applier.checkFailures,
      last_applied_at: i.applier.lastAppliedAt === undefined ? null : iso(i.applier.lastAppliedAt),
      last_error: err ? { at: iso(err.at), code: err.code, message: err.message, details: err.details } : null,
    },
    events: i.events.map((e) => ({ at: iso(e.at), kind: e.kind, message: e.message })),
    credentials: { shared_token: i.sharedToken, note: i.sharedToken === "allow" ? SHARED_TOKEN_NOTE : null },
    cluster: i.cluster ?? null,
    teardown: i.scaling?.teardown ?? null,
  };
}

/** A node's instance id: hosts.d's (vouched for, or the node's own word), else its hello's. */
function instanceOf(entry: HostEntry | undefined, reported: string | undefined): { instance_id: string | null; instance_id_trusted: boolean } {
  return { instance_id: entry?.instanceId ?? reported ?? null, instance_id_trusted: entry?.instanceIdFrom !== undefined };
}
