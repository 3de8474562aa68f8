/**
 * A real etcd cluster for tests: Debian's `etcd` (etcd-server), one to three members on
 * 127.0.0.1 (or on addresses given, such as a test network's bridge), free ports, data in the
 * scope's temp folder, each member stopped by its pid. Raft timings are shortened (heartbeat
 * 50 ms, election 500 ms), so a lost member is replaced in well under a second, and leases as
 * short as 2 s are allowed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { freePort, runProcess, waitFor, type Scope } from "./process.js";

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  child: ChildProcess | undefined;
  log: () => string;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Every member's client URL, comma-separated, as `[cluster] etcd` takes them. */
  endpoints: string;
  /** Stop one member by its pid (SIGKILL: a crash), or all of them. */
  kill(index?: number): Promise<void>;
  /** Start a stopped member again on its data folder. */
  restart(index?: number): Promise<void>;
  /** Run etcdctl against the cluster: stdout, or throws. */
  ctl(...args: string[]): Promise<string>;
}

function spawnMember(scope: Scope, m: EtcdMember, cluster: string, state: "new" | "existing"): void {
  let log = "";
  const child = spawn(
    "etcd",
    [
      "--name",
      m.name,
      "--data-dir",
      m.dataDir,
      "--listen-client-urls",
      m.clientUrl,
      "--advertise-client-urls",
      m.clientUrl,
      "--listen-peer-urls",
      m.peerUrl,
      "--initial-advertise-peer-urls",
      m.peerUrl,
      "--initial-cluster",
      cluster,
      "--initial-cluster-state",
      state,
      "--initial-cluster-token",
      path.basename(path.dirname(m.dataDir)),
      "--heartbeat-interval",
      "50",
      "--election-timeout",
      "500",
      "--log-level",
      "warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  scope.track(child);
  child.stdout!.on("data", (b: Buffer) => (log += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (log += b.toString()));
  m.child = child;
  m.log = () => log;
}

/** Start `size` members (1 or 3) and wait until the cluster answers. */
export async function startEtcd(scope: Scope, size = 3, host = "127.0.0.1"): Promise<EtcdCluster> {
  const dir = await scope.tempDir("autoscaler-etcd-");
  const members: EtcdMember[] = [];
  for (let i = 0; i < size; i++) {
    // The ports are taken on loopback; on a bridge address they are just as free (nothing listens on them).
    const [client, peer] = [await freePort(), await freePort()];
    members.push({
      name: `m${i}`,
      clientUrl: `http://${host}:${client}`,
      peerUrl: `http://${host}:${peer}`,
      dataDir: path.join(dir, `m${i}`),
      child: undefined,
      log: () => "",
    });
  }
  const initial = members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
  for (const m of members) spawnMember(scope, m, initial, "new");
  const endpoints = members.map((m) => m.clientUrl).join(",");
  const ctl = async (...args: string[]) => {
    const r = await runProcess("etcdctl", ["--endpoints", endpoints, "--dial-timeout", "1s", "--command-timeout", "2s", ...args], {
      env: { ETCDCTL_API: "3" },
      timeoutMs: 10_000,
    });
    if (r.code !== 0) throw new Error(`etcdctl ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  };
  await waitFor(
    "etcd to answer",
    async () => {
      try {
        await ctl("put", "/health-probe", "1");
        return true;
      } catch {
        return undefined;
      }
    },
    20_000,
    100,
  );
  const stop = async (m: EtcdMember) => {
    const child = m.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await gone;
    m.child = undefined;
  };
  return {
    members,
    endpoints,
    ctl,
    async kill(index) {
      for (const m of index === undefined ? members : [members[index]!]) await stop(m);
    },
    async restart(index) {
      for (const m of index === undefined ? members : [members[index]!]) if (!m.child) spawnMember(scope, m, initial, "existing");
    },
  };
}
