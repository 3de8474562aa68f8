/**
 * The master's registry of nodes (SPEC behaviour 1). Pure state plus arithmetic on a clock
 * passed in by the caller: no timers, no IO.
 *
 *   hello ──► live ──(no sample for node_timeout)──► unreachable ──(forget_after)──► forgotten
 *               ▲                                        │
 *               └──────────── sample or hello ◄──────────┘
 */
import type { CredentialKind } from "@autoscaler/shared";
import type { HelloMessage, SampleMessage } from "@autoscaler/shared/protocol";

/** One CPU reading as the master received it. `at` is the master's clock, not the node's. */
export interface CpuReading {
  at: number;
  cpu: number;
  /** The node's free resource units at that time, when its agent reports them (capacity_url). */
  available?: number;
}

/** What the master knows of one node. */
export interface NodeRecord {
  name: string;
  address: string;
  port: number;
  instanceId: string | undefined;
  agentVersion: string;
  cores: number;
  memoryBytes: number;
  firstSeenAt: number;
  lastSeenAt: number;
  healthy: boolean;
  /** Open tunnels from this node (one per connection; a reconnect may overlap the old one briefly). */
  connections: number;
  readings: CpuReading[];
  /** What the node's last hello presented. */
  credential: Exclude<CredentialKind, "operator">;
}

/** A node's state as status shows it. */
export type NodeState = "live" | "unreachable";

/**
 * A sample closer than this to the node's last kept one is counted and dropped: an agent samples
 * every `[agent] interval` (5 s by default, 1 s in the tests), so only a flood comes this fast, and
 * a node's window then holds at most window ÷ this many readings.
 */
export const MIN_SAMPLE_GAP_MS = 250;

/** Why a hello was refused. */
export type RegisterRefusal = "NAME_TAKEN" | "NAME_MANUAL";

/** Registry settings, in milliseconds. */
export interface RegistryOptions {
  nodeTimeoutMs: number;
  forgetAfterMs: number;
  /** How much history to keep: the decision window, plus a margin. */
  keepMs: number;
  /** True when `name` belongs to a hand-added hosts.d entry, which an agent may never take. */
  isManual: (name: string) => boolean;
}

/** The registry's operations. `now` is always given by the caller. */
export interface Registry {
  register(
    hello: HelloMessage,
    now: number,
    credential: NodeRecord["credential"],
  ): { ok: true; record: NodeRecord; isNew: boolean } | { ok: false; reason: RegisterRefusal; message: string };
  /** Keep a sample; false when it was dropped (too soon after the last kept one, or an unknown node). */
  recordSample(name: string, sample: SampleMessage, now: number): boolean;
  disconnect(name: string): void;
  stateOf(record: NodeRecord, now: number): NodeState;
  /** Drop a node now (it was terminated); a later hello registers it afresh. */
  forget(name: string): void;
  /** Nodes silent for longer than forget_after: removed from the registry and returned. */
  sweep(now: number): NodeRecord[];
  list(): NodeRecord[];
  get(name: string): NodeRecord | undefined;
}

/** Create an empty registry. */
export function createRegistry(options: RegistryOptions): Registry {
  const nodes = new Map<string, NodeRecord>();
  const stateOf = (r: NodeRecord, now: number): NodeState => (now - r.lastSeenAt <= options.nodeTimeoutMs ? "live" : "unreachable");
  return {
    register(hello, now, credential) {
      if (options.isManual(hello.name)) {
        return { ok: false, reason: "NAME_MANUAL", message: `the name ${hello.name} belongs to a hand-added backend; give the agent another [agent] name` };
      }
      const existing = nodes.get(hello.name);
      if (existing && existing.address !== hello.address && stateOf(existing, now) === "live") {
        return {
          ok: false,
          reason: "NAME_TAKEN",
          message: `the name ${hello.name} is taken by a live node at another address; give the agent another [agent] name`,
        };
      }
      const record: NodeRecord = {
        name: hello.name,
        address: hello.address,
        port: hello.port,
        instanceId: hello.instance_id,
        agentVersion: hello.agent_version,
        cores: hello.facts.cores,
        memoryBytes: hello.facts.memory_bytes,
        firstSeenAt: existing && existing.address === hello.address ? existing.firstSeenAt : now,
        lastSeenAt: now,
        healthy: hello.healthy ?? true,
        connections: (existing?.connections ?? 0) + 1,
        readings: existing && existing.address === hello.address ? existing.readings : [],
        credential,
      };
      nodes.set(hello.name, record);
      return { ok: true, record, isNew: !existing || existing.address !== hello.address || existing.port !== hello.port };
    },
    recordSample(name, sample, now) {
      const r = nodes.get(name);
      if (!r) return false;
      r.lastSeenAt = now;
      const last = r.readings[r.readings.length - 1];
      if (last && now - last.at < MIN_SAMPLE_GAP_MS) return false;
      if (sample.healthy !== undefined) r.healthy = sample.healthy;
      r.readings.push(sample.available === undefined ? { at: now, cpu: sample.cpu } : { at: now, cpu: sample.cpu, available: sample.available });
      const oldest = now - options.keepMs;
      let drop = 0;
      while (drop < r.readings.length && r.readings[drop]!.at < oldest) drop++;
      if (drop > 0) r.readings.splice(0, drop);
      return true;
    },
    disconnect(name) {
      const r = nodes.get(name);
      if (r && r.connections > 0) r.connections--;
    },
    stateOf,
    forget(name) {
      nodes.delete(name);
    },
    sweep(now) {
      const gone: NodeRecord[] = [];
      for (const r of nodes.values()) {
        if (now - r.lastSeenAt > options.forgetAfterMs) {
          nodes.delete(r.name);
          gone.push(r);
        }
      }
      return gone;
    },
    list: () => [...nodes.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    get: (name) => nodes.get(name),
  };
}
