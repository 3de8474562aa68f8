/**
 * The fleet as an operator lists it (`autoscaler instances`) and as Ansible reads it
 * (`autoscaler inventory`): pure functions of the master's status. Every node the master knows,
 * with its state, and every node a launch still waits for, with what the launch command printed.
 */
import { isActive } from "./serving.js";
import type { MasterStatus } from "./status.js";

/** A node's state in the fleet listing. */
export type InstanceState = "pending" | "active" | "draining" | "terminating" | "unreachable";

/** One node, or one node a launch still waits for (`name` null). */
export interface Instance {
  name: string | null;
  address: string | null;
  port: number | null;
  instance_id: string | null;
  /** A launch's output or an operator vouches for the id: a terminate may run with it. */
  instance_id_trusted: boolean;
  /** manual, agent, launched; `launch` for a node a launch still waits for. */
  source: string;
  state: InstanceState;
  /** The launch that brought it (or that it is awaited by). */
  launch: string | null;
  /** Since its hosts.d entry was written, or since the launch was decided. */
  since: string | null;
  age_seconds: number | null;
  last_sample: { seconds_ago: number; cpu: number | null; available: number | null } | null;
}

/** Every node and pending launch slot, nodes by name first. */
export function buildInstances(status: MasterStatus, launchedBy: Readonly<Record<string, string>>, now: number): Instance[] {
  const age = (iso: string | null) => (iso === null ? null : Math.max(0, Math.round((now - Date.parse(iso)) / 1000)));
  const openDrain = new Map(status.drains.filter((d) => d.status === "draining" || d.status === "terminating").map((d) => [d.node, d.status]));
  const out: Instance[] = status.nodes.map((n) => {
    const drain = openDrain.get(n.name);
    const state: InstanceState =
      drain === "draining" || drain === "terminating" ? drain : isActive(n.state === "live", n.source === "manual") ? "active" : "unreachable";
    return {
      name: n.name,
      address: n.address,
      port: n.port,
      instance_id: n.instance_id,
      instance_id_trusted: n.instance_id_trusted,
      source: n.source,
      state,
      launch: launchedBy[n.name] ?? null,
      since: n.added_at,
      age_seconds: age(n.added_at),
      last_sample: n.last_seen_seconds_ago === null ? null : { seconds_ago: n.last_seen_seconds_ago, cpu: n.cpu_now, available: n.available_now ?? null },
    };
  });
  const known = new Set(out.flatMap((i) => [i.instance_id, i.address]).filter((x): x is string => x !== null));
  for (const l of status.launches.filter((x) => x.status === "running" || x.status === "pending")) {
    const waiting = (l.expected ?? []).filter((e) => !known.has(e.instance_id) && (e.private_address === null || !known.has(e.private_address)));
    const slots =
      (l.expected ?? []).length > 0
        ? waiting.map((e) => ({ instance_id: e.instance_id, address: e.private_address }))
        : Array.from({ length: Math.max(0, l.count - l.nodes.length) }, () => ({ instance_id: null, address: null }));
    for (const slot of slots)
      out.push({
        name: null,
        address: slot.address,
        port: null,
        instance_id: slot.instance_id,
        instance_id_trusted: slot.instance_id !== null,
        source: "launch",
        state: "pending",
        launch: l.id,
        since: l.decided_at,
        age_seconds: age(l.decided_at),
        last_sample: null,
      });
  }
  return out;
}

/** Ansible's dynamic inventory (`--list`): every named node with its vars, grouped by source and state. */
export interface Inventory {
  _meta: { hostvars: Record<string, HostVars> };
  [group: string]: { hosts?: string[]; children?: string[] } | { hostvars: Record<string, HostVars> };
}

/** One host's variables: `ansible_host` is its address, the rest what the autoscaler knows. */
export interface HostVars {
  ansible_host: string;
  autoscaler_address: string;
  autoscaler_port: number;
  autoscaler_instance_id: string | null;
  autoscaler_source: string;
  autoscaler_state: InstanceState;
}

/** A group name Ansible takes (letters, digits, underscores). */
const group = (prefix: string, value: string) => `${prefix}_${value.replace(/[^A-Za-z0-9_]/g, "_")}`;

/** The variables of one named instance. */
export function hostVars(i: Instance): HostVars {
  return {
    ansible_host: i.address ?? "",
    autoscaler_address: i.address ?? "",
    autoscaler_port: i.port ?? 0,
    autoscaler_instance_id: i.instance_id,
    autoscaler_source: i.source,
    autoscaler_state: i.state,
  };
}

/**
 * The inventory: group `autoscaler` holds every node; `source_<source>` and `state_<state>` split
 * them. Launches not yet registered have no host name and are left out.
 */
export function buildInventory(instances: readonly Instance[]): Inventory {
  const named = instances.filter((i): i is Instance & { name: string } => i.name !== null && i.address !== null);
  const groups = new Map<string, string[]>();
  const add = (g: string, host: string) => groups.set(g, [...(groups.get(g) ?? []), host]);
  const hostvars: Record<string, HostVars> = {};
  for (const i of named) {
    hostvars[i.name] = hostVars(i);
    add("autoscaler", i.name);
    add(group("source", i.source), i.name);
    add(group("state", i.state), i.name);
  }
  const inventory: Inventory = { _meta: { hostvars } };
  const names = [...groups.keys()].sort();
  for (const g of names) inventory[g] = { hosts: groups.get(g)! };
  inventory.all = { children: ["ungrouped", ...names] };
  return inventory;
}

/** The same inventory as a static INI file: the vars on each host's line in `[autoscaler]`, the other groups by name. */
export function renderInventoryIni(inventory: Inventory): string {
  const lines: string[] = ["# Generated by autoscaler inventory --format ini"];
  const hostvars = inventory._meta.hostvars;
  const groups = Object.keys(inventory)
    .filter((g) => g !== "_meta" && g !== "all")
    .sort((a, b) => (a === "autoscaler" ? -1 : b === "autoscaler" ? 1 : a < b ? -1 : 1));
  for (const g of groups) {
    const hosts = (inventory[g] as { hosts?: string[] }).hosts ?? [];
    lines.push("", `[${g}]`);
    for (const h of hosts) {
      if (g !== "autoscaler") {
        lines.push(h);
        continue;
      }
      const vars = Object.entries(hostvars[h]!)
        .filter(([, v]) => v !== null && v !== "")
        .map(([k, v]) => `${k}=${String(v)}`);
      lines.push([h, ...vars].join(" "));
    }
  }
  return lines.join("\n") + "\n";
}
