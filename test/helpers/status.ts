/**
 * The master's status document for tests, typed as the master exports it (so a change to the
 * status fails the type check here), and the one way tests fetch it: the control socket, with
 * the same request and answer as `autoscaler status --json`, without a CLI process per poll and
 * without reading the ini (so it still answers while the ini on disk is bad, as sighup.test.ts
 * needs). A socket is a file, so it reaches a master inside a network namespace too.
 */
import net from "node:net";
import path from "node:path";
import type { MasterStatus } from "@autoscaler/master";

export type { MasterStatus, NodeStatus } from "@autoscaler/master";

/** A master to ask: anything that names its state_dir, or a proxy whose installation does. */
export type MasterAt = { stateDir: string } | { inst: { stateDir: string } };

/**
 * The status of the master at `at`, over its control socket. Throws when nothing answers within
 * `timeoutMs`, when the master refuses (it is still starting), or when the connection closes with
 * no answer (the master was killed mid-request).
 */
export function status(at: MasterAt, timeoutMs = 3000): Promise<MasterStatus> {
  const socket = path.join("stateDir" in at ? at.stateDir : at.inst.stateDir, "control.sock");
  return new Promise((resolve, reject) => {
    let answer = "";
    const s = net.createConnection({ path: socket });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no answer on ${socket} within ${timeoutMs} ms`)));
    s.on("connect", () => s.write(JSON.stringify({ cmd: "status" }) + "\n"));
    s.on("data", (b: Buffer) => (answer += b.toString()));
    s.on("error", reject);
    s.on("close", (hadError) => {
      if (hadError) return;
      try {
        const parsed = JSON.parse(answer) as { ok: boolean; result?: MasterStatus; error?: string };
        if (!parsed.ok || !parsed.result) reject(new Error(`status refused: ${parsed.error}`));
        else resolve(parsed.result);
      } catch {
        reject(new Error(`no status in the answer on ${socket}: ${JSON.stringify(answer.slice(0, 200))}`));
      }
    });
  });
}

/** Send one request to the master's control socket (as the CLI does) and return its answer: `{ ok, result }` or `{ ok: false, error }`. */
export function control(at: MasterAt, request: Record<string, unknown>, timeoutMs = 3000): Promise<{ ok: boolean; result?: unknown; error?: string }> {
  const socket = path.join("stateDir" in at ? at.stateDir : at.inst.stateDir, "control.sock");
  return new Promise((resolve, reject) => {
    let answer = "";
    const s = net.createConnection({ path: socket });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no answer on ${socket} within ${timeoutMs} ms`)));
    s.on("connect", () => s.write(JSON.stringify(request) + "\n"));
    s.on("data", (b: Buffer) => (answer += b.toString()));
    s.on("error", reject);
    s.on("close", (hadError) => {
      if (hadError) return;
      try {
        resolve(JSON.parse(answer) as { ok: boolean; result?: unknown; error?: string });
      } catch {
        reject(new Error(`no answer on ${socket}: ${JSON.stringify(answer.slice(0, 200))}`));
      }
    });
  });
}
