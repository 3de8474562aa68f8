/**
 * Test helpers for real processes: temp folders, free loopback ports, the real CLI, real
 * HAProxy, real HTTP backends. Everything started here is stopped by its pid in `cleanup()`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { promises as fs } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { allowSecretsInOutput, checkRecordedOutputs, recordOutput } from "./secrets.js";

/** The repository's root folder. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** The real CLI entry point, run from the built dist. */
export const CLI = path.join(REPO_ROOT, "bin", "autoscaler.js");

/** A temp folder removed by `cleanup`. */
export async function makeTempDir(prefix = "autoscaler-test-"): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * Ports handed out below the kernel's ephemeral range (32768-60999 on Linux). Port 0 and every
 * outgoing connection's source port come from that range, so a port the kernel picked, freed and
 * handed to a daemon a moment later could meanwhile be a connection's source port, or another
 * worker's pick (a master once failed with EADDRINUSE that way). Here a port is random in
 * 20000-32767, never given twice by one process, and checked free by binding it.
 */
const PORT_LOW = 20_000;
const PORT_HIGH = 32_767;
const handedOut = new Set<number>();

/** Whether nothing listens on 127.0.0.1:port now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** A TCP port on 127.0.0.1 that is free now, and that no other caller in this process got. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW + 1));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await canBind(port)) return port;
  }
  throw new Error(`no free port in ${PORT_LOW}-${PORT_HIGH} after 200 tries`);
}

/** The result of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** How to run a child process: folder, extra environment, and a time limit after which it is killed. */
export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Written to the program's standard input, which is then closed (default: no standard input). */
  input?: string;
  /**
   * A secret the command prints on its standard output on purpose (`node-credential`): left out of
   * the secrets check there, and only there. A pattern for one the test cannot know before the
   * command prints it (`webhook add`'s URL): every match is left out.
   */
  shows?: string | RegExp;
}

/** Run the real CLI (`bin/autoscaler.js`) with no standard input. */
export function runCli(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return runProcess(process.execPath, [CLI, ...args], options);
}

/** Run any program (with no standard input unless `input` is given) and collect its output; killed (by its pid) after `timeoutMs` (30 s). */
export function runProcess(file: string, args: string[], options: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      recordOutput(
        `the output of ${path.basename(file)} ${args
          .map((a) => (a === CLI ? "autoscaler" : a))
          .join(" ")
          .slice(0, 200)}`,
        (options.shows === undefined
          ? stdout
          : typeof options.shows === "string"
            ? stdout.split(options.shows).join("<shown on purpose>")
            : stdout.replace(new RegExp(options.shows.source, "g"), "<shown on purpose>")) + stderr,
      );
      resolve({ code, stdout, stderr });
    });
  });
}

/** Resolve after `ms` milliseconds: the one sleep of the tests (a wait for an observable event is better where there is one). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until `check` returns a truthy value, polling; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`);
    await sleep(everyMs);
  }
}

/**
 * Resolve with the first line of a child's output that matches `pattern`. Fails at once, with
 * the output so far and how the child ended, when the child exits without printing it, and
 * shows the output as it was at the deadline when it times out.
 */
export async function waitForLine(child: ChildProcess, log: () => string, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  const found = () =>
    log()
      .split(/\r?\n/)
      .find((l) => pattern.test(l));
  for (;;) {
    const line = found();
    if (line !== undefined) return line;
    const ended = child.exitCode !== null ? `exit code ${child.exitCode}` : child.signalCode !== null ? `signal ${child.signalCode}` : undefined;
    if (ended) {
      // "exit" may come before the last output: wait for the pipes to close (bounded).
      await Promise.race([new Promise((r) => child.once("close", r)), sleep(2000)]);
      const late = found();
      if (late !== undefined) return late;
      throw new Error(`the process ended (${ended}) without a line matching ${pattern}; its output:\n${log().slice(-3000)}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for a line matching ${pattern}; output so far:\n${log().slice(-3000)}`);
    await sleep(25);
  }
}

/** Tracks what a test started so `cleanup` can stop it by pid and remove its folders. */
export class Scope {
  private readonly children: ChildProcess[] = [];
  private readonly servers: { server: net.Server; sockets: Set<net.Socket> }[] = [];
  private readonly dirs: string[] = [];
  private readonly hooks: (() => Promise<void> | void)[] = [];

  /** A temp folder removed in `cleanup`. */
  async tempDir(prefix?: string): Promise<string> {
    const d = await makeTempDir(prefix);
    this.dirs.push(d);
    return d;
  }

  /** Stop this child process by its pid in `cleanup`. */
  track(child: ChildProcess): ChildProcess {
    this.children.push(child);
    return child;
  }

  /**
   * Close this server (HTTP or plain TCP) in `cleanup`, destroying every connection it still has:
   * `close` alone waits for them, and a test server that holds its clients on purpose would hang it.
   */
  trackServer<S extends net.Server>(server: S): S {
    const sockets = new Set<net.Socket>();
    server.on("connection", (socket: net.Socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    });
    this.servers.push({ server, sockets });
    return server;
  }

  /**
   * Run `hook` first in `cleanup`, before children are stopped and folders removed: for processes
   * the scope did not spawn itself, such as the fake cloud's detached nodes. Hooks run newest first;
   * one that throws does not stop the rest, and its error is thrown once everything is cleaned.
   */
  onCleanup(hook: () => Promise<void> | void): void {
    this.hooks.push(hook);
  }

  /** Let outputs checked at this scope's cleanup contain the suite's secrets (test/helpers/secrets.ts): only for a test that shows one on purpose. */
  allowSecretsInOutput(): void {
    allowSecretsInOutput(this);
  }

  /**
   * Run the cleanup hooks, stop every process (SIGTERM, then SIGKILL after 3 s) and server, remove
   * every folder; then fail when an output seen since the last check holds a secret of the suite.
   */
  async cleanup(): Promise<void> {
    const hookErrors: unknown[] = [];
    for (const hook of this.hooks.splice(0).reverse()) {
      try {
        await hook();
      } catch (err) {
        hookErrors.push(err);
      }
    }
    await Promise.all(
      this.children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return resolve();
            const timer = setTimeout(() => {
              try {
                process.kill(c.pid!, "SIGKILL");
              } catch {
                // gone
              }
            }, 3000);
            c.once("exit", () => {
              clearTimeout(timer);
              resolve();
            });
            try {
              process.kill(c.pid, "SIGTERM");
            } catch {
              clearTimeout(timer);
              resolve();
            }
          }),
      ),
    );
    await Promise.all(
      this.servers.map(
        ({ server, sockets }) =>
          new Promise<void>((r) => {
            server.close(() => r());
            for (const socket of sockets) socket.destroy();
          }),
      ),
    );
    await Promise.all(this.dirs.map((d) => fs.rm(d, { recursive: true, force: true })));
    this.children.length = 0;
    this.servers.length = 0;
    this.dirs.length = 0;
    if (hookErrors.length > 0) throw hookErrors[0];
    const leaks = checkRecordedOutputs(this);
    if (leaks.length > 0) throw new Error(`a secret leaked into what the suite saw (test/helpers/secrets.ts):\n  ${leaks.join("\n  ")}`);
  }
}

/** A running test backend: its port, and how many client requests (not health checks) it answered. */
export interface Backend {
  port: number;
  hits: () => number;
}

/**
 * A real HTTP backend on `host` (127.0.0.1 unless given) that answers every request with its own id.
 * It counts only requests for paths other than `/` and `/health`: the shipped template's health
 * check is `GET /`, so tests send their own requests to another path such as `/hit`.
 */
export async function startBackend(scope: Scope, id: string, host = "127.0.0.1"): Promise<Backend> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    if (req.url !== "/" && req.url !== "/health") hits++;
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(id);
  });
  scope.trackServer(server);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { port: (server.address() as net.AddressInfo).port, hits: () => hits };
}

/** Every regular file and folder under `dir`: relative path → file text (folders as "<dir>"); sockets are skipped. */
export async function snapshotDir(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (sub: string): Promise<void> => {
    for (const e of await fs.readdir(path.join(dir, sub), { withFileTypes: true })) {
      const rel = path.join(sub, e.name);
      if (e.isDirectory()) {
        out[rel + "/"] = "<dir>";
        await walk(rel);
      } else if (e.isFile()) {
        out[rel] = await fs.readFile(path.join(dir, rel), "utf8");
      }
    }
  };
  await walk("");
  return out;
}

/** Every descendant of `pid` (children, grandchildren, …), read from /proc/<pid>/stat. */
export async function descendants(pid: number): Promise<number[]> {
  const parentOf = new Map<number, number>();
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await fs.readFile(`/proc/${entry}/stat`, "utf8");
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ")".
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of parentOf) {
      if (parent === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}
