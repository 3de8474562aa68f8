/**
 * Whole proxies and nodes for tests, built the way an operator builds them: a proxy is a
 * folder installation (`autoscaler init`) with a real sshd, a real HAProxy and a real
 * `autoscaler master`; a node is a real web app plus a real `autoscaler agent` whose key the
 * proxy authorised with `autoscaler authorize-key`. Everything stops by pid in `scope.cleanup()`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { nodeCredential } from "@autoscaler/shared";
import { makeInstallation, startHaproxy, type Installation } from "./haproxy.js";
import { CLI, freePort, runCli, waitForLine, type Scope } from "./process.js";
import { KNOWN_AWS_SETTINGS, recordOutput, registerSecret } from "./secrets.js";
import { makeKeyPair, startSshd, TEST_SSH_USER, type KeyPair, type Sshd } from "./sshd.js";
import { status, type MasterStatus } from "./status.js";

/** A running daemon child with its collected output. */
export interface Daemon {
  child: ChildProcess;
  log: () => string;
  /** Resolves with the first output line matching `pattern`. */
  waitForLog: (pattern: RegExp, timeoutMs?: number) => Promise<string>;
}

/** Options for {@link startDaemon}: extra environment, a working folder, and a command prefix such as `ip netns exec NS`. */
export interface DaemonOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  wrap?: string[];
}

/** Start `autoscaler <args>` as a long-running child that the scope stops by pid. */
export function startDaemon(scope: Scope, args: string[], options: DaemonOptions = {}): Daemon {
  let log = "";
  const argv = [...(options.wrap ?? []), process.execPath, CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
  scope.track(child);
  child.stdout!.on("data", (b: Buffer) => (log += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (log += b.toString()));
  // AUTOSCALER_TEST_LOG_DIR=<folder> keeps every daemon's whole log there, for a failure that
  // needs more than the output the test prints (a replaced master's log is otherwise lost).
  const keepIn = process.env.AUTOSCALER_TEST_LOG_DIR;
  if (keepIn) {
    const file = path.join(keepIn, `${Date.now()}-${child.pid}-${args[0]}.log`);
    child.once("close", () => void fs.writeFile(file, `autoscaler ${args.join(" ")}\n${log}`).catch(() => undefined));
  }
  recordOutput(`the log of autoscaler ${args.join(" ").slice(0, 200)}`, () => log, scope);
  return {
    child,
    log: () => log,
    waitForLog: (pattern, timeoutMs) => waitForLine(child, () => log, pattern, timeoutMs),
  };
}

/** A test proxy box. */
export interface Proxy {
  inst: Installation;
  sshd: Sshd;
  masterPort: number;
  metricsPort: number;
  token: string;
  master: Daemon;
  startMaster: () => Promise<Daemon>;
  /** The master's status: {@link status} of helpers/status.ts, for this proxy. */
  status: () => Promise<MasterStatus>;
}

/** Options for a proxy: a shared token (several proxies), extra `--set` settings. */
export interface ProxyOptions {
  token?: string;
  settings?: string[];
}

/** Start a proxy on loopback: installation, sshd, HAProxy on the generated config, and the master. */
export async function startProxy(scope: Scope, options: ProxyOptions = {}): Promise<Proxy> {
  const masterPort = await freePort();
  const metricsPort = await freePort();
  const token = options.token ?? randomBytes(24).toString("base64url");
  registerSecret(token, "a proxy's master.token");
  const inst = await makeInstallation(scope, [
    `master.listen=127.0.0.1:${masterPort}`,
    `master.metrics_listen=127.0.0.1:${metricsPort}`,
    `master.token=${token}`,
    "scaling.node_timeout=3",
    ...(options.settings ?? []),
  ]);
  const sshd = await startSshd(scope, { masterPort });
  const gen = await inst.cli("generate");
  if (gen.code !== 0) throw new Error(`generate failed: ${gen.stderr}`);
  await startHaproxy(scope, inst);
  const startMaster = async () => {
    const d = startDaemon(scope, ["master", "--config", inst.ini, "--log-level", "debug"]);
    await d.waitForLog(/master started/, 30_000); // two integration files share two cores: a start can be slow, never wrong
    return d;
  };
  const proxy: Proxy = {
    inst,
    sshd,
    masterPort,
    metricsPort,
    token,
    master: await startMaster(),
    startMaster,
    status: () => status(inst),
  };
  return proxy;
}

/** A test web node. */
export interface TestNode {
  name: string;
  address: string;
  webPort: number;
  dir: string;
  ini: string;
  key: KeyPair;
  web: ChildProcess;
  agent: Daemon;
  startAgent: () => Daemon;
}

/** Options for a node: its name and loopback address, extra settings, whether to authorise its key. */
export interface NodeOptions {
  name: string;
  address?: string;
  settings?: string[];
  authorize?: boolean;
  startAgent?: boolean;
  /** More environment for the agent (AUTOSCALER_METADATA_URL, for one). */
  env?: Record<string, string>;
}

/** A web app child process on address:port that answers every request with `name`. */
export async function startWebApp(scope: Scope, name: string, address: string, port: number, dir: string): Promise<ChildProcess> {
  const pidFile = path.join(dir, "web.pid");
  const web = spawn(
    process.execPath,
    [
      "-e",
      `require("fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); require("http").createServer((q, r) => r.end(${JSON.stringify(name)})).listen(${port}, ${JSON.stringify(address)}, () => console.log("listening"))`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  scope.track(web);
  await new Promise<void>((resolve, reject) => {
    web.stdout!.once("data", () => resolve());
    web.once("exit", (code) => reject(new Error(`web app ${name} exited with ${code}`)));
  });
  return web;
}

/**
 * The `--set` values of a node's ini that reports to `proxies` (the first one's token and
 * master port), with its key as `node_key` and its known_hosts as `known_hosts` beside the ini.
 */
export function agentSettings(proxies: Proxy[], agent: { name: string; address: string; port: number; instanceId?: string; cpuSource: string }): string[] {
  const first = proxies[0]!;
  // Each node its own credential, as `autoscaler node-credential` makes it (master.token stays for the weaker mode's tests).
  const credential = nodeCredential(first.token, agent.name);
  registerSecret(credential, `${agent.name}'s node credential`);
  return [
    `agent.credential=${credential}`,
    `haproxy.servers=${proxies.map((p) => `${p.sshd.address}:${p.sshd.port}`).join(",")}`,
    `haproxy.ssh_command=ssh -i node_key ${TEST_SSH_USER}@$HOST`,
    "haproxy.known_hosts=known_hosts",
    `master.token=${first.token}`,
    `master.listen=127.0.0.1:${first.masterPort}`,
    "master.metrics_listen=",
    "master.state_dir=state",
    `agent.name=${agent.name}`,
    `agent.address=${agent.address}`,
    `agent.port=${agent.port}`,
    `agent.instance_id=${agent.instanceId ?? `i-${agent.name}`}`,
    "agent.interval=1",
    `agent.cpu_source=${agent.cpuSource}`,
  ];
}

/**
 * A node's side of the SSH trust with `proxies`, in `dir`: a key pair `node_key`, authorised on
 * each proxy (unless `authorize` is false) with the line `authorize-key` prints, and
 * `known_hosts` with each proxy's host key.
 */
export async function trustProxies(dir: string, proxies: Proxy[], authorize = true): Promise<KeyPair> {
  const key = makeKeyPair(dir, "node_key");
  if (authorize) {
    for (const p of proxies) {
      const line = await runCli(["authorize-key", "--line-only", key.publicFile, "--config", p.inst.ini]);
      if (line.code !== 0) throw new Error(`authorize-key failed: ${line.stderr}`);
      await fs.appendFile(p.sshd.authorizedKeysFile, line.stdout);
    }
  }
  await fs.writeFile(path.join(dir, "known_hosts"), proxies.map((p) => p.sshd.knownHostsLine).join("\n") + "\n");
  return key;
}

/**
 * Start a node reporting to `proxies`: a key pair (authorised on each proxy with the line
 * `authorize-key` prints), known_hosts with each proxy's host key, a web app, and the agent.
 */
export async function startNode(scope: Scope, proxies: Proxy[], options: NodeOptions): Promise<TestNode> {
  const dir = await scope.tempDir(`autoscaler-node-${options.name}-`);
  const address = options.address ?? "127.0.0.1";
  const webPort = await freePort();
  const key = await trustProxies(dir, proxies, options.authorize !== false);
  const ini = path.join(dir, "autoscaler.ini");
  const settings = [
    ...KNOWN_AWS_SETTINGS,
    ...agentSettings(proxies, { name: options.name, address, port: webPort, cpuSource: "pid:web.pid" }),
    ...(options.settings ?? []),
  ];
  const init = await runCli(["init", "--config", ini, ...settings.flatMap((s) => ["--set", s])]);
  if (init.code !== 0) throw new Error(`node init failed: ${init.stderr}`);
  const web = await startWebApp(scope, options.name, address, webPort, dir);
  const startAgent = () => startDaemon(scope, ["agent", "--config", ini, "--log-level", "debug"], { env: options.env ?? {} });
  return { name: options.name, address, webPort, dir, ini, key, web, agent: options.startAgent === false ? (undefined as never) : startAgent(), startAgent };
}

/** GET http://127.0.0.1:port/ through HAProxy and return the body, or undefined on any failure. */
export async function getThrough(port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}
