/**
 * Fifty leader kills across scale cycles (issue 12): two masters with their own HAProxy on
 * loopback, one real 3-member etcd, and the tcp-node cloud (test/helpers/tcp-node.mjs): a
 * launched node is a small real process that serves HTTP and speaks the agent protocol to
 * every master's port, registering with its launch's join credential as a real agent does.
 * (The SSH path and network namespaces are covered by failover.test.ts; what is under test
 * here is the hand-over of decisions, which does not depend on how the bytes reach the port,
 * and a node that starts in ~50 ms makes fifty kills fit in about a minute.)
 *
 * Each round asks the leader for a scale-up or a scale-down (drawn from a seeded PRNG), then
 * SIGKILLs it 0–800 ms later (also drawn) and starts it again, so it comes back as a follower
 * while the other master takes over. The seed is in the test's name; AUTOSCALER_FAULT_SEED=<seed>
 * replays the same draws (timing may differ), AUTOSCALER_FAILOVER_KILLS=<n> runs longer.
 * At the end, from the shared state in etcd and the cloud's own logs: no launch run twice or
 * run without a record, every record finished, no instance terminated twice, and every node
 * the cloud started and no drain removed is a backend of both proxies, and no node the shared
 * state says was scaled down is one.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { mulberry32 } from "@autoscaler/master/simulate";
import { startEtcd, type EtcdCluster } from "./helpers/etcd.js";
import { printTable } from "./helpers/faults.js";
import { startLoopbackCluster } from "./helpers/failover.js";
import { Scope, sleep, waitFor } from "./helpers/process.js";
import { control, status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

const KILLS = Number(process.env.AUTOSCALER_FAILOVER_KILLS ?? 50);
const SEED = Number(process.env.AUTOSCALER_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const KILL_WITHIN_MS = 800;
const TTL = 1;
const PREFIX = "/autoscaler/kills/";

interface SharedState {
  launches: { id: string; status: string; count: number; nodes: string[]; note?: string }[];
  drains: { id: string; node: string; instanceId: string; status: string; note?: string; error?: string }[];
}

async function sharedState(etcd: EtcdCluster): Promise<SharedState> {
  return JSON.parse(await etcd.ctl("get", "--print-value-only", `${PREFIX}state`)) as SharedState;
}

async function jsonLines<T>(file: string): Promise<T[]> {
  const text = await fs.readFile(file, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}

test(`${KILLS} leader kills across scale cycles repeat no launch or terminate, lose none, and lose no host (seed ${SEED}: AUTOSCALER_FAULT_SEED=${SEED} replays it)`, async () => {
  const rng = mulberry32(SEED);
  const etcd = await startEtcd(scope, 3, "127.0.0.1", { fast: true });
  const {
    boxes,
    cloudDir: cloud,
    leader: leaderWithin,
  } = await startLoopbackCluster(scope, 2, etcd.endpoints, [
    `cluster.lease_ttl=${TTL}`,
    `cluster.prefix=${PREFIX}`,
    "master.interval=0.1",
    "machine.launch_timeout=10",
    // Manual actions only: no automatic decision ever has a full window of data.
    "scaling.min_nodes=0",
    "scaling.max_nodes=30",
    "scaling.mode=instance",
    "scaling.scale_up_threshold=95",
    "scaling.scale_down_threshold=1",
    "scaling.window=600",
    "scaling.drain_seconds=0.3",
    "scaling.node_timeout=3",
  ]);
  const leader = () => leaderWithin((TTL + 8) * 1000);
  /** Every launch id the shared state ever held: it keeps only the last 20 finished records. */
  const seen = new Set<string>();
  /** Every node a finished scale-down removed (drains are pruned the same way). */
  const drainedEver = new Set<string>();
  const figures = { kills: 0, scaleUps: 0, scaleDowns: 0, refused: 0, restartedLed: 0, failoverMs: [] as number[] };
  for (let k = 0; k < KILLS; k++) {
    const lead = await leader();
    const s = await status(boxes[lead]!.inst);
    const serving = s.nodes.filter((n) => n.state === "live").length;
    const up = serving + s.capacity.pending < 2 || rng() < 0.55;
    const answer = await control(boxes[lead]!.inst, { cmd: up ? "scale-up" : "scale-down", count: 1 }).catch((err: Error) => ({
      ok: false,
      error: err.message,
    }));
    if (answer.ok) figures[up ? "scaleUps" : "scaleDowns"]++;
    else figures.refused++;
    await sleep(Math.floor(rng() * KILL_WITHIN_MS));
    const killedAt = Date.now();
    await boxes[lead]!.killMaster();
    figures.kills++;
    const [next] = await Promise.all([leader(), boxes[lead]!.startMaster()]);
    figures.failoverMs.push(Date.now() - killedAt);
    const now = await sharedState(etcd);
    for (const l of now.launches) seen.add(l.id);
    for (const d of now.drains) if (d.status === "done") drainedEver.add(d.node);
    // Usually the other master; the restarted one when the other lost its own lease meanwhile (a 1 s lease on busy cores).
    if (next === lead) figures.restartedLed++;
    if (process.env.DEBUG_KILLS)
      console.log(
        k,
        lead,
        next,
        JSON.stringify((await Promise.all(boxes.map((b) => status(b.inst)))).map((x) => [x.role, x.cluster?.members, x.cluster?.leader])),
      );
  }

  // Let every launch and drain finish (launch_timeout bounds a launch whose nodes never come).
  await waitFor(
    "every launch and drain to finish",
    async () => {
      const st = await sharedState(etcd);
      return st.launches.every((l) => l.status === "done" || l.status === "failed") && st.drains.every((d) => d.status === "done" || d.status === "failed")
        ? st
        : undefined;
    },
    30_000,
    200,
  );
  const lead = await leader();
  const st = await sharedState(etcd);
  const runs = await jsonLines<{ launch?: string; nodes: { name: string; instanceId: string }[] }>(path.join(cloud, "launches.log"));
  const terminations = await jsonLines<{ at: number; instanceId: string; name: string | null }>(path.join(cloud, "terminations.log"));
  const completed = await jsonLines<{ at: number; instanceId: string }>(path.join(cloud, "terminated.log"));

  // Launches: each recorded launch ran at most once, and every run belongs to a record.
  const runsById = new Map<string, number>();
  for (const r of runs) runsById.set(r.launch ?? "none", (runsById.get(r.launch ?? "none") ?? 0) + 1);
  expect([...runsById.entries()].filter(([, n]) => n > 1)).toEqual([]);
  for (const l of st.launches) seen.add(l.id);
  expect(runs.filter((r) => !seen.has(r.launch ?? ""))).toEqual([]);
  expect(st.launches.filter((l) => l.status === "done" && l.nodes.length !== l.count)).toEqual([]);
  // Terminates: none run again once one has stopped the instance (a run cut short before it acted may be followed by another).
  const repeated = terminations.filter((t) => completed.some((d) => d.instanceId === t.instanceId && d.at < t.at));
  expect(repeated).toEqual([]);
  // Hosts: every node the cloud started and no drain removed is a backend of both proxies, and no
  // node whose scale-down the shared state still holds is one (a drain whose terminate was skipped
  // leaves its node running; it knocks again and must stay refused). A node reconnects to a
  // restarted master within its backoff (2 s at most), so this is awaited, bounded.
  for (const d of st.drains) if (d.status === "done") drainedEver.add(d.node);
  const started = runs.flatMap((r) => r.nodes.map((n) => n.name));
  const scaledDown = st.drains.filter((d) => d.status === "done").map((d) => d.node);
  const wrongHosts = async () => {
    const wrong: Record<string, { missing: string[]; drainedButThere: string[] }> = {};
    for (const b of boxes) {
      const names = (await fs.readdir(path.join(b.inst.dir, "hosts.d"))).map((f) => f.replace(/\.json$/, ""));
      const missing = started.filter((n) => !drainedEver.has(n) && !names.includes(n));
      const drainedButThere = scaledDown.filter((n) => names.includes(n));
      if (missing.length + drainedButThere.length > 0) wrong[b.inst.dir] = { missing, drainedButThere };
    }
    return wrong;
  };
  const settled = await waitFor(
    "every proxy's hosts.d to hold exactly the nodes not scaled down",
    async () => (Object.keys(await wrongHosts()).length === 0 ? true : undefined),
    10_000,
    200,
  ).catch(() => false);
  if (!settled) expect(await wrongHosts()).toEqual({});
  expect(lead).toBeGreaterThanOrEqual(0);

  const sorted = [...figures.failoverMs].sort((a, b) => a - b);
  printTable(`${KILLS} leader kills (seed ${SEED})`, [
    {
      kills: figures.kills,
      "scale-ups": figures.scaleUps,
      "scale-downs": figures.scaleDowns,
      refused: figures.refused,
      "launch runs": runs.length,
      "launches done": st.launches.filter((l) => l.status === "done").length,
      "launches failed": st.launches.filter((l) => l.status === "failed").length,
      terminates: terminations.length,
      "drains done": drainedEver.size,
      "terminates skipped": st.drains.filter((d) => d.status === "done" && d.instanceId === "").length,
      "restarted one led": figures.restartedLed,
      "failover median ms": sorted[Math.floor(sorted.length / 2)]!,
      "failover max ms": sorted.at(-1)!,
    },
  ]);
}, 240_000);
