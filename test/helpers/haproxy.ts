/**
 * A real HAProxy for tests: a one-folder installation made with the real `autoscaler init`,
 * the shipped template bound to a free loopback port instead of :80, and HAProxy run in
 * master-worker mode with its master CLI in the folder. Never touches /etc or port 80.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { freePort, runCli, waitFor, type Scope } from "./process.js";
import { localTemplate } from "../../packages/cli/src/local.js";
import { KNOWN_AWS_SETTINGS, registerSecret } from "./secrets.js";

/** A test installation: its folder, ini, and the port HAProxy's frontend listens on. */
export interface Installation {
  dir: string;
  ini: string;
  frontendPort: number;
  masterSocket: string;
  haproxyConfig: string;
  /** The master's state_dir (its control socket is there): `state` in the folder unless a setting moved it. */
  stateDir: string;
  /** The CLI with --config set. */
  cli: (...args: string[]) => ReturnType<typeof runCli>;
}

/**
 * Make a folder installation: `autoscaler init` with every path relative to the folder, then
 * the template made safe for a test machine (loopback port, no chroot/user switch, sockets in the folder).
 */
export async function makeInstallation(scope: Scope, extraSettings: string[] = []): Promise<Installation> {
  const dir = await scope.tempDir("autoscaler-inst-");
  const ini = path.join(dir, "autoscaler.ini");
  const frontendPort = await freePort();
  const settings = [
    // The suite's known fake AWS keys (test/helpers/secrets.ts); a test's own settings come later and win.
    ...KNOWN_AWS_SETTINGS,
    "haproxy.config=haproxy.cfg",
    "haproxy.master_socket=master.sock",
    "haproxy.reload_command=kill -USR2 $(cat haproxy.pid)",
    // The reload path unless a test says otherwise ("haproxy.runtime_socket=admin.sock"): never the machine's /run/haproxy/admin.sock.
    "haproxy.runtime_socket=",
    "master.state_dir=state",
    // Test nodes live on loopback and in the suite's namespaces (10.213.X.0/24): list them, as
    // loopback is never a backend by default.
    "master.node_networks=127.0.0.0/8,10.0.0.0/8",
    // No cloud here: tests that scale set their own launch script (test/helpers/cloud.ts).
    "machine.scale_up_command=",
    "scaling.min_nodes=0",
    ...extraSettings,
  ];
  const init = await runCli(["init", "--config", ini, ...settings.flatMap((s) => ["--set", s])]);
  if (init.code !== 0) throw new Error(`autoscaler init failed: ${init.stderr}`);
  // init's random token, or the test's own: no output may show it.
  const token = /^token = (.*)$/m.exec(await fs.readFile(ini, "utf8"))?.[1];
  if (token) registerSecret(token, "an installation's master.token");
  await adaptTemplateForTest(path.join(dir, "haproxy.cfg.tmpl"), frontendPort, dir);
  const stateSetting = settings
    .filter((s) => s.startsWith("master.state_dir="))
    .at(-1)!
    .slice("master.state_dir=".length);
  return {
    dir,
    ini,
    frontendPort,
    masterSocket: path.join(dir, "master.sock"),
    haproxyConfig: path.join(dir, "haproxy.cfg"),
    stateDir: path.resolve(dir, stateSetting),
    cli: (...args: string[]) => runCli([...args, "--config", ini]),
  };
}

/** The shipped template with only what a test machine needs changed, as `init --local` does it (packages/cli/src/local.ts): the bind port, chroot/user/log, the admin socket and server-state file paths. */
export async function adaptTemplateForTest(file: string, port: number, dir: string): Promise<void> {
  await fs.writeFile(file, localTemplate(await fs.readFile(file, "utf8"), port, dir));
}

/** Start HAProxy in master-worker mode on the installation's haproxy.cfg (which must exist); returns once it serves and its master CLI answers. */
export async function startHaproxy(scope: Scope, inst: Installation): Promise<{ pid: number; log: () => string }> {
  let log = "";
  const child = spawn("haproxy", ["-W", "-S", inst.masterSocket, "-f", inst.haproxyConfig, "-p", path.join(inst.dir, "haproxy.pid")], {
    cwd: inst.dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  scope.track(child);
  child.stdout!.on("data", (b: Buffer) => (log += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (log += b.toString()));
  await waitFor("HAProxy to accept connections", () => canConnect(inst.frontendPort), 10_000);
  await waitFor("HAProxy's pid file", async () => (await fs.readFile(path.join(inst.dir, "haproxy.pid"), "utf8")).trim() !== "", 5_000);
  // The frontend may accept before the master CLI does; reloads are confirmed there, so wait for it too.
  await waitFor("HAProxy's master CLI to list a worker", async () => (await showProc(inst)).workers.length > 0, 5_000);
  return { pid: child.pid!, log: () => log };
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function canConnect(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** One process line of HAProxy's `show proc`, read independently of the product's own parser. */
export interface ProcEntry {
  pid: number;
  type: string;
  reloads: number;
}

/** Send one command to the installation's master CLI (`-S` socket) and return the whole answer. */
export function masterCli(inst: Installation, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = "";
    const s = net.createConnection({ path: inst.masterSocket });
    s.setTimeout(3000, () => s.destroy(new Error(`no answer to "${command}" on ${inst.masterSocket}`)));
    s.on("connect", () => s.end(command + "\n"));
    s.on("data", (b: Buffer) => (answer += b.toString()));
    s.on("error", reject);
    s.on("close", (hadError) => {
      if (!hadError) resolve(answer);
    });
  });
}

/** The master CLI's `show proc`: the master line and the current and old worker lines. */
export async function showProc(inst: Installation): Promise<{ master: ProcEntry; workers: ProcEntry[] }> {
  const text = await masterCli(inst, "show proc");
  const entries = [...text.matchAll(/^(\d+)\s+(master|worker)\s+(\d+)/gm)].map((m) => ({ pid: Number(m[1]), type: m[2]!, reloads: Number(m[3]) }));
  const master = entries.find((e) => e.type === "master");
  if (!master) throw new Error(`no master line in "show proc": ${text}`);
  return { master, workers: entries.filter((e) => e.type === "worker") };
}

/** The parent pid of a live process, from /proc; undefined when the process is gone. */
export async function parentPid(pid: number): Promise<number | undefined> {
  try {
    const status = await fs.readFile(`/proc/${pid}/status`, "utf8");
    return Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
  } catch {
    return undefined;
  }
}

const SECTION = /^\s*(global|defaults|frontend|backend|listen|peers|resolvers|userlist|program|cache|ring|http-errors|mailers)(\s|$)/;

/** The `server` lines of one backend section of a HAProxy config text, trimmed (indented or not, as HAProxy allows). */
export function serverLines(configText: string, backend = "autoscaler"): string[] {
  const lines = configText.split("\n");
  const start = lines.findIndex((l) => l.trim() === `backend ${backend}`);
  if (start < 0) return [];
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (SECTION.test(line)) break;
    if (/^\s*server\s/.test(line)) out.push(line.trim());
  }
  return out;
}

/** One backend of the running HAProxy, as `show servers state` gives it. */
export interface RunningServer {
  name: string;
  /** srv_op_state: 0 down, 2 up. */
  opState: number;
  /** srv_admin_state: a bit field; 0x08 is drain. */
  adminState: number;
}

/** The servers of the `autoscaler` backend that the running HAProxy has, asked on the installation's admin socket (`<dir>/admin.sock`), not read from the file. */
export function showServersState(dir: string): Promise<RunningServer[]> {
  return new Promise((resolve, reject) => {
    let answer = "";
    const s = net.createConnection({ path: path.join(dir, "admin.sock") });
    s.setTimeout(3000, () => s.destroy(new Error("no answer on admin.sock")));
    s.on("connect", () => s.end("show servers state autoscaler\n"));
    s.on("data", (b: Buffer) => (answer += b.toString()));
    s.on("error", reject);
    s.on("close", (hadError) => {
      if (hadError) return;
      // Data lines: "be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state …"
      const rows = answer
        .split("\n")
        .filter((l) => /^\d+ autoscaler /.test(l))
        .map((l) => l.split(" "));
      resolve(rows.map((r) => ({ name: r[3]!, opState: Number(r[5]), adminState: Number(r[6]) })));
    });
  });
}
