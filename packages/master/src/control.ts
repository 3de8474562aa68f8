/**
 * The control socket: a Unix socket in state_dir (mode 0600) that `autoscaler status` and the
 * other operator commands talk to. One JSON line in, one JSON line out.
 */
import { promises as fs } from "node:fs";
import net from "node:net";
import { errnoCode } from "@autoscaler/shared";
import { createStateStore } from "./state-store.js";

/** The control socket's path inside a state_dir. */
export function controlSocketPath(stateDir: string): string {
  return `${stateDir}/control.sock`;
}

/** A request handler: gets the parsed request, returns the answer. */
export type ControlHandler = (request: { cmd: string; [k: string]: unknown }) => Promise<unknown>;

async function isAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Listen on the control socket. Refuses to start when another master answers on it; removes a stale one. */
export async function startControlServer(path: string, handler: ControlHandler): Promise<net.Server> {
  try {
    await fs.lstat(path);
    if (await isAlive(path)) throw new Error(`another master is running: it answers on ${path}`);
    await fs.unlink(path);
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
  }
  const server = net.createServer((socket) => {
    let buf = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > 64 * 1024) return socket.destroy();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      let request: { cmd: string };
      try {
        request = JSON.parse(line) as { cmd: string };
        if (typeof request?.cmd !== "string") throw new Error("no cmd");
      } catch {
        socket.end(JSON.stringify({ ok: false, error: 'expected one JSON line such as {"cmd":"status"}' }) + "\n");
        return;
      }
      handler(request)
        .then((answer) => socket.end(JSON.stringify({ ok: true, result: answer }) + "\n"))
        .catch((err: Error) => socket.end(JSON.stringify({ ok: false, error: err.message }) + "\n"));
    });
    socket.on("error", () => undefined);
  });
  const oldMask = process.umask(0o177); // the socket file is created 0600
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  await fs.chmod(path, 0o600);
  return server;
}

const closedWithoutAnswer = (path: string) => new Error(`the master closed ${path} without answering (it may have stopped); try again`);

/** Send one request to a running master and return its result; throws with a helpful message when none runs. */
export function callControl(path: string, request: { cmd: string; [k: string]: unknown }, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path });
    let buf = "";
    const timer = setTimeout(() => s.destroy(new Error(`no answer from the master on ${path} within ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding("utf8");
    s.on("connect", () => s.write(JSON.stringify(request) + "\n"));
    s.on("data", (c: string) => (buf += c));
    s.on("error", (err) => {
      clearTimeout(timer);
      const code = errnoCode(err);
      reject(
        code === "ENOENT" || code === "ECONNREFUSED"
          ? new Error(`no master is running: nothing answers on ${path} (start it with "autoscaler master", or check [master] state_dir)`)
          : code === "EACCES"
            ? new Error(`permission denied on ${path}: the control socket is mode 0600; run as the master's user`)
            : code === "ECONNRESET" || code === "EPIPE"
              ? // A master killed (or stopping) mid-request may reset the connection rather than close it.
                closedWithoutAnswer(path)
              : err,
      );
    });
    s.on("close", (hadError) => {
      clearTimeout(timer);
      if (hadError) return; // "error" has rejected
      // A master killed (or stopping) mid-request closes without an answer: say so, never hang.
      if (!buf) return reject(closedWithoutAnswer(path));
      try {
        const answer = JSON.parse(buf) as { ok: boolean; result?: unknown; error?: string };
        if (answer.ok) resolve(answer.result);
        else reject(new Error(answer.error ?? "the master refused the request"));
      } catch {
        reject(new Error(`unreadable answer from ${path}`));
      }
    });
  });
}

/**
 * `pause` or `resume` with no master running (before the first start, say): state.json is
 * rewritten while this process holds the control socket, so no master starts on this state_dir
 * meanwhile (one that tries finds it in use and exits; its service restarts it). The master
 * reads the flag at start. Returns whether anything changed.
 */
export async function setPausedWithoutMaster(stateDir: string, paused: boolean): Promise<boolean> {
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const server = await startControlServer(controlSocketPath(stateDir), () =>
    Promise.reject(new Error("autoscaler pause or resume is rewriting state.json (no master runs yet); try again")),
  );
  try {
    const store = createStateStore(stateDir);
    const state = await store.load();
    if (state.paused === paused) return false;
    await store.save({ ...state, paused });
    return true;
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
