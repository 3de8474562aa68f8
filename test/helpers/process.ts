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

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI = path.join(REPO_ROOT, "bin", "autoscaler.js");

/** A temp folder removed by `cleanup`. */
export async function makeTempDir(prefix = "autoscaler-test-"): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** The result of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the real CLI (`bin/autoscaler.js`) with no standard input. */
export function runCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Wait until `check` returns a truthy value, polling; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, everyMs = 25): Promise<T> {
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
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Tracks what a test started so `cleanup` can stop it by pid and remove its folders. */
export class Scope {
  private readonly children: ChildProcess[] = [];
  private readonly servers: http.Server[] = [];
  private readonly dirs: string[] = [];

  async tempDir(prefix?: string): Promise<string> {
    const d = await makeTempDir(prefix);
    this.dirs.push(d);
    return d;
  }

  track(child: ChildProcess): ChildProcess {
    this.children.push(child);
    return child;
  }

  trackServer(server: http.Server): http.Server {
    this.servers.push(server);
    return server;
  }

  /** Stop every process (SIGTERM, then SIGKILL after 3 s) and server, remove every folder. */
  async cleanup(): Promise<void> {
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
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => { s.closeAllConnections?.(); s.close(() => r()); })));
    await Promise.all(this.dirs.map((d) => fs.rm(d, { recursive: true, force: true })));
    this.children.length = 0;
    this.servers.length = 0;
    this.dirs.length = 0;
  }
}

/** A real HTTP backend on 127.0.0.1 that answers every request with its own id, counting hits. */
export async function startBackend(scope: Scope, id: string): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    if (req.url !== "/health") hits++;
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(id);
  });
  scope.trackServer(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, hits: () => hits };
}
