/**
 * Helpers for tests that attack or probe a running master and sshd from outside: raw loopback
 * TCP connections to the master's agent port, the real OpenSSH client, a web app whose health
 * check fails until a flag file exists, and readers for the daemons' JSON log lines and for every
 * file of an installation. Everything started here is stopped by its pid or closed by the scope.
 */
import { execFileSync, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { type Scope } from "./process.js";
import { TEST_SSH_USER, type Sshd } from "./sshd.js";

/** What one raw connection to the master saw. */
export interface ProbeResult {
  /** Our side's port: the master logs it as `peer=127.0.0.1:<localPort>`. */
  localPort: number;
  /** True when the master ended or reset the connection before we closed it. */
  closedByMaster: boolean;
  /** Everything the master sent us. */
  received: string;
}

/** Options for {@link probeMaster}. */
export interface ProbeOptions {
  /** Wait (up to `timeoutMs`) for the master to close the connection; otherwise close it ourselves right after writing. */
  waitForClose?: boolean;
  /** Stop waiting once what the master sent matches this (then close ourselves). */
  until?: RegExp;
  timeoutMs?: number;
  /** Called once the TCP connection is up (before `data` is written). */
  onConnect?: () => void;
}

/**
 * Open one TCP connection to 127.0.0.1:port, write `data`, and either wait for the master to
 * close it (bounded by `timeoutMs`) or close it ourselves. Never throws for a reset.
 */
export function probeMaster(port: number, data: Buffer | string, options: ProbeOptions = {}): Promise<ProbeResult> {
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: "127.0.0.1", port });
    let received = "";
    let localPort = 0;
    let closedByUs = false;
    let closedByMaster = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ localPort, closedByMaster, received });
    };
    const closeOurselves = () => {
      if (closedByMaster) return finish();
      closedByUs = true;
      socket.destroy();
      finish();
    };
    const timer = setTimeout(closeOurselves, timeoutMs);
    socket.on("connect", () => {
      localPort = socket.localPort ?? 0;
      options.onConnect?.();
      socket.write(data, () => {
        if (!options.waitForClose && !options.until) closeOurselves();
      });
    });
    socket.on("data", (b: Buffer) => {
      received += b.toString();
      if (options.until?.test(received)) closeOurselves();
    });
    const byMaster = () => {
      if (!closedByUs && localPort !== 0) closedByMaster = true;
      if (!closedByUs) {
        socket.destroy();
        finish();
      }
    };
    socket.on("end", byMaster);
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (localPort === 0) {
        clearTimeout(timer);
        done = true;
        reject(err);
        return;
      }
      byMaster();
    });
    socket.on("close", byMaster);
  });
}

/**
 * Open `count` connections at once; each sends `data` (may be empty) and stays open until every
 * one is connected, then all are destroyed. Resolves with how many connected (bounded by `timeoutMs`).
 */
export async function floodMaster(port: number, count: number, data: (i: number) => string, timeoutMs = 20_000): Promise<number> {
  const sockets: net.Socket[] = [];
  const deadline = Date.now() + timeoutMs;
  try {
    const connected = await Promise.all(
      Array.from(
        { length: count },
        (_, i) =>
          new Promise<boolean>((resolve) => {
            const s = net.createConnection({ host: "127.0.0.1", port });
            sockets.push(s);
            const t = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
            s.on("error", () => {
              clearTimeout(t);
              resolve(false);
            });
            s.on("connect", () => {
              const payload = data(i);
              if (payload === "") {
                clearTimeout(t);
                resolve(true);
              } else {
                s.write(payload, () => {
                  clearTimeout(t);
                  resolve(true);
                });
              }
            });
          }),
      ),
    );
    return connected.filter(Boolean).length;
  } finally {
    for (const s of sockets) s.destroy();
  }
}

/** True when some line of `bytes` (split at \n, UTF-8 decoded, a trailing \r dropped) is not blank. */
export function hasNonBlankLine(bytes: Uint8Array): boolean {
  const buf = Buffer.from(bytes);
  let start = 0;
  for (;;) {
    const nl = buf.indexOf(0x0a, start);
    const piece = buf.subarray(start, nl < 0 ? buf.length : nl);
    if (piece.toString("utf8").replace(/\r$/, "").trim() !== "") return true;
    if (nl < 0) return false;
    start = nl + 1;
  }
}

/** Every JSON object line of a daemon's log (the daemons log JSON lines when stdout is a pipe). */
export function jsonLogLines(log: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partly written last line
    }
  }
  return out;
}

/** Every regular file under `dir` (recursively) as raw bytes, keyed by relative path; sockets are skipped. */
export async function readAllFiles(dir: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (sub: string): Promise<void> => {
    for (const e of await fs.readdir(path.join(dir, sub), { withFileTypes: true })) {
      const rel = path.join(sub, e.name);
      if (e.isDirectory()) await walk(rel);
      else if (e.isFile() && !skip(rel)) out.set(rel, await fs.readFile(path.join(dir, rel)));
    }
  };
  await walk("");
  return out;
}

/** The hosts.d folder of an installation as name → bytes (only `*.json`, no in-flight dot files). */
export async function hostsDir(instDir: string): Promise<Record<string, string>> {
  const dir = path.join(instDir, "hosts.d");
  const out: Record<string, string> = {};
  for (const f of (await fs.readdir(dir)).sort()) {
    if (f.startsWith(".")) continue;
    out[f] = await fs.readFile(path.join(dir, f), "utf8");
  }
  return out;
}

/** GET a URL's body as text, bounded by a timeout; throws on a non-2xx answer. */
export async function fetchText(url: string, timeoutMs = 3000): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${text}`);
  return text;
}

/** Every "agent connection closed" line of a master's log, by the peer's (our probe's) local port: the reason, and the node when the master named one. */
export function closedByPeer(masterLog: string): Map<number, { reason: string; node?: string }[]> {
  const out = new Map<number, { reason: string; node?: string }[]>();
  for (const l of jsonLogLines(masterLog)) {
    if (!String(l.msg).startsWith("agent connection closed")) continue;
    const port = Number(/^127\.0\.0\.1:(\d+)$/.exec(String(l.peer))?.[1]);
    out.set(port, [...(out.get(port) ?? []), { reason: String(l.reason), ...(l.node ? { node: String(l.node) } : {}) }]);
  }
  return out;
}

/** `autoscaler_connections_refused_total` from a master's /metrics, by reason. */
export async function refusedByReason(metricsPort: number): Promise<Record<string, number>> {
  const text = await fetchText(`http://127.0.0.1:${metricsPort}/metrics`);
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^autoscaler_connections_refused_total\{reason="([a-z_]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/** The SHA256 fingerprint of a public key file, as the real `ssh-keygen -lf` prints it. */
export function sshFingerprint(publicFile: string): string {
  const out = execFileSync("ssh-keygen", ["-lf", publicFile]).toString();
  const fp = /SHA256:[A-Za-z0-9+/]+/.exec(out)?.[0];
  if (!fp) throw new Error(`no SHA256 fingerprint in ssh-keygen output: ${out}`);
  return fp;
}

/** The result of one run of the real OpenSSH client. */
export interface SshResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when our kill timer ended it. */
  timedOut: boolean;
}

/** Options for {@link runSsh}. */
export interface SshRunOptions {
  /** Written to ssh's standard input. */
  input?: string;
  /** Keep standard input open until stdout matches this (then close it); otherwise close it after `input`. */
  closeInputWhen?: RegExp;
  /** Stop it (SIGTERM by pid) once its standard error matches this: for long-running `ssh -N`. */
  stopWhenStderr?: RegExp;
  /** Kill (by pid) after this long; default 15 s. */
  timeoutMs?: number;
}

/**
 * The common options for the real `ssh` client logging in to a test sshd with `keyFile`: no user
 * config, only this key, the sshd's host key trusted from `knownHostsFile`, no prompts, a bounded connect.
 */
export function sshBaseArgs(sshd: Sshd, keyFile: string, knownHostsFile: string): string[] {
  return [
    "-F",
    "/dev/null",
    "-i",
    keyFile,
    "-p",
    String(sshd.port),
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${knownHostsFile}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "ServerAliveInterval=5",
  ];
}

/** The `user@host` argument for a test sshd. */
export function sshDestination(sshd: Sshd): string {
  return `${TEST_SSH_USER}@${sshd.address}`;
}

/** Run the real `ssh` binary once, bounded by a kill timer; tracked by the scope in case the test ends first. */
export function runSsh(scope: Scope, args: string[], options: SshRunOptions = {}): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
    scope.track(child);
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdin.on("error", () => undefined); // ssh may exit before reading its input
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
      if (options.closeInputWhen?.test(stdout) && !child.stdin.writableEnded) child.stdin.end();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      if (options.stopWhenStderr?.test(stderr) && child.exitCode === null && child.pid) process.kill(child.pid, "SIGTERM");
    });
    if (options.input) child.stdin.write(options.input);
    if (!options.closeInputWhen) child.stdin.end();
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid) process.kill(child.pid, "SIGKILL");
    }, options.timeoutMs ?? 15_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** A TCP server on 127.0.0.1 that only counts the connections it accepts (the "other port" a node key must not reach). */
export async function startCountingServer(scope: Scope): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    s.destroy();
  });
  scope.trackServer(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections };
}

/**
 * A web app child process on address:port: `/health` answers 503 until `flagFile` exists, then
 * 200; every other path answers `name`. It writes its pid to `pidFile` (for `cpu_source = pid:`).
 */
export async function startGatedWebApp(
  scope: Scope,
  name: string,
  address: string,
  port: number,
  flagFile: string,
  pidFile: string,
): Promise<{ healthChecks: () => number }> {
  const program = `
    const fs = require("fs");
    fs.writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
    let checks = 0;
    require("http").createServer((q, r) => {
      if (q.url === "/health") {
        checks++;
        const ok = fs.existsSync(${JSON.stringify(flagFile)});
        console.log("health " + (ok ? 200 : 503) + " " + checks);
        r.writeHead(ok ? 200 : 503).end(ok ? "ok" : "not ready");
        return;
      }
      r.end(${JSON.stringify(name)});
    }).listen(${port}, ${JSON.stringify(address)}, () => console.log("listening"));`;
  const web = spawn(process.execPath, ["-e", program], { stdio: ["ignore", "pipe", "inherit"] });
  scope.track(web);
  let out = "";
  await new Promise<void>((resolve, reject) => {
    web.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("listening")) resolve();
    });
    web.once("exit", (code) => reject(new Error(`gated web app ${name} exited with ${code}`)));
  });
  return { healthChecks: () => (out.match(/^health /gm) ?? []).length };
}

/** A forged hello line: valid but for its token (none unless given), with fields overridden (`undefined` drops a field). */
export function forgedHello(fields: Record<string, unknown>): string {
  const base: Record<string, unknown> = {
    type: "hello",
    version: 1,
    name: "forged-1",
    address: "127.0.0.1",
    port: 8080,
    instance_id: "i-forged",
    agent_version: "0.0.0-forged",
    facts: { cores: 1, memory_bytes: 1024 },
  };
  const merged = { ...base, ...fields };
  for (const k of Object.keys(merged)) if (merged[k] === undefined) delete merged[k];
  return JSON.stringify(merged) + "\n";
}
