/**
 * HAProxy's master CLI (the `-S` socket of master-worker mode): used to confirm that a reload
 * really brought up a new worker, since the master answers a reload before the new worker runs
 * and a failed reload is otherwise silent.
 */
import net from "node:net";

/** One process line of `show proc`. `reloads` is, for a worker, how many reloads ago it started. */
export interface ProcLine {
  pid: number;
  type: "master" | "worker";
  reloads: number;
}

/** What `show proc` says. */
export interface ProcTable {
  master: ProcLine;
  workers: ProcLine[];
}

/** Send one command to a HAProxy CLI socket and return the whole answer. */
export function sendCliCommand(socketPath: string, command: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.createConnection({ path: socketPath });
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    socket.on("connect", () => socket.end(command + "\n"));
    socket.on("data", (b: Buffer) => chunks.push(b));
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on("close", (hadError) => {
      clearTimeout(timer);
      if (!hadError) resolve(Buffer.concat(chunks).toString("utf8"));
    });
  });
}

/** Parse the answer of `show proc` (HAProxy 2.6 layout: master line, then worker lines). */
export function parseShowProc(text: string): ProcTable | undefined {
  let master: ProcLine | undefined;
  const workers: ProcLine[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\d+)\s+(master|worker)\s+(\d+)/.exec(line);
    if (!m) continue;
    const entry: ProcLine = { pid: Number(m[1]), type: m[2] as ProcLine["type"], reloads: Number(m[3]) };
    if (entry.type === "master") master = entry;
    else workers.push(entry);
  }
  return master ? { master, workers } : undefined;
}

/** Ask the master CLI for its process table. */
export async function showProc(socketPath: string, timeoutMs = 2000): Promise<ProcTable> {
  const answer = await sendCliCommand(socketPath, "show proc", timeoutMs);
  const table = parseShowProc(answer);
  if (!table) throw new Error(`unexpected answer to "show proc" on ${socketPath}: ${JSON.stringify(answer.slice(0, 200))}`);
  return table;
}

/** How a reload ended, judged from two process tables. */
export type ReloadVerdict = { state: "pending" } | { state: "confirmed"; workerPid: number } | { state: "failed" };

/**
 * Compare the process table before a reload with one after. The reload is confirmed when the
 * master has re-executed (its reload count grew) and a worker that was not there before is the
 * current one (0 reloads old); it failed when the master re-executed and no such worker exists.
 */
export function judgeReload(before: ProcTable, after: ProcTable): ReloadVerdict {
  if (after.master.reloads <= before.master.reloads) return { state: "pending" };
  const old = new Set(before.workers.map((w) => w.pid));
  const fresh = after.workers.find((w) => w.reloads === 0 && !old.has(w.pid));
  return fresh ? { state: "confirmed", workerPid: fresh.pid } : { state: "failed" };
}
