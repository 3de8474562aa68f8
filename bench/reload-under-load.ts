/**
 * Reloads under keep-alive load: do reloads lose requests?
 *
 * Keep-alive HTTP load through HAProxy (node:http Agent with keepAlive, LOOPS concurrent request
 * loops, each bounded by a request count and a deadline) while RELOADS reloads happen, about
 * 10 per second (or as fast as each is confirmed), for two setups, alternated in one process:
 *   (A) ours: the shipped template rendered by `autoscaler generate` (master-worker,
 *       `option idle-close-on-response`, `hard-stop-after`), HAProxy run with `-W -S master.sock`,
 *       each reload SIGUSR2 to the master, confirmed on `show proc` (judgeReload);
 *   (B) baseline: the same rendered file without `master-worker` and without
 *       `option idle-close-on-response`, run daemon-style and restarted the classic way:
 *       `haproxy -D -f haproxy.cfg -p haproxy.pid -sf <old pid>`, a new process each time.
 * Every request is counted: 2xx succeeded; anything else (ECONNRESET, socket hang up, timeout,
 * non-2xx) failed, by kind.
 */
import { spawn } from "node:child_process";
import { openSync, closeSync, promises as fs } from "node:fs";
import http from "node:http";
import type net from "node:net";
import os from "node:os";
import path from "node:path";
import { createHostsStore, judgeReload, loadConfig, showProc, type ProcTable } from "@autoscaler/shared";
import { canConnect, makeInstallation, startHaproxy, type Installation } from "../test/helpers/haproxy.js";
import { waitFor } from "../test/helpers/process.js";
import { type BenchResult, HAPROXY, isAlive, loadNote, machineInfo, mdTable, ms, type Resources, sleep, stats, textTable, withResources } from "./lib.js";

const LOOPS = 6;
const RELOADS = 100;
const REPEATS = 3;
/** Target spacing of reloads (10 per second); a reload that takes longer is simply followed at once. */
const RELOAD_EVERY_MS = 100;
/** Load before the first and after the last reload. */
const LEAD_MS = 500;
const TAIL_MS = 1000;
/** Hard bounds of every load loop: requests and time. */
const MAX_REQUESTS_PER_LOOP = 200_000;
const LOAD_DEADLINE_MS = 90_000;
const REQUEST_TIMEOUT_MS = 5000;

interface LoadCounts {
  sent: number;
  ok: number;
  failed: number;
  kinds: Map<string, number>;
}

interface RunResult {
  setup: "A" | "B";
  repeat: number;
  reloads: number;
  reloadStats: ReturnType<typeof stats>;
  seconds: number;
  load: LoadCounts;
  /** HAProxy processes of this run still alive when the load stopped (old ones finishing). */
  lingering: number;
}

/* ------------------------------------------------------------------ backends and load */

/** Ten HTTP backends on loopback that keep connections open longer than HAProxy's timeouts, so the backend side never races. */
async function startBackends(res: Resources, count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) {
    const server = http.createServer((_req, res2) => {
      res2.writeHead(200, { "content-type": "text/plain", "content-length": "2" });
      res2.end("ok");
    });
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    res.scope.trackServer(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    ports.push((server.address() as net.AddressInfo).port);
  }
  return ports;
}

function failureKind(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.message === "socket hang up") return "socket hang up";
  return e.code ?? e.message ?? String(err);
}

/** Keep-alive load on 127.0.0.1:port until `stop()` is called, the count or the deadline is reached. */
function startLoad(port: number): { stop: () => Promise<LoadCounts> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOOPS, maxFreeSockets: LOOPS });
  const counts: LoadCounts = { sent: 0, ok: 0, failed: 0, kinds: new Map() };
  const fail = (kind: string) => {
    counts.failed++;
    counts.kinds.set(kind, (counts.kinds.get(kind) ?? 0) + 1);
  };
  let stopping = false;
  const deadline = Date.now() + LOAD_DEADLINE_MS;
  const one = () =>
    new Promise<void>((resolve) => {
      counts.sent++;
      let settled = false;
      const done = (kind?: string) => {
        if (settled) return;
        settled = true;
        if (kind === undefined) counts.ok++;
        else fail(kind);
        resolve();
      };
      const req = http.get({ host: "127.0.0.1", port, path: "/", agent, timeout: REQUEST_TIMEOUT_MS }, (res) => {
        res.resume();
        res.on("end", () => done(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300 ? undefined : `HTTP ${res.statusCode}`));
        res.on("error", (err) => done(failureKind(err)));
        res.on("aborted", () => done("response aborted"));
      });
      req.on("timeout", () => req.destroy(Object.assign(new Error("request timeout"), { code: "TIMEOUT" })));
      req.on("error", (err) => done(failureKind(err)));
    });
  const loops = Array.from({ length: LOOPS }, async () => {
    for (let i = 0; i < MAX_REQUESTS_PER_LOOP && !stopping && Date.now() < deadline; i++) await one();
  });
  return {
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      agent.destroy();
      return counts;
    },
  };
}

/* ------------------------------------------------------------------ setups */

async function renderedInstallation(res: Resources, backendPorts: number[]): Promise<Installation> {
  const inst = await makeInstallation(res.scope);
  const { config } = await loadConfig(inst.ini);
  const store = createHostsStore(config.hostsDir);
  for (const [i, port] of backendPorts.entries()) {
    await store.put({ name: `web${String(i + 1).padStart(2, "0")}`, address: "127.0.0.1", port, source: "manual", addedAt: new Date().toISOString() });
  }
  const gen = await inst.cli("generate");
  if (gen.code !== 0) throw new Error(`autoscaler generate failed: ${gen.stderr}`);
  return inst;
}

async function settled(socket: string): Promise<ProcTable> {
  return waitFor("HAProxy's master CLI", () => showProc(socket).catch(() => undefined), 10_000, 10);
}

/** Keep reloading every RELOAD_EVERY_MS (or as soon as the previous one is done) while the load runs. */
async function reloadLoop(reload: () => Promise<void>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RELOADS; i++) {
    const t0 = performance.now();
    await reload();
    const took = performance.now() - t0;
    times.push(took);
    if (took < RELOAD_EVERY_MS) await sleep(RELOAD_EVERY_MS - took);
  }
  return times;
}

async function runA(res: Resources, backendPorts: number[], repeat: number): Promise<RunResult> {
  const inst = await renderedInstallation(res, backendPorts);
  const cfg = await fs.readFile(inst.haproxyConfig, "utf8");
  for (const needed of [/^\s*master-worker\s*$/m, /^\s*option idle-close-on-response\s*$/m, /^\s*hard-stop-after\s/m]) {
    if (!needed.test(cfg)) throw new Error(`the rendered template lacks ${needed}`);
  }
  const hap = await startHaproxy(res.scope, inst);
  res.trackPid(hap.pid);
  await settled(inst.masterSocket);

  const load = startLoad(inst.frontendPort);
  const t0 = performance.now();
  let reloadTimes: number[] = [];
  let counts: LoadCounts;
  let lingering = 0;
  try {
    await sleep(LEAD_MS);
    reloadTimes = await reloadLoop(async () => {
      const before = await settled(inst.masterSocket);
      process.kill(before.master.pid, "SIGUSR2");
      const started = performance.now();
      for (;;) {
        const after = await showProc(inst.masterSocket).catch(() => undefined);
        if (after && judgeReload(before, after).state === "confirmed") return;
        if (after && judgeReload(before, after).state === "failed" && performance.now() - started > 2000) throw new Error("a reload failed (no new worker)");
        if (performance.now() - started > 10_000) throw new Error("a reload was not confirmed within 10 s");
        await sleep(5);
      }
    });
    await sleep(TAIL_MS);
  } finally {
    counts = await load.stop();
  }
  const table = await showProc(inst.masterSocket).catch(() => undefined);
  lingering = table ? table.workers.length - 1 : -1;
  return {
    setup: "A",
    repeat,
    reloads: reloadTimes.length,
    reloadStats: stats(reloadTimes),
    seconds: (performance.now() - t0) / 1000,
    load: counts,
    lingering,
  };
}

/** Start `haproxy -D …` and wait for the launcher to exit; returns the new daemon's pid (from the pid file). */
async function launchDaemon(res: Resources, dir: string, cfg: string, pidFile: string, logFile: string, oldPid?: number): Promise<number> {
  const args = ["-D", "-f", cfg, "-p", pidFile, ...(oldPid ? ["-sf", String(oldPid)] : [])];
  const fd = openSync(logFile, "a");
  let code: number | null;
  try {
    code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(HAPROXY, args, { cwd: dir, stdio: ["ignore", fd, fd] });
      if (child.pid !== undefined) res.trackPid(child.pid);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.on("error", reject);
      child.on("exit", (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
  } finally {
    closeSync(fd);
  }
  if (code !== 0) throw new Error(`haproxy ${args.join(" ")} exited ${code}: ${(await fs.readFile(logFile, "utf8")).slice(-2000)}`);
  const pid = Number((await fs.readFile(pidFile, "utf8")).trim().split(/\s+/)[0]);
  if (!pid || pid === oldPid) throw new Error(`no new pid in ${pidFile} after ${args.join(" ")}`);
  res.trackPid(pid);
  return pid;
}

async function runB(res: Resources, backendPorts: number[], repeat: number): Promise<RunResult> {
  const inst = await renderedInstallation(res, backendPorts);
  const original = await fs.readFile(inst.haproxyConfig, "utf8");
  const baseline = original.replace(/^\s*master-worker\s*\n/m, "").replace(/^\s*option idle-close-on-response\s*\n/m, "");
  if (/^\s*master-worker\s*$/m.test(baseline) || /^\s*option idle-close-on-response\s*$/m.test(baseline) || !/^\s*hard-stop-after\s/m.test(baseline)) {
    throw new Error("could not derive the baseline config");
  }
  const cfg = path.join(inst.dir, "baseline.cfg");
  await fs.writeFile(cfg, baseline);
  const pidFile = path.join(inst.dir, "baseline.pid");
  const logFile = path.join(inst.dir, "baseline.log");
  const started: number[] = [];

  let pid = await launchDaemon(res, inst.dir, cfg, pidFile, logFile);
  started.push(pid);
  await waitFor("the baseline HAProxy to accept connections", () => canConnect(inst.frontendPort), 10_000);

  const load = startLoad(inst.frontendPort);
  const t0 = performance.now();
  let reloadTimes: number[] = [];
  let counts: LoadCounts;
  try {
    await sleep(LEAD_MS);
    reloadTimes = await reloadLoop(async () => {
      pid = await launchDaemon(res, inst.dir, cfg, pidFile, logFile, pid);
      started.push(pid);
    });
    await sleep(TAIL_MS);
  } finally {
    counts = await load.stop();
  }
  const lingering = started.filter((p) => p !== pid && isAlive(p)).length;
  return {
    setup: "B",
    repeat,
    reloads: reloadTimes.length,
    reloadStats: stats(reloadTimes),
    seconds: (performance.now() - t0) / 1000,
    load: counts,
    lingering,
  };
}

/* ------------------------------------------------------------------ report */

function kindsText(k: Map<string, number>): string {
  if (k.size === 0) return "–";
  return [...k.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([kind, n]) => `${kind} ×${n}`)
    .join(", ");
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  log(`reload-under-load: ${RELOADS} reloads under keep-alive load (${LOOPS} loops), setups A and B, ${REPEATS} times each`);
  const results: RunResult[] = [];
  const loadAtStart = os.loadavg()[0]!;
  await withResources(async (outer) => {
    const backendPorts = await startBackends(outer, 10);
    for (let repeat = 1; repeat <= REPEATS; repeat++) {
      for (const setup of ["A", "B"] as const) {
        // Each run has its own folder and HAProxy, all stopped before the next run starts.
        const r = await withResources((res) => (setup === "A" ? runA(res, backendPorts, repeat) : runB(res, backendPorts, repeat)));
        results.push(r);
        log(
          `  ${setup}${repeat}: ${r.reloads} reloads in ${r.seconds.toFixed(1)} s, ` +
            `${r.load.sent} sent, ${r.load.ok} ok, ${r.load.failed} failed${r.load.failed ? ` (${kindsText(r.load.kinds)})` : ""}`,
        );
      }
    }
  });
  const info = await machineInfo();

  const name = (s: "A" | "B") =>
    s === "A" ? "A: ours (master-worker, SIGUSR2, idle-close-on-response)" : "B: baseline (`-D … -sf`, no idle-close-on-response)";
  const head = [
    "setup",
    "run",
    "reloads",
    "reload time median / p95 (ms)",
    "seconds",
    "requests sent",
    "succeeded",
    "failed",
    "failures by kind",
    "old processes still up when the load stopped",
  ];
  const rows = results.map((r) => [
    name(r.setup),
    r.repeat,
    r.reloads,
    `${ms(r.reloadStats.median)} / ${ms(r.reloadStats.p95)}`,
    r.seconds.toFixed(1),
    r.load.sent,
    r.load.ok,
    r.load.failed,
    kindsText(r.load.kinds),
    r.lingering,
  ]);
  const sum = (s: "A" | "B") => {
    const rs = results.filter((r) => r.setup === s);
    return {
      reloads: rs.reduce((a, r) => a + r.reloads, 0),
      sent: rs.reduce((a, r) => a + r.load.sent, 0),
      failed: rs.reduce((a, r) => a + r.load.failed, 0),
      runs: rs.length,
    };
  };
  const a = sum("A");
  const b = sum("B");
  const goalMet = a.failed === 0;
  const verdict =
    `A lost ${a.failed} of ${a.sent} requests over ${a.reloads} reloads in ${a.runs} runs; ` +
    `B lost ${b.failed} of ${b.sent} over ${b.reloads} restarts in ${b.runs} runs.`;

  const text = [`reload-under-load: ${LOOPS} keep-alive loops, ${RELOADS} reloads per run`, textTable(head, rows), "", verdict].join("\n");
  const markdown = [
    "## Reloads under keep-alive load",
    "",
    `Measured ${info.date} (${loadNote(loadAtStart)}). ${LOOPS} request loops share one keep-alive \`http.Agent\` (${LOOPS} sockets) and send \`GET /\` through HAProxy to 10 HTTP backends on 127.0.0.1, ` +
      `from ${LEAD_MS} ms before the first reload to ${TAIL_MS} ms after the last. ${RELOADS} reloads per run, one every ${RELOAD_EVERY_MS} ms or as soon as the previous one is done. ` +
      "The client never retries: every error or non-2xx answer counts as failed. The two setups alternate, each in its own folder and HAProxy.",
    "",
    "- **A, ours**: the shipped template rendered by `autoscaler generate` (`master-worker`, `option idle-close-on-response`, `hard-stop-after 30s`), HAProxy started with `-W -S master.sock`; each reload is SIGUSR2 to the master (what `systemctl reload haproxy` sends), and the next one waits until `show proc` shows the new worker.",
    "- **B, baseline**: the same rendered file without `master-worker` and without `option idle-close-on-response`, run as `haproxy -D -f haproxy.cfg -p haproxy.pid`, restarted each time with `haproxy -D -f haproxy.cfg -p haproxy.pid -sf <old pid>` (a new process; the old one soft-stops).",
    "",
    mdTable(head, rows),
    "",
    `**Goal: zero requests lost over about 100 reloads under keep-alive load with our setup** — **${goalMet ? "met" : "missed"}**. ${verdict}`,
  ].join("\n");
  return { id: "reload-under-load", text, markdown, goalMet };
}
