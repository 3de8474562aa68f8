/**
 * The status page with 1,000 nodes: the history's memory when every ring is full, and how fast
 * the page's JSON endpoint answers.
 *
 *   (a) memory: a history fed 24 h of per-minute ticks and then FINE_SAMPLES per-second ticks,
 *       each with 1,000 nodes' CPU (every ring at capacity, so a longer run holds no more), plus
 *       MAX_MARKERS markers; V8's heap used plus array buffers after a full GC, minus the same before; median of RUNS.
 *   (b) speed: a real metrics server (the master's own startMetricsServer and page routes) on
 *       127.0.0.1 serving that history and a registry of 1,000 nodes with a minute of readings
 *       each; GET /page/data for each range, sequentially, timed from request to the last byte
 *       (median and p95), with the answer's size. Building the answer alone is timed too.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type http from "node:http";
import { createRegistry, buildStatus, type MasterStatus } from "@autoscaler/master";
import { createHistory, FINE_SAMPLES, HISTORY_MINUTES, MAX_MARKERS, type History } from "../packages/master/src/history.js";
import { createMetrics, startMetricsServer } from "../packages/master/src/metrics.js";
import { buildPageData, RANGES, type Range } from "../packages/master/src/page-data.js";
import type { ScalingPolicy } from "../packages/master/src/policy.js";
import { createPageRoutes } from "../packages/master/src/status-page.js";
import { loadNote, mdTable, medP95, mib, stats, textTable, type BenchResult } from "./lib.js";

const NODES = 1000;
const RUNS = 5;
const REQUESTS = 40;
const WINDOW_MS = 60_000;
const T0 = Date.UTC(2024, 0, 1);

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const names = Array.from({ length: NODES }, (_, i) => `web-${String(i).padStart(4, "0")}`);
const cpuOf = (i: number, t: number) => 20 + 30 * Math.sin(i + t / 600_000);

/** A history with every ring full: 24 h of minutes, then FINE_SAMPLES seconds, 1,000 nodes each tick. */
function fullHistory(): { history: History; end: number } {
  const history = createHistory();
  const tick = (at: number) => {
    history.record(
      { at, active: NODES, pending: 0, leaving: 0, desired: NODES, min: 1, max: 1200, cpuMean: 35, cpuMax: 50 },
      names.map((n, i) => [n, cpuOf(i, at)] as const),
    );
  };
  let at = T0;
  for (let m = 0; m < HISTORY_MINUTES + 1; m++, at += 60_000) tick(at);
  for (let s = 0; s < FINE_SAMPLES; s++, at += 1000) tick(at);
  for (let k = 0; k < MAX_MARKERS; k++)
    history.mark({ at: T0 + k * 60_000, kind: k % 2 ? "scale_down" : "scale_up", message: `launching 1 node(s): scale-up ${k}` });
  return { history, end: at };
}

function heapUsed(): number {
  gc();
  gc();
  // Typed arrays' contents live outside the V8 heap: count them too.
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function measureMemory(): number[] {
  const out: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const before = heapUsed();
    const kept = fullHistory();
    const after = heapUsed();
    out.push(after - before);
    if (kept.history.size().nodes !== NODES) throw new Error("history lost nodes");
  }
  return out;
}

const POLICY: ScalingPolicy = {
  mode: "target",
  targetCpu: 60,
  tolerance: 0.1,
  scaleDownWindowMs: 300_000,
  scaleUpWindowMs: 0,
  scaleDownLimit: 1,
  predictive: false,
  bootMs: 60_000,
  upThreshold: 80,
  downThreshold: 20,
  windowMs: WINDOW_MS,
  upCooldownMs: 30_000,
  downCooldownMs: 0,
  minNodes: 1,
  maxNodes: 1200,
  step: 1,
  scaleDownOrder: "oldest",
  scaleUpEnabled: true,
  scaleDownEnabled: true,
  sampleIntervalMs: 5000,
  launchTimeoutMs: 600_000,
  drainMs: 30_000,
  forgetAfterMs: 600_000,
  minAvailable: 0,
  nodeCapacity: undefined,
};

/** A registry of 1,000 live nodes with a minute of readings each (one a second). */
function fullRegistry(end: number) {
  const registry = createRegistry({ nodeTimeoutMs: 15_000, forgetAfterMs: 600_000, keepMs: WINDOW_MS + 60_000, isManual: () => false });
  names.forEach((name, i) => {
    registry.register(
      {
        type: "hello",
        version: 1,
        token: "",
        name,
        address: `10.0.${i >> 8}.${i & 255}`,
        port: 8080,
        agent_version: "0",
        facts: { cores: 2, memory_bytes: 1 << 30 },
      },
      end - WINDOW_MS,
      "node",
    );
    for (let t = end - WINDOW_MS; t <= end; t += 1000) registry.recordSample(name, { type: "sample", time: t, cpu: cpuOf(i, t) }, t);
  });
  return registry;
}

async function measureEndpoint(log: (s: string) => void) {
  const { history, end } = fullHistory();
  const registry = fullRegistry(end);
  const status = (events = 200): MasterStatus =>
    buildStatus({
      version: "bench",
      role: { role: "decider", why: "bench" },
      listen: "127.0.0.1:0",
      haproxyConfig: "/dev/null",
      registry,
      hosts: [],
      applier: { applies: 1, reloads: 1, runtimeApplies: 0, runtimeFallbacks: 0, reloadFailures: 0, checkFailures: 0 } as never,
      events: Array.from({ length: events }, (_, k) => ({ at: end - k * 1000, kind: "registered", message: `web-${k} registered` })),
      windowMs: WINDOW_MS,
      now: end,
      scaling: undefined,
      sharedToken: "refuse",
    });
  const data = (range: Range, node: string | undefined) =>
    buildPageData({ status: status(), history, policy: POLICY, readings: (n) => registry.get(n)?.readings, now: end, range, node });
  const server: http.Server = await startMetricsServer(
    "127.0.0.1",
    0,
    createMetrics(() => status(20)),
    () => status(20),
    createPageRoutes(data),
  );
  const port = (server.address() as { port: number }).port;
  const rows: { range: Range; build: number[]; http: number[]; bytes: number }[] = [];
  try {
    for (const range of RANGES) {
      const build: number[] = [];
      const http: number[] = [];
      let bytes = 0;
      for (let k = 0; k < REQUESTS; k++) {
        const t0 = performance.now();
        JSON.stringify(data(range, undefined));
        build.push(performance.now() - t0);
        const t1 = performance.now();
        const body = await (await fetch(`http://127.0.0.1:${port}/page/data?range=${range}`)).arrayBuffer();
        http.push(performance.now() - t1);
        bytes = body.byteLength;
      }
      rows.push({ range, build, http, bytes });
      log(`status-page: ${range} done`);
    }
    const statusBytes = (await (await fetch(`http://127.0.0.1:${port}/status`)).arrayBuffer()).byteLength;
    return { rows, statusBytes };
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Run the benchmark. */
export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  const loadAtStart = (await import("node:os")).loadavg()[0]!;
  const memory = stats(measureMemory());
  log(`status-page: history ${mib(memory.median)} MiB`);
  const { rows, statusBytes } = await measureEndpoint(log);
  const head = ["range", "answer", "build (ms, median (p95))", "GET /page/data (ms, median (p95))"];
  const table = rows.map((r) => [r.range, `${(r.bytes / 1024).toFixed(0)} KiB`, medP95(stats(r.build)), medP95(stats(r.http))]);
  const memLine = `History with ${NODES} nodes and every ring full (${HISTORY_MINUTES} minutes, ${FINE_SAMPLES} ticks, an hour per node, ${MAX_MARKERS} markers): **${mib(memory.median)} MiB** of V8 heap and array buffers (median of ${RUNS}; min ${mib(memory.min)}, max ${mib(memory.max)} MiB).`;
  const markdown = [
    "## Status page: history memory and the JSON endpoint",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)}. ${memLine}`,
    "",
    `The page's JSON endpoint with ${NODES} nodes (CPU charts for the first 50), ${REQUESTS} sequential requests per range over loopback to the master's own HTTP server; "build" is building and serialising the answer alone. /status for the same master: ${(statusBytes / 1024).toFixed(0)} KiB (the history is not in it).`,
    "",
    mdTable(head, table),
    "",
    loadNote(loadAtStart),
  ].join("\n");
  return { id: "status-page", text: `${memLine.replace(/\*\*/g, "")}\n${textTable(head, table)}`, markdown };
}
