/**
 * Failover on etcd (issue 12): how long a leader's death costs, and what etcd costs the master.
 *
 * 1. Failover time. Two masters of one cluster on loopback (each its own installation and
 *    HAProxy), a real 3-member etcd, and the tcp-node cloud (test/helpers/tcp-node.mjs), whose
 *    nodes report to both masters with their launch's join credential. Each trial: a manual
 *    `scale-up 1` on the leader; as soon as it answers (the launch is recorded and its command
 *    started), SIGKILL the leader. Measured from the kill:
 *      - to the new leader's first decision (a decision tick stamped after the kill, read from
 *        its status over the control socket, polled every 20 ms);
 *      - to the launch's node served through the new leader's HAProxy (a GET through its
 *        frontend answered by that node), and to the launch counted done in the shared state.
 *    The killed master is started again (it rejoins as a follower) before the next trial.
 *    TRIALS trials with `lease_ttl` 10 s and 5 s (BENCH_FAILOVER_TRIALS to change).
 * 2. etcd's cost: the master-load bench's run with 200 agents speaking NDJSON straight to the
 *    master's port, once without etcd and once with `[cluster] etcd` (this master leading a
 *    cluster of one on a 3-member etcd on this machine): the master's CPU and RSS in steady state.
 */
import { startEtcd } from "../test/helpers/etcd.js";
import { startLoopbackCluster } from "../test/helpers/failover.js";
import { getThrough } from "../test/helpers/cluster.js";
import { control, status } from "../test/helpers/status.js";
import { waitFor } from "../test/helpers/process.js";
import { type BenchResult, loadNote, machineInfo, mdTable, sleep, stats, textTable, withResources } from "./lib.js";
import { runOne, type RunResult } from "./master-load.js";
import os from "node:os";

const TRIALS = Number(process.env.BENCH_FAILOVER_TRIALS ?? 20);
const TTLS = [10, 5];
const AGENTS = 200;

interface Trial {
  decisionMs: number;
  servedMs: number;
  doneMs: number;
}

async function failoverTrials(ttl: number, log: (s: string) => void): Promise<Trial[]> {
  return withResources(async (res) => {
    const etcd = await startEtcd(res.scope, 3);
    const c = await startLoopbackCluster(res.scope, 2, etcd.endpoints, [
      `cluster.lease_ttl=${ttl}`,
      "master.interval=1",
      "machine.launch_timeout=120",
      "scaling.min_nodes=0",
      "scaling.max_nodes=100",
      "scaling.mode=instance",
      "scaling.scale_up_threshold=95",
      "scaling.scale_down_threshold=1",
      "scaling.window=600",
    ]);
    const trials: Trial[] = [];
    for (let k = 0; k < TRIALS; k++) {
      const lead = await c.leader((ttl + 10) * 1000);
      /** The nodes before this trial's launch: its node is the one that is new. */
      const known = new Set((await status(c.boxes[1 - lead]!.inst)).nodes.map((n) => n.name));
      const other = 1 - lead;
      const up = (await control(c.boxes[lead]!.inst, { cmd: "scale-up", count: 1 })) as { ok: boolean; result?: { launched: number }; error?: string };
      if (!up.ok) throw new Error(`scale-up refused: ${up.error}`);
      const id = up.result ? ((await status(c.boxes[lead]!.inst, 1000).catch(() => undefined))?.launches.at(-1)?.id ?? "") : "";
      const killedAt = Date.now();
      await c.boxes[lead]!.killMaster();
      const since = (p: Promise<unknown>) => p.then(() => Date.now() - killedAt);
      // The three moments are waited for at once: each is timed from the kill on its own.
      const [decisionMs, doneMs, servedMs] = await Promise.all([
        since(
          waitFor(
            "the new leader's first decision",
            async () => {
              const s = await status(c.boxes[other]!.inst, 1000).catch(() => undefined);
              return s?.role === "decider" && s.last_decision && Date.parse(s.last_decision.at) > killedAt;
            },
            (ttl + 10) * 1000,
            20,
          ),
        ),
        since(
          waitFor(
            "the launch done on the new leader",
            async () => (await status(c.boxes[other]!.inst, 1000).catch(() => undefined))?.launches.find((l) => l.id === id && l.status === "done"),
            (ttl + 30) * 1000,
            20,
          ),
        ),
        since(
          waitFor(
            "the launch's node served by the other master's HAProxy",
            async () => {
              const s = await status(c.boxes[other]!.inst, 1000).catch(() => undefined);
              const node = s?.nodes.find((n) => n.instance_id !== null && !known.has(n.name))?.name;
              return node !== undefined && (await getThrough(c.boxes[other]!.inst.frontendPort)) === node;
            },
            (ttl + 30) * 1000,
            20,
          ),
        ),
      ]);
      trials.push({ decisionMs, servedMs, doneMs });
      known.clear();
      log(`failover ttl ${ttl}: trial ${k + 1}/${TRIALS}: first decision ${decisionMs} ms, launch done ${doneMs} ms, node served ${servedMs} ms`);
      await c.boxes[lead]!.startMaster();
      await sleep(500);
    }
    return trials;
  });
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  log("failover: leader SIGKILL to the new leader's first decision, and to a pending launch's node served");
  const loadAtStart = os.loadavg()[0]!;
  const byTtl: { ttl: number; trials: Trial[] }[] = [];
  for (const ttl of TTLS) byTtl.push({ ttl, trials: await failoverTrials(ttl, log) });

  log("failover: etcd's cost at 200 agents");
  const base = { nodes: AGENTS, transport: "tcp" as const, concurrency: 50 };
  const without: RunResult = await withResources((res) => runOne(res, { ...base, label: `${AGENTS} agents, no etcd` }, log));
  const withEtcd: RunResult = await withResources(async (res) => {
    const etcd = await startEtcd(res.scope, 3);
    return runOne(
      res,
      {
        ...base,
        label: `${AGENTS} agents, [cluster] etcd (leading)`,
        settings: [`cluster.etcd=${etcd.endpoints}`],
        ready: (proxy) => waitFor("the master to lead", async () => (await proxy.status()).role === "decider", 20_000, 50).then(() => undefined),
      },
      log,
    );
  });
  const info = await machineInfo();

  const headT = ["lease_ttl", "trials", "first decision median", "p95", "launch done median", "p95", "node served median", "p95"];
  const rowsT = byTtl.map(({ ttl, trials }) => {
    const d = stats(trials.map((t) => t.decisionMs));
    const l = stats(trials.map((t) => t.doneMs));
    const n = stats(trials.map((t) => t.servedMs));
    const s = (v: number) => `${(v / 1000).toFixed(2)} s`;
    return [`${ttl} s`, trials.length, s(d.median), s(d.p95), s(l.median), s(l.p95), s(n.median), s(n.p95)];
  });
  const mib = (b: number) => (b / 1048576).toFixed(1);
  const headC = ["run", "master CPU (steady)", "master RSS (end)", "ratio CPU", "ratio RSS"];
  const rowsC = [
    [without.run.label, `${without.steady.cpuPct.toFixed(2)} %`, `${mib(without.steady.rssEnd)} MiB`, "1.00", "1.00"],
    [
      withEtcd.run.label,
      `${withEtcd.steady.cpuPct.toFixed(2)} %`,
      `${mib(withEtcd.steady.rssEnd)} MiB`,
      (withEtcd.steady.cpuPct / without.steady.cpuPct).toFixed(2),
      (withEtcd.steady.rssEnd / without.steady.rssEnd).toFixed(2),
    ],
  ];
  const text = [textTable(headT, rowsT), "", textTable(headC, rowsC)].join("\n");
  const markdown = [
    "## Failover on etcd",
    "",
    `Two masters on loopback, a real 3-member etcd (Debian's etcd 3.4), the tcp-node cloud; ${TRIALS} trials per \`lease_ttl\`. Each trial records a \`scale-up 1\` on the leader and SIGKILLs it as soon as the command answers (the launch is recorded and its command started). Times from the kill, each waited for on its own: the new leader's first decision (it takes over once the dead leader's lease has expired in etcd, then decides on its next tick, \`interval\` 1 s); the launch counted done by the new leader (at its take-over, since the node registered meanwhile); the launch's node served through the other proxy's HAProxy (registration never waits for a leader).`,
    "",
    mdTable(headT, rowsT),
    "",
    `etcd's cost: the master-load bench's run with ${AGENTS} agents speaking NDJSON straight to the master's port, 30 s of steady state after 10 s of settling, without and with \`[cluster] etcd\` (the master leading; etcd's own processes not counted).`,
    "",
    mdTable(headC, rowsC),
    "",
    `Machine: ${info.cpus} CPUs (${info.cpuModel}), ${info.memGiB} GiB, ${info.haproxy}, node ${info.node}, ${info.date}. ${loadNote(loadAtStart)}`,
  ].join("\n");
  return { id: "failover", text, markdown };
}
