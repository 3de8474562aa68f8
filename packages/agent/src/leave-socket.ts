/**
 * `autoscaler leave` on a node reaches its running agent through a Unix socket in the agent's
 * state folder (`<[master] state_dir>/agent.sock`, mode 0600, so only the agent's user and root
 * may use it); the agent then sends `{"type":"leave"}` over each of its own authenticated
 * tunnels. The node's key and credential never leave the agent, and the request names nothing:
 * the master takes the name from the connection it arrives on.
 */
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";

/** The agent's leave socket in a state folder. */
export function leaveSocketPath(stateDir: string): string {
  return path.join(stateDir, "agent.sock");
}

/** What the agent answers a leave request. */
export type LeaveAnswer = { ok: true; node: string; proxies: string[] } | { ok: false; error: string };

/** True when an agent answers on `file` now. */
function answers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path: file });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Listen for leave requests (one line: `leave`, or `leave NAME` for the node the caller means); a stale socket file is replaced, but one another
 * running agent answers on is never taken over (its leave would reach the wrong node). Returns
 * the close function.
 */
export async function startLeaveSocket(file: string, onLeave: (name: string | undefined) => LeaveAnswer): Promise<() => Promise<void>> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  if (await answers(file)) throw new Error(`another agent answers on ${file}; give each agent its own [master] state_dir`);
  await fs.rm(file, { force: true });
  const server = net.createServer((socket) => {
    let buf = "";
    socket.setEncoding("utf8");
    socket.setTimeout(5000, () => socket.destroy());
    socket.on("error", () => undefined);
    socket.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > 1024) return socket.destroy();
      if (!buf.includes("\n")) return;
      const m = /^leave(?: ([A-Za-z0-9._-]{1,63}))?$/.exec(buf.trim());
      const answer: LeaveAnswer = m ? onLeave(m[1]) : { ok: false, error: "expected one line: leave, or leave NAME" };
      socket.end(JSON.stringify(answer) + "\n");
    });
  });
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(file, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  await fs.chmod(file, 0o600);
  server.unref();
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      void fs.rm(file, { force: true });
    });
}

/**
 * Ask the agent listening on `file` to leave (only if it is `name`, when given); rejects with a
 * message saying what to check when none answers.
 */
export function requestLeave(file: string, name?: string, timeoutMs = 5000): Promise<LeaveAnswer> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path: file });
    let buf = "";
    s.setEncoding("utf8");
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no answer from the agent on ${file} within ${timeoutMs} ms`)));
    s.on("connect", () => s.write(name ? `leave ${name}\n` : "leave\n"));
    s.on("data", (c: string) => (buf += c));
    s.on("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "ENOENT" || err.code === "ECONNREFUSED"
          ? new Error(`no agent is running: nothing answers on ${file} (is autoscaler agent running with this --config?)`)
          : err.code === "EACCES"
            ? new Error(`permission denied on ${file}: run as the agent's user (or root)`)
            : err,
      ),
    );
    s.on("close", (hadError) => {
      if (hadError) return;
      try {
        resolve(JSON.parse(buf) as LeaveAnswer);
      } catch {
        reject(new Error(`unreadable answer from the agent on ${file}`));
      }
    });
  });
}
