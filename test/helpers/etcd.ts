/**
 * A real etcd cluster for tests: Debian's `etcd` (etcd-server), one to three members on
 * 127.0.0.1 (or on addresses given, such as a test network's bridge), free ports, data in the
 * scope's temp folder, each member stopped by its pid. Raft runs at etcd's own timings
 * (heartbeat 100 ms, election 1 s), which keep an idle cluster light beside the rest of the
 * suite; `fast` halves them (a lost raft leader is replaced in well under a second, and leases of
 * 1 s are allowed) for the tests that kill members or leaders many times.
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
  /**
   * Start a stopped member again on its data folder, and wait (at most 20 s) until it answers a
   * health check on its own endpoint: until then it is not a voter, and killing another member
   * would cost the cluster its quorum.
   */
  restart(index?: number): Promise<void>;
  /** Run etcdctl against the cluster: stdout, or throws. */
  ctl(...args: string[]): Promise<string>;
  /** The index of the member that is raft's leader now. */
  raftLeader(): Promise<number>;
}

function spawnMember(scope: Scope, m: EtcdMember, cluster: string, state: "new" | "existing", fast: boolean): void {
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
      fast ? "50" : "100",
      "--election-timeout",
      fast ? "500" : "1000",
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
export async function startEtcd(scope: Scope, size = 3, host = "127.0.0.1", options: { fast?: boolean } = {}): Promise<EtcdCluster> {
  const fast = options.fast ?? false;
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
  for (const m of members) spawnMember(scope, m, initial, "new", fast);
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
    async raftLeader() {
      const list = JSON.parse(await ctl("endpoint", "status", "-w", "json")) as {
        Endpoint: string;
        Status: { header: { member_id: number | string }; leader: number | string };
      }[];
      const leading = list.find((e) => String(e.Status.header.member_id) === String(e.Status.leader));
      const index = members.findIndex((m) => m.clientUrl === leading?.Endpoint);
      if (index < 0) throw new Error(`no raft leader among ${endpoints}`);
      return index;
    },
    async kill(index) {
      for (const m of index === undefined ? members : [members[index]!]) await stop(m);
    },
    async restart(index) {
      const stopped = (index === undefined ? members : [members[index]!]).filter((m) => !m.child);
      for (const m of stopped) spawnMember(scope, m, initial, "existing", fast);
      for (const m of stopped) {
        await waitFor(
          `etcd member ${m.name} to answer again`,
          async () =>
            (
              await runProcess("etcdctl", ["--endpoints", m.clientUrl, "--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "health"], {
                env: { ETCDCTL_API: "3" },
                timeoutMs: 5_000,
              })
            ).code === 0 || undefined,
          20_000,
          100,
        );
      }
    },
  };
}
