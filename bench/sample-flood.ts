/**
 * Sample flood: one registered node sends 1,000,000 `sample` lines as fast as loopback TCP takes
 * them (issue "node trust", case 4). The master keeps at most one reading per 250 ms per node and
 * counts the rest as dropped; the figures are whether it went on deciding every tick meanwhile
 * and what the flood did to its memory.
 *
 * Per trial: a fresh proxy (sshd, HAProxy, `autoscaler master` with `[master] interval = 0.2`),
 * 3 s to settle, the master's VmRSS (before); then a hello with the cluster secret and the lines
 * over one connection (written with back-pressure, bounded by a 120 s deadline), `/status`
 * polled every 250 ms for the time of its last decision; once the metrics count every line
 * (received + dropped), 3 s, then VmRSS again (after). The peak is the highest VmRSS read
 * during the flood (polled with the status). Then a second flood from another node on the same
 * master: a leak would grow RSS again. Goal: after within 20 % of before, and a decision at
 * least every 2 intervals all through the flood. RSS in MiB.
 */
import net from "node:net";
import os from "node:os";
import { startProxy, type Proxy } from "../test/helpers/cluster.js";
import { status } from "../test/helpers/status.js";
import { type BenchResult, type Resources, loadNote, machineInfo, mdTable, mib, readProcMemory, sleep, textTable, withResources } from "./lib.js";

const TRIALS = 3;
const LINES = 1_000_000;
const INTERVAL_S = 0.2;
const DEADLINE_MS = 120_000;

interface Trial {
  seconds: number;
  decisions: number;
  longestGapMs: number;
  kept: number;
  dropped: number;
  rssBefore: number;
  rssPeak: number;
  rssAfter: number;
  /** After a second flood of the same size on the same master: a leak would grow again. */
  rssAfterSecond: number;
}

async function metric(proxy: Proxy, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  return Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? NaN);
}

/** Send a hello and LINES samples on one connection, respecting back-pressure; resolves once all is written. */
function flood(proxy: Proxy, name: string): Promise<void> {
  const hello = {
    type: "hello",
    version: 1,
    token: proxy.token,
    name,
    address: "127.0.0.9",
    port: 8080,
    instance_id: "i-flooder",
    agent_version: "bench",
    facts: { cores: 1, memory_bytes: 1024 },
  };
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: "127.0.0.1", port: proxy.masterPort });
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`the flood did not finish within ${DEADLINE_MS} ms`))), DEADLINE_MS);
    socket.on("error", (err) => (clearTimeout(timer), reject(err)));
    socket.on("data", () => undefined);
    socket.on("connect", () => {
      socket.write(JSON.stringify(hello) + "\n");
      let i = 0;
      const pump = () => {
        while (i < LINES) {
          // 1,000 lines a write.
          const chunk = Array.from({ length: Math.min(1000, LINES - i) }, (_, k) => `{"type":"sample","time":${i + k},"cpu":99}\n`).join("");
          i += 1000;
          if (!socket.write(chunk)) return void socket.once("drain", pump);
        }
        clearTimeout(timer);
        socket.end(() => resolve());
      };
      pump();
    });
  });
}

/** One flood on `proxy`, with its figures; `counted` is what the metrics counted before it. */
async function measureFlood(proxy: Proxy, name: string, counted: number) {
  const pid = proxy.master.child.pid!;
  const rssBefore = (await readProcMemory(pid))!.rss;
  let rssPeak = rssBefore;
  const decisions = new Set<number>();
  const started = Date.now();
  let done = false;
  const sending = flood(proxy, name).finally(() => (done = true));
  let lastDecision = started;
  let longestGapMs = 0;
  // Until every line is counted: the master may still be reading after the writes ended.
  for (;;) {
    const s = await status(proxy);
    const at = Date.parse(s.last_decision?.at ?? "0");
    if (at > 0 && !decisions.has(at)) {
      decisions.add(at);
      if (at >= started) longestGapMs = Math.max(longestGapMs, at - lastDecision);
      lastDecision = Math.max(lastDecision, at);
    }
    rssPeak = Math.max(rssPeak, (await readProcMemory(pid))?.rss ?? 0);
    if (done && (await metric(proxy, "autoscaler_samples_received_total")) + (await metric(proxy, "autoscaler_samples_dropped_total")) >= counted + LINES)
      break;
    if (Date.now() - started > DEADLINE_MS) throw new Error("the master did not count every line in time");
    await sleep(250);
  }
  await sending;
  const seconds = (Date.now() - started) / 1000;
  await sleep(3000);
  const rssAfter = (await readProcMemory(pid))!.rss;
  return { seconds, decisions: [...decisions].filter((d) => d >= started).length, longestGapMs, rssBefore, rssPeak, rssAfter };
}

async function trial(res: Resources): Promise<Trial> {
  const proxy = await startProxy(res.scope, { settings: [`master.interval=${INTERVAL_S}`, "scaling.min_nodes=0"] });
  await sleep(3000);
  const first = await measureFlood(proxy, "flooder-1", 0);
  const kept = await metric(proxy, "autoscaler_samples_received_total");
  const dropped = await metric(proxy, "autoscaler_samples_dropped_total");
  const second = await measureFlood(proxy, "flooder-2", kept + dropped);
  return { ...first, kept, dropped, rssAfterSecond: second.rssAfter };
}

export async function run(log: (s: string) => void = console.log): Promise<BenchResult> {
  const machine = await machineInfo();
  const load = os.loadavg()[0]!;
  const trials: Trial[] = [];
  for (let i = 0; i < TRIALS; i++) {
    trials.push(await withResources((res) => trial(res)));
    log(`sample-flood: trial ${i + 1} of ${TRIALS} done`);
  }
  const head = [
    "trial",
    "lines",
    "handled in",
    "decisions meanwhile",
    "longest gap",
    "kept",
    "dropped",
    "RSS before",
    "RSS peak",
    "RSS after",
    "after ÷ before",
    "after a 2nd flood",
  ];
  const rows = trials.map((t, i) => [
    i + 1,
    LINES.toLocaleString("en-US"),
    `${t.seconds.toFixed(1)} s`,
    `${t.decisions} (one per ${((t.seconds * 1000) / Math.max(1, t.decisions)).toFixed(0)} ms)`,
    `${t.longestGapMs} ms`,
    t.kept.toLocaleString("en-US"),
    t.dropped.toLocaleString("en-US"),
    mib(t.rssBefore),
    mib(t.rssPeak),
    mib(t.rssAfter),
    (t.rssAfter / t.rssBefore).toFixed(2),
    `${mib(t.rssAfterSecond)} (${(t.rssAfterSecond / t.rssBefore).toFixed(2)})`,
  ]);
  const goalMet = trials.every(
    (t) => t.rssAfterSecond <= t.rssBefore * 1.2 && t.rssAfter <= t.rssBefore * 1.2 && t.longestGapMs <= INTERVAL_S * 1000 * 2 + 250,
  );
  const markdown = [
    "## A sample flood from one node",
    "",
    `Measured ${machine.date} by \`npx tsx bench/run.ts sample-flood\` (bench/sample-flood.ts): one node sends ${LINES.toLocaleString("en-US")} \`sample\` lines over one connection as fast as loopback takes them, to a master deciding every ${INTERVAL_S * 1000} ms. Machine: ${machine.cpus} CPUs (${machine.cpuModel}), node ${machine.node}; ${loadNote(load)}.`,
    "",
    mdTable(head, rows),
    "",
    `Goal (issue "node trust"): master RSS after the flood, and after a second one, within 20 % of before, and decisions going on all through it (no gap over two intervals plus the 250 ms poll): **${goalMet ? "met" : "not met"}**. The longest gap is between two decisions seen by polling \`/status\` every 250 ms, so it is at most that much late. The last column is what a second flood of the same size, from another node, does on the same master.`,
  ].join("\n");
  return { id: "sample-flood", text: textTable(head, rows), markdown, goalMet };
}
