/**
 * What the fault suites (faults-network, faults-burst) share: a daemon's log lines, killing sshd
 * with its sessions, and the tables they print for RELIABILITY.md.
 */
import type { Proxy, Daemon } from "./cluster.js";
import { descendants } from "./process.js";

/** Lines of a daemon's output that match `pattern`. */
export const countLines = (d: Daemon, pattern: RegExp) =>
  d
    .log()
    .split("\n")
    .filter((l) => pattern.test(l)).length;

/** The daemon's JSON log lines (it logs JSON when stdout is not a terminal) whose message is `msg`, with their time in ms since the epoch. */
export function logLines(d: Daemon, msg: string): { at: number; fields: Record<string, unknown> }[] {
  return d
    .log()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.includes(msg))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((f) => f.msg === msg)
    .map((fields) => ({ at: Date.parse(fields.time as string), fields }));
}

/** Kill a proxy's sshd listener and every per-connection sshd under it (SIGKILL, by pid): sshd gone with all it held. */
export async function killSshdAndSessions(proxy: Proxy): Promise<number> {
  const listener = proxy.sshd.pid();
  const children = await descendants(listener);
  proxy.sshd.kill("SIGKILL");
  for (const pid of children) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone with its parent
    }
  }
  return children.length;
}

/** Print a table of trials (header + rows) for RELIABILITY.md. */
export function printTable(title: string, rows: Record<string, string | number>[]): void {
  const keys = Object.keys(rows[0] ?? {});
  const lines = [`| ${keys.join(" | ")} |`, `| ${keys.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${keys.map((k) => String(r[k])).join(" | ")} |`)];
  console.log(`${title}\n${lines.join("\n")}`);
}
