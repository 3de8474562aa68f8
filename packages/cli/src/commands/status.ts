/** `autoscaler status`: asks the running master over its control socket. */
import type { MasterStatus } from "@autoscaler/master";
import { loadContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";
import { formatTable } from "../table.js";

const fmt = (v: number | null, unit = "") => (v === null ? "-" : `${v}${unit}`);

/** Render the status for people. */
export function formatStatus(s: MasterStatus): string {
  const out: string[] = [];
  out.push(`master ${s.version}: ${s.role} (${s.role_reason}); agents on ${s.listen}`);
  out.push(`capacity: ${s.capacity.active} active, ${s.capacity.pending} pending, ${s.capacity.desired} desired; paused: ${s.paused ? "yes" : "no"}`);
  out.push("");
  out.push(
    formatTable(
      ["NODE", "ADDRESS", "PORT", "SOURCE", "STATE", "CPU", "CPU(WINDOW)", "LAST SEEN"],
      s.nodes.map((n) => [n.name, n.address, String(n.port), n.source, n.state + (n.healthy === false ? " (unhealthy)" : ""), fmt(n.cpu_now, "%"), fmt(n.cpu_window, "%"), n.last_seen_seconds_ago === null ? "-" : `${n.last_seen_seconds_ago}s ago`]),
    ).trimEnd(),
  );
  const h = s.haproxy;
  out.push("");
  out.push(`haproxy ${h.config}: ${h.applies} applies, ${h.reloads} reloads, ${h.reload_failures} reload failures, ${h.check_failures} check failures`);
  if (h.last_error) out.push(`  last error (${h.last_error.at}): ${h.last_error.message}`, ...h.last_error.details.map((d) => `    ${d}`));
  if (s.events.length > 0) {
    out.push("", "recent events:");
    for (const e of s.events.slice(-10)) out.push(`  ${e.at}  ${e.kind.padEnd(10)}  ${e.message}`);
  }
  return out.join("\n") + "\n";
}

/** Print the running master's status. */
export async function runStatus(io: Io, args: GlobalArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const { callControl, controlSocketPath } = await import("@autoscaler/master");
  const status = (await callControl(controlSocketPath(ctx.config.master.state_dir), { cmd: "status" })) as MasterStatus;
  io.stdout.write(args.json ? JSON.stringify(status, null, 2) + "\n" : formatStatus(status));
  return 0;
}
