/** The demo's live terminal view: one frame a second, drawn from the master's `/status` and the load generator's counts. */
import type { MasterStatus } from "@autoscaler/master";
import { formatTable } from "../table.js";

/** Everything one frame shows. */
export interface DemoView {
  /** The master's status page, shown on the frame's first line. */
  pageUrl: string;
  elapsed: number;
  duration: number;
  rate: number;
  loadOn: boolean;
  loadDone: boolean;
  up: number;
  down: number;
  windowS: number;
  sshKind: "sshd" | "embedded";
  frontendPort: number;
  status: MasterStatus | undefined;
  /** Answers per node over the last 5 s. */
  shares: Map<string, number>;
  totals: { ok: number; failed: number };
}

const bar = (fraction: number, width: number) => "█".repeat(Math.round(fraction * width)).padEnd(width, "·");

/** Render one frame as text (no escape codes but the caller's clear-screen). */
export function renderFrame(v: DemoView, columns: number): string {
  const lines: string[] = [];
  const load = v.loadOn ? `load ON: ${v.rate} req/s` : v.loadDone ? "load OFF (done)" : "load waits for the first node";
  lines.push(
    `autoscaler demo · ${Math.round(v.elapsed)} s of ${v.duration} s · ${load} · HAProxy on 127.0.0.1:${v.frontendPort} · page ${v.pageUrl} · Ctrl-C ends it`,
  );
  const s = v.status;
  if (!s) return lines.concat("", "waiting for the master…").join("\n") + "\n";
  const c = s.capacity;
  lines.push(
    `capacity: ${c.active} active, ${c.pending} pending, ${c.leaving} leaving (min ${c.min}, max ${c.max}) · up at ≥ ${v.up} %, down at < ${v.down} % over ${v.windowS} s · SSH: ${v.sshKind === "sshd" ? "OpenSSH sshd" : "embedded"}`,
  );
  lines.push(`requests: ${v.totals.ok} ok, ${v.totals.failed} failed · last decision: ${s.last_decision ? s.last_decision.reason : "-"}`.slice(0, columns));
  lines.push("");
  const total = [...v.shares.values()].reduce((a, b) => a + b, 0);
  const leaving = new Map(s.drains.filter((d) => d.status === "draining" || d.status === "terminating").map((d) => [d.node, d.status]));
  lines.push(
    formatTable(
      ["NODE", "STATE", "CPU", "CPU(5s)", "SERVED (LAST 5 s)"],
      s.nodes.map((n) => {
        const share = total > 0 ? (v.shares.get(n.name) ?? 0) / total : 0;
        return [
          n.name,
          leaving.get(n.name) ?? n.state,
          n.cpu_now === null ? "-" : `${n.cpu_now.toFixed(1)}%`,
          n.cpu_window === null ? "-" : `${n.cpu_window.toFixed(1)}%`,
          `${bar(share, 20)} ${Math.round(share * 100)}%`,
        ];
      }),
    ).trimEnd(),
  );
  lines.push("", "events:");
  for (const e of s.events.slice(-8)) lines.push(`  ${e.at.slice(11, 19)}  ${e.kind.padEnd(16)} ${e.message}`.slice(0, columns));
  return lines.join("\n") + "\n";
}
