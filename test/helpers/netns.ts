/**
 * Network namespaces for tests that need several proxy boxes on one machine: a bridge in the
 * root namespace (the web nodes' side) and one namespace per proxy, each joined to the bridge
 * by a veth pair, all inside 10.213.X.0/24. A proxy in a namespace is built like the loopback
 * one in cluster.ts (a folder installation, a real sshd, HAProxy and master), but every
 * process runs under `ip netns exec NS`, which execs, so the child's pid is the process itself
 * and the scope stops it by that pid. `remove()` deletes every namespace, veth and bridge made.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { startDaemon, type Daemon, type Proxy } from "./cluster.js";
import { canConnect, makeInstallation, showProc, type Installation } from "./haproxy.js";
import { runProcess, waitFor, type Scope } from "./process.js";
import { startSshd } from "./sshd.js";
import { status } from "./status.js";

const run = promisify(execFile);

/** Run `ip …` and fail with its stderr. */
async function ip(...args: string[]): Promise<void> {
  try {
    await run("ip", args);
  } catch (err) {
    throw new Error(`ip ${args.join(" ")} failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }
}

/** One namespace on the test network, with its address on the bridge's subnet. */
export interface Namespace {
  name: string;
  address: string;
  /** The command prefix that runs a program inside it. */
  wrap: string[];
}

/** A bridge with `hostAddress` in the root namespace, and namespaces attached to it. */
export interface TestNetwork {
  prefix: string;
  subnet: string;
  bridge: string;
  hostAddress: string;
  namespaces: Namespace[];
  /** Delete every namespace, veth and the bridge; safe to call twice and after a partial setup. */
  remove: () => Promise<void>;
}

/** The third octets of 10.213.X.0/24 already on some interface of the root namespace. */
async function usedSubnets(): Promise<Set<number>> {
  const { stdout } = await run("ip", ["-4", "-o", "addr", "show"]);
  return new Set([...stdout.matchAll(/inet 10\.213\.(\d+)\./g)].map((m) => Number(m[1])));
}

/**
 * Make the bridge (10.213.X.1/24 in the root namespace) and `count` namespaces at
 * 10.213.X.2, .3, …, each with `lo` up. Names start with "asT" and a random tag, and X is a
 * subnet no interface uses yet, so parallel runs never collide. On failure everything made
 * so far is removed before the error is thrown.
 */
export async function createNetwork(count: number): Promise<TestNetwork> {
  const prefix = `asT${randomBytes(3).toString("hex")}`;
  const used = await usedSubnets();
  let x = randomInt(1, 255);
  for (let i = 0; used.has(x) && i < 255; i++) x = (x % 254) + 1;
  const subnet = `10.213.${x}`;
  const bridge = `${prefix}br`;
  const made = { bridge: false, namespaces: [] as string[], links: [] as string[] };
  let removed = false;
  const remove = async () => {
    if (removed) return;
    removed = true;
    const problems: string[] = [];
    const attempt = async (...args: string[]) => ip(...args).catch((err: Error) => void problems.push(err.message));
    // Anything still running in a namespace was started there by the test (say an sshd child
    // whose client vanished): stop it by its pid before the namespace goes.
    for (const ns of made.namespaces) {
      const { stdout } = await run("ip", ["netns", "pids", ns]).catch(() => ({ stdout: "" }));
      for (const pid of stdout.split("\n").filter((l) => /^\d+$/.test(l.trim()))) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // already gone
        }
      }
      await attempt("netns", "del", ns);
    }
    // A veth pair goes with its namespace end; delete the root end too in case the move failed.
    // The kernel destroys the pair asynchronously after `netns del`, so the root end may vanish
    // between the check and the delete: "Cannot find device" or "No such device" then means it is already gone.
    for (const link of made.links) {
      if (
        await run("ip", ["link", "show", link]).then(
          () => true,
          () => false,
        )
      ) {
        await ip("link", "del", link).catch((err: Error) => {
          if (!/Cannot find device|No such device/.test(err.message)) problems.push(err.message);
        });
      }
    }
    if (made.bridge) await attempt("link", "del", bridge);
    if (problems.length > 0) throw new Error(`cleaning up the test network ${prefix}: ${problems.join("; ")}`);
  };
  const namespaces: Namespace[] = [];
  try {
    await ip("link", "add", bridge, "type", "bridge");
    made.bridge = true;
    await ip("addr", "add", `${subnet}.1/24`, "dev", bridge);
    await ip("link", "set", bridge, "up");
    for (let i = 0; i < count; i++) {
      const letter = String.fromCharCode(97 + i);
      const name = `${prefix}${letter}`;
      const outer = `${prefix}${letter}0`;
      const inner = `${prefix}${letter}1`;
      const address = `${subnet}.${i + 2}`;
      await ip("netns", "add", name);
      made.namespaces.push(name);
      await ip("link", "add", outer, "type", "veth", "peer", "name", inner);
      made.links.push(outer);
      await ip("link", "set", inner, "netns", name);
      await ip("link", "set", outer, "master", bridge);
      await ip("link", "set", outer, "up");
      await ip("-n", name, "link", "set", "lo", "up");
      await ip("-n", name, "addr", "add", `${address}/24`, "dev", inner);
      await ip("-n", name, "link", "set", inner, "up");
      namespaces.push({ name, address, wrap: ["ip", "netns", "exec", name] });
    }
  } catch (err) {
    await remove().catch(() => undefined);
    throw err;
  }
  return { prefix, subnet, bridge, hostAddress: `${subnet}.1`, namespaces, remove };
}

/** Start `autoscaler <args>` inside a namespace as a long-running child that the scope stops by pid. */
export function startNsDaemon(scope: Scope, ns: Namespace, args: string[], cwd?: string): Daemon {
  return startDaemon(scope, args, { wrap: ns.wrap, ...(cwd ? { cwd } : {}) });
}

/** Start HAProxy (master-worker, master CLI in the folder) inside a namespace; returns once its frontend on the namespace address serves. */
export async function startNsHaproxy(scope: Scope, ns: Namespace, inst: Installation): Promise<{ pid: number; log: () => string }> {
  let log = "";
  const child = spawn(
    ns.wrap[0]!,
    [...ns.wrap.slice(1), "haproxy", "-W", "-S", inst.masterSocket, "-f", inst.haproxyConfig, "-p", path.join(inst.dir, "haproxy.pid")],
    {
      cwd: inst.dir,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  scope.track(child);
  child.stdout!.on("data", (b: Buffer) => (log += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (log += b.toString()));
  await waitFor(`HAProxy in ${ns.name} to accept connections (log: ${log})`, () => canConnect(inst.frontendPort, ns.address), 10_000);
  await waitFor("HAProxy's pid file", async () => (await fs.readFile(path.join(inst.dir, "haproxy.pid"), "utf8")).trim() !== "", 5_000);
  await waitFor("HAProxy's master CLI to list a worker", async () => (await showProc(inst)).workers.length > 0, 5_000);
  return { pid: child.pid!, log: () => log };
}

/** Options for a proxy in a namespace: the shared token, the `servers` list every proxy has, extra settings. */
export interface NsProxyOptions {
  token: string;
  servers: string[];
  settings?: string[];
}

/** The master's agent port in every namespace: each namespace has its own loopback, so one port serves all. */
export const NS_MASTER_PORT = 7300;
/** The master's metrics port in every namespace. */
export const NS_METRICS_PORT = 9717;

/**
 * A whole proxy box inside `ns`: a folder installation whose HAProxy frontend binds the
 * namespace address, sshd on the namespace address port 22, HAProxy and `autoscaler master`
 * (role auto) all run in the namespace. Shaped like cluster.ts's Proxy so `startNode` can use
 * it; its sshd's known_hosts line is the plain `ADDRESS ssh-ed25519 …` form of port 22.
 */
export async function startNsProxy(scope: Scope, ns: Namespace, options: NsProxyOptions): Promise<Proxy> {
  const inst = await makeInstallation(scope, [
    `haproxy.servers=${options.servers.join(",")}`,
    `master.listen=127.0.0.1:${NS_MASTER_PORT}`,
    `master.metrics_listen=127.0.0.1:${NS_METRICS_PORT}`,
    `master.token=${options.token}`,
    ...(options.settings ?? []),
  ]);
  // makeInstallation binds the frontend to 127.0.0.1; this proxy serves on its namespace address.
  const template = path.join(inst.dir, "haproxy.cfg.tmpl");
  const text = await fs.readFile(template, "utf8");
  const rebound = text.replace(`bind 127.0.0.1:${inst.frontendPort}`, `bind ${ns.address}:${inst.frontendPort}`);
  if (rebound === text) throw new Error("the adapted template has no 127.0.0.1 bind line to move to the namespace address");
  await fs.writeFile(template, rebound);

  const sshd = await startSshd(scope, { masterPort: NS_MASTER_PORT, address: ns.address, port: 22, wrap: ns.wrap });
  const gen = await inst.cli("generate");
  if (gen.code !== 0) throw new Error(`generate failed: ${gen.stderr}`);
  await startNsHaproxy(scope, ns, inst);
  const startMaster = async () => {
    const d = startNsDaemon(scope, ns, ["master", "--config", inst.ini, "--log-level", "debug"]);
    await d.waitForLog(/master started/, 15_000);
    return d;
  };
  return {
    inst,
    sshd: { ...sshd, knownHostsLine: `${ns.address} ${sshd.hostKey.publicLine.split(" ").slice(0, 2).join(" ")}` },
    masterPort: NS_MASTER_PORT,
    metricsPort: NS_METRICS_PORT,
    token: options.token,
    master: await startMaster(),
    startMaster,
    status: () => status(inst),
  };
}

/** GET http://address:port/ and return the body, or undefined on any failure. */
export async function getFrom(address: string, port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://${address}:${port}/`, { signal: AbortSignal.timeout(2000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

/** The root-namespace end of a namespace's veth pair (the end on the bridge), as `createNetwork` names it. */
export function rootVeth(ns: Namespace): string {
  return `${ns.name}0`;
}

/**
 * Set the bridge end of a namespace's veth down (a partition: the namespace loses the bridge and
 * everything behind it, while its processes keep running and their sockets stay open) or up again.
 */
export async function setLink(ns: Namespace, state: "up" | "down"): Promise<void> {
  await ip("link", "set", rootVeth(ns), state);
}

/** GET `url` from inside a namespace (its own loopback: a master's metrics_listen there) and return the body. */
export async function nsFetch(ns: Namespace, url: string): Promise<string> {
  const script =
    "fetch(process.argv[1],{signal:AbortSignal.timeout(3000)}).then(r=>r.text()).then(t=>process.stdout.write(t),e=>{console.error(e.message);process.exit(1)})";
  const r = await runProcess(ns.wrap[0]!, [...ns.wrap.slice(1), process.execPath, "-e", script, url], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`GET ${url} in ${ns.name} failed: ${r.stderr}`);
  return r.stdout;
}

/** A file's afterEach for tests with networks: the scope's processes and folders first, then every network made (even when the scope's cleanup threw). */
export async function cleanupScopeAndNetworks(scope: Scope, networks: TestNetwork[]): Promise<void> {
  try {
    await scope.cleanup();
  } finally {
    for (const n of networks.splice(0)) await n.remove();
  }
}
