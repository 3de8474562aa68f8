/** `autoscaler status`: asks the running master over its control socket. */
import type { MasterStatus } from "@autoscaler/master";
import { loadContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";
import { formatTable, instanceCell } from "../table.js";

const fmt = (v: number | null, unit = "") => (v === null ? "-" : `${v}${unit}`);

/** What an open launch's command printed: the instances (and private addresses) it waits for. */
function expecting(l: MasterStatus["launches"][number]): string {
  if (l.status !== "running" && l.status !== "pending") return "";
  const list = l.expected ?? [];
  if (list.length === 0) return "";
  return `  expecting ${list.map((e) => (e.private_address ? `${e.instance_id} (${e.private_address})` : e.instance_id)).join(", ")}`;
}

/** Render the status for people. */
export function formatStatus(s: MasterStatus): string {
  const out: string[] = [];
  out.push(`master ${s.version}: ${s.role} (${s.role_reason}); agents on ${s.listen}`);
  // Absent from a master older than failover on etcd; null without [cluster] etcd.
  if (s.cluster) out.push(...formatCluster(s.cluster));
  const c = s.capacity;
  out.push(
    `capacity: ${c.active} active, ${c.pending} pending, ${c.leaving} leaving, ${c.desired} desired (min ${c.min}, max ${c.max}); paused: ${s.paused ? "yes" : "no"}`,
  );
  out.push(`cooldown left: scale-up ${s.cooldown.scale_up_seconds} s, scale-down ${s.cooldown.scale_down_seconds} s`);
  if (s.last_decision) out.push(`last decision: ${s.last_decision.action} (${s.last_decision.reason})`);
  // Absent from a master older than fleet operations.
  if (s.teardown) out.push(`teardown since ${s.teardown.since}: every node the autoscaler launched is drained and terminated (autoscaler resume ends it)`);
  // Absent from a master older than named policies.
  if (s.limits?.set_by)
    out.push(`limits: min_nodes ${s.limits.min_nodes}, max_nodes ${s.limits.max_nodes}, set by ${s.limits.set_by} at ${s.limits.set_at} (over the ini's)`);
  for (const p of s.policies ?? [])
    out.push(
      `policy ${p.name} (${p.action}, cooldown ${p.cooldown_seconds} s, ${p.cooldown_left_seconds} s left): ${p.last_outcome ? `${p.last_outcome} via ${p.last_via} at ${p.last_run_at}` : "not run yet"}`,
    );
  for (const x of s.schedules ?? [])
    out.push(
      `schedule ${x.name} (${x.cron} ${x.timezone}: ${x.action}): next ${x.next_run_at ?? "never"}${x.last_outcome ? `, last ${x.last_outcome} at ${x.last_run_at}` : ""}`,
    );
  if ((s.webhooks ?? []).length > 0) out.push(`webhooks: ${s.webhooks.map((h) => `${h.name} → ${h.policy}`).join(", ")}`);
  // Absent from a master older than node credentials.
  if (s.credentials?.note) out.push(`note: ${s.credentials.note}`);
  const noId = s.nodes.filter((n) => n.instance_id === null && n.source !== "manual").map((n) => n.name);
  if (noId.length > 0)
    out.push(
      `note: no instance id for ${noId.join(", ")}: a scale-down runs scale_down_command for such a node with INSTANCE_ID empty (terminate-instances then fails); set [agent] instance_id on the node (the user-data's $INSTANCE_ID), or let its agent reach the metadata service`,
    );
  out.push("");
  out.push(
    formatTable(
      ["NODE", "ADDRESS", "PORT", "SOURCE", "CREDENTIAL", "INSTANCE", "STATE", "CPU", "CPU(WINDOW)", "LAST SEEN"],
      s.nodes.map((n) => [
        n.name,
        n.address,
        String(n.port),
        n.source,
        n.credential ?? "-",
        instanceCell(n),
        n.state + (n.healthy === false ? " (unhealthy)" : ""),
        fmt(n.cpu_now, "%"),
        fmt(n.cpu_window, "%"),
        n.last_seen_seconds_ago === null ? "-" : `${n.last_seen_seconds_ago}s ago`,
      ]),
    ).trimEnd(),
  );
  const open = [...s.launches.filter((l) => l.status === "running" || l.status === "pending"), ...s.launches.filter((l) => l.status === "failed").slice(-3)];
  if (open.length > 0) {
    out.push("", "launches:");
    for (const l of open)
      out.push(
        `  ${l.id}  ${l.status.padEnd(8)}  ${l.nodes.length} of ${l.count} registered${l.nodes.length ? ` (${l.nodes.join(", ")})` : ""}${expecting(l)}  ${l.reason}${l.error ? `; ${l.error}` : ""}`,
      );
  }
  const drains = s.drains.filter((d) => d.status === "draining" || d.status === "terminating");
  if (drains.length > 0) {
    out.push("", "scale-downs in progress:");
    for (const d of drains) out.push(`  ${d.node}  ${d.status}  until ${d.drain_until}  ${d.reason}`);
  }
  const h = s.haproxy;
  out.push("");
  out.push(
    `haproxy ${h.config}: ${h.applies} applies, ${h.runtime_applies} without a reload (runtime API), ${h.reloads} reloads, ${h.runtime_fallbacks} runtime fallbacks, ${h.reload_failures} reload failures, ${h.check_failures} check failures`,
  );
  if (h.reload_because) out.push(`  changes take the reload path: ${h.reload_because}`);
  if (h.last_error) out.push(`  last error (${h.last_error.at}): ${h.last_error.message}`, ...h.last_error.details.map((d) => `    ${d}`));
  if (s.events.length > 0) {
    out.push("", "recent events:");
    const shown = s.events.slice(-10);
    // The kind column as wide as the longest kind shown (some, such as "launch_registered", are long).
    const width = Math.max(10, ...shown.map((e) => e.kind.length));
    for (const e of shown) out.push(`  ${e.at}  ${e.kind.padEnd(width)}  ${e.message}`);
  }
  return out.join("\n") + "\n";
}

/** The cluster's lines: etcd, who leads since when, each master's role, and a problem if any. */
function formatCluster(c: NonNullable<MasterStatus["cluster"]>): string[] {
  const etcd = `etcd ${c.etcd.up ? "up" : "DOWN"} since ${c.etcd.since} (${c.etcd.endpoints.length} endpoint(s), prefix ${c.prefix})`;
  const leader = c.leader
    ? `leader ${c.leader.member}${c.leader.since ? ` since ${c.leader.since}` : ""}${c.leader.lease_remaining_seconds === null ? "" : `, lease ${c.leader.lease_remaining_seconds} s left`}`
    : "no leader";
  const lines = [`cluster: this is ${c.member}; ${etcd}; ${leader}`];
  if (c.members.length > 0) lines.push(`  masters: ${c.members.map((m) => `${m.member} (${m.role})`).join(", ")}`);
  if (c.problem) lines.push(`  problem: ${c.problem}`);
  return lines;
}

/** Print the running master's status. */
export async function runStatus(io: Io, args: GlobalArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const { callControl, controlSocketPath } = await import("@autoscaler/master");
  const status = (await callControl(controlSocketPath(ctx.config.master.state_dir), { cmd: "status" })) as MasterStatus;
  io.stdout.write(args.json ? JSON.stringify(status, null, 2) + "\n" : formatStatus(status));
  return 0;
}
