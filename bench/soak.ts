/**
 * Soak: a long run of everything at once, looking for what only time shows (lost requests,
 * memory growth, leaked file descriptors). Opt-in (`npx tsx bench/run.ts soak`, never part of
 * `npm run bench` or `npm test`); its section goes into RELIABILITY.md.
 *
 * One real proxy (installation, OpenSSH sshd, HAProxy master-worker, `autoscaler master`) and
 * AGENTS real nodes (a web app child and a real `autoscaler agent`, `agent.interval=1`, through
 * the proxy's sshd). Meanwhile, for WARMUP plus SOAK_MINUTES (env, default 30):
 *   - load: test/helpers/load.ts runLoad's bounded keep-alive loops (LOAD.concurrency,
 *     LOAD.gapMs between one loop's requests) through HAProxy's frontend, every failure
 *     counted with its reason;
 *   - a reload every RELOAD_EVERY_MS: a hand-written hosts.d entry for one extra real web server
 *     is written and removed in turn (renamed in, unlinked), which the master's watcher turns
 *     into render → check → swap → reload; each reload is confirmed by the master's
 *     `haproxy.reloads` (GET /status) going up. The CLI's `add-host` is not used because it
 *     reloads HAProxy itself, which would leave the master nothing to apply.
 *   - the master's VmRSS and its open file descriptors (/proc/PID/fd) sampled once a minute,
 *     always 5 s after an add was confirmed so every sample sees the same state; the first
 *     sample is taken after the warm-up and is the "start", the last is the "end".
 * Every loop is bounded by a count and a deadline; everything is stopped by pid at the end.
 */
import { promises as fs } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { startNode, startProxy, type Proxy, type TestNode } from "../test/helpers/cluster.js";
import { serverLines, showProc } from "../test/helpers/haproxy.js";
import { runLoad } from "../test/helpers/load.js";
import { startBackend, waitFor } from "../test/helpers/process.js";
import type { MasterStatus } from "../test/helpers/status.js";
import { type BenchResult, loadNote, machineInfo, mdTable, mib, ms, readProcCpu, readProcMemory, sleep, stats, textTable, withResources } from "./lib.js";

const AGENTS = 20;
const RELOAD_EVERY_MS = 10_000;
/** Cycles per minute: one RSS/fd sample every this many reload cycles. */
const CYCLES_PER_SAMPLE = 60_000 / RELOAD_EVERY_MS;
const WARMUP_MS = 60_000;
/** When in a cycle the sample is read: well after the reload, well before the next. */
const SAMPLE_AT_MS = 5_000;
const CONFIRM_TIMEOUT_MS = 8_000;
const LOAD = { concurrency: 4, gapMs: 20, maxRequestsPerSecond: 1000 };
const REGISTRATION_TIMEOUT_MS = 120_000;
const GOAL = { failed: 0, rssGrowth: 0.1 };
const EXTRA = "soak-extra";

/** The soak's length in minutes after the warm-up: SOAK_MINUTES, default 30. */
function soakMinutes(): number {
  const raw = process.env.SOAK_MINUTES ?? "30";
  const m = Number(raw);
  if (!Number.isInteger(m) || m < 1 || m > 24 * 60) throw new Error(`SOAK_MINUTES="${raw}": expected a whole number of minutes, 1 to 1440`);
  return m;
}

/** GET /status on the master's metrics port, on a fresh connection so no idle socket stays open in the master between samples. */
function httpStatus(port: number): Promise<MasterStatus> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/status", agent: false, timeout: 5_000 }, (r) => {
      const chunks: Buffer[] = [];
      r.on("data", (b: Buffer) => chunks.push(b));
      r.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch (err) {
          reject(err as Error);
        }
      });
      r.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("GET /status: no answer within 5 s")));
    req.on("error", reject);
  });
}

/** The open file descriptors of a process, counted by kind (socket, pipe, anon_inode, file, …). */
async function readFds(pid: number): Promise<{ total: number; kinds: Record<string, number> }> {
  const names = await fs.readdir(`/proc/${pid}/fd`);
  const kinds: Record<string, number> = {};
  for (const n of names) {
    const target = await fs.readlink(`/proc/${pid}/fd/${n}`).catch(() => "gone");
    const kind = /^(\w+):/.exec(target)?.[1] ?? (target.startsWith("/") ? "file" : target);
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return { total: names.length, kinds };
}

/** GET /status calls that failed during the loop (counted, not fatal: one slow answer must not end a 30-minute run). */
let statusErrors = 0;

interface Sample {
  minute: number;
  rss: number;
  fds: number;
  fdKinds: Record<string, number>;
  live: number;
  cpuSeconds: number;
  at: number;
}

async function takeSample(proxy: Proxy, minute: number): Promise<Sample> {
  const pid = proxy.master.child.pid!;
  const [mem, fds, cpu, st] = await Promise.all([readProcMemory(pid), readFds(pid), readProcCpu(pid), httpStatus(proxy.metricsPort).catch(() => undefined)]);
  if (!mem || !cpu) throw new Error("the master exited during the soak");
  if (!st) statusErrors++;
  return {
    minute,
    rss: mem.rss,
    fds: fds.total,
    fdKinds: fds.kinds,
    live: st ? st.nodes.filter((n) => n.state === "live").length : NaN,
    cpuSeconds: cpu.self + cpu.reapedChildren,
    at: performance.now(),
  };
}

/** HAProxy's own reload count (master CLI `show proc`); retried, since the HAProxy master re-executes itself on each reload and refuses connections meanwhile. */
function haproxyReloads(proxy: Proxy): Promise<number> {
  return waitFor("HAProxy's master CLI", async () => (await showProc(proxy.inst)).master.reloads + 1, 5_000, 50).then((n) => n - 1);
}

/** Write (by renaming in, so the watcher never sees half a file) or remove the extra backend's hosts.d entry. */
async function toggleExtra(proxy: Proxy, add: boolean, port: number): Promise<void> {
  const file = path.join(proxy.inst.dir, "hosts.d", `${EXTRA}.json`);
  if (!add) return fs.unlink(file);
  const temp = path.join(proxy.inst.dir, `.${EXTRA}.json.tmp`);
  await fs.writeFile(temp, JSON.stringify({ address: "127.0.0.1", port }) + "\n");
  await fs.rename(temp, file);
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  const minutes = soakMinutes();
  statusErrors = 0;
  return withResources(async (res) => {
    const load1 = os.loadavg()[0]!;
    const startedAt = new Date();
    const proxy = await startProxy(res.scope, { settings: [`scaling.max_nodes=${AGENTS * 2}`] });
    const masterPid = proxy.master.child.pid!;
    log(`soak: proxy up (master pid ${masterPid}); starting ${AGENTS} agents`);
    const nodes: TestNode[] = [];
    // Four at a time: each node runs the CLI twice (authorize-key, init) before its agent starts.
    for (let i = 0; i < AGENTS; i += 4) {
      const batch = Array.from({ length: Math.min(4, AGENTS - i) }, (_, j) =>
        startNode(res.scope, [proxy], { name: `soak-${String(i + j + 1).padStart(2, "0")}` }),
      );
      nodes.push(...(await Promise.all(batch)));
    }
    await waitFor(
      `all ${AGENTS} agents live and in haproxy.cfg`,
      async () => {
        const st = await httpStatus(proxy.metricsPort);
        const cfg = serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8"));
        return st.nodes.filter((n) => n.state === "live").length === AGENTS && cfg.length === AGENTS;
      },
      REGISTRATION_TIMEOUT_MS,
      250,
    );
    const extra = await startBackend(res.scope, EXTRA);
    log(`soak: all ${AGENTS} agents live; ${WARMUP_MS / 1000} s warm-up, then ${minutes} min measured`);

    const cycles = CYCLES_PER_SAMPLE * (minutes + 1);
    const totalMs = WARMUP_MS + minutes * 60_000 + SAMPLE_AT_MS;
    const haproxyBefore = await haproxyReloads(proxy);
    const statusBefore = await httpStatus(proxy.metricsPort);
    const confirmMs: number[] = [];
    const unconfirmed: string[] = [];
    const samples: Sample[] = [];
    let stopLoad = false;
    const loadPromise = runLoad({
      port: proxy.inst.frontendPort,
      path: "/hit",
      concurrency: LOAD.concurrency,
      gapMs: LOAD.gapMs,
      maxRequests: Math.ceil((totalMs / 1000) * LOAD.maxRequestsPerSecond),
      deadlineMs: totalMs + 60_000,
      stop: () => stopLoad,
    });
    const t0 = performance.now();
    // From here on, whatever happens, the load loops are told to stop.
    try {
      // Cycle i starts at t0 + i·RELOAD_EVERY_MS; cycle 0 adds, cycle 1 removes, …; samples in cycles 6, 12, …
      for (let i = 0; i <= cycles && performance.now() - t0 < totalMs + 60_000; i++) {
        const cycleStart = t0 + i * RELOAD_EVERY_MS;
        await sleep(Math.max(0, cycleStart - performance.now()));
        const add = i % 2 === 0;
        const before = await waitFor("GET /status", async () => (await httpStatus(proxy.metricsPort)).haproxy.reloads + 1, CONFIRM_TIMEOUT_MS, 100)
          .then((n) => n - 1)
          .catch(() => undefined);
        if (before === undefined) statusErrors++;
        const tw = performance.now();
        await toggleExtra(proxy, add, extra.port);
        try {
          if (before === undefined) throw new Error("GET /status failed before the change");
          await waitFor("the master's reload", async () => (await httpStatus(proxy.metricsPort)).haproxy.reloads > before, CONFIRM_TIMEOUT_MS, 50);
          confirmMs.push(performance.now() - tw);
        } catch (err) {
          unconfirmed.push(`cycle ${i} (${add ? "add" : "remove"}): ${(err as Error).message}`);
        }
        if (i > 0 && i % CYCLES_PER_SAMPLE === 0) {
          await sleep(Math.max(0, cycleStart + SAMPLE_AT_MS - performance.now()));
          const s = await takeSample(proxy, i / CYCLES_PER_SAMPLE - 1);
          samples.push(s);
          log(
            `soak: minute ${s.minute}/${minutes}: master RSS ${mib(s.rss)} MiB, ${s.fds} fds, ${s.live} live, ${confirmMs.length} reloads confirmed, ${unconfirmed.length} not`,
          );
        }
      }
    } finally {
      stopLoad = true;
    }
    const load = await loadPromise;
    if (statusErrors > 0) log(`soak: ${statusErrors} GET /status calls failed during the run`);
    const statusAfter = await httpStatus(proxy.metricsPort);
    const haproxyAfter = await haproxyReloads(proxy);
    const agentsRunning = nodes.filter((n) => n.agent.child.exitCode === null && n.agent.child.signalCode === null).length;
    const load1End = os.loadavg()[0]!;

    /* ---------------- judging */
    const first = samples[0]!;
    const last = samples[samples.length - 1]!;
    const windowS = (last.at - first.at) / 1000;
    const masterCpuPct = ((last.cpuSeconds - first.cpuSeconds) / windowS) * 100;
    const rssMin = Math.min(...samples.map((s) => s.rss));
    const rssMax = Math.max(...samples.map((s) => s.rss));
    const fdMin = Math.min(...samples.map((s) => s.fds));
    const fdMax = Math.max(...samples.map((s) => s.fds));
    const liveMin = Math.min(...samples.map((s) => s.live));
    const liveEnd = statusAfter.nodes.filter((n) => n.state === "live").length;
    const growth = last.rss / first.rss - 1;
    const failedOk = load.failed === GOAL.failed;
    const rssOk = growth <= GOAL.rssGrowth;
    const fdOk = last.fds === first.fds;
    const reloadsOk = unconfirmed.length === 0 && liveEnd === AGENTS && agentsRunning === AGENTS;
    const goalMet = failedOk && rssOk && fdOk && reloadsOk;
    const reasons = new Map<string, number>();
    for (const f of load.failures) reasons.set(f, (reasons.get(f) ?? 0) + 1);
    const conf = stats(confirmMs);
    const masterReloads = statusAfter.haproxy.reloads - statusBefore.haproxy.reloads;
    const fdKinds = (s: Sample) =>
      Object.entries(s.fdKinds)
        .sort()
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
    const verdict = (ok: boolean) => (ok ? "met" : "missed");

    const head = ["", "start", "end", "min", "max", "goal", "result"];
    const rows: (string | number)[][] = [
      ["failed requests (whole run)", "", load.failed, "", "", "0", verdict(failedOk)],
      [
        "master RSS, MiB",
        mib(first.rss),
        mib(last.rss),
        mib(rssMin),
        mib(rssMax),
        `end ≤ start × ${1 + GOAL.rssGrowth}`,
        `${verdict(rssOk)} (${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(1)} %)`,
      ],
      ["master open fds", first.fds, last.fds, fdMin, fdMax, "end = start", verdict(fdOk)],
      ["agents live", first.live, liveEnd, liveMin, "", `all ${AGENTS}`, verdict(liveEnd === AGENTS && agentsRunning === AGENTS)],
    ];
    const other = [
      `${(load.ok + load.failed).toLocaleString("en-US")} requests through HAProxy (${LOAD.concurrency} keep-alive loops, ${LOAD.gapMs} ms between one loop's requests), ${load.ok.toLocaleString("en-US")} ok, ${load.failed} failed; ${extra.hits().toLocaleString("en-US")} of them served by the extra backend while it was in; load ended by ${load.endedBy}.`,
      `${confirmMs.length} reloads confirmed by the master's \`haproxy.reloads\` (${unconfirmed.length} not confirmed within ${CONFIRM_TIMEOUT_MS / 1000} s); hosts.d change to confirmed reload median ${ms(conf.median)} ms, p95 ${ms(conf.p95)} ms, max ${ms(conf.max)} ms. ` +
        `The master counted ${masterReloads} reloads, ${statusAfter.haproxy.reload_failures - statusBefore.haproxy.reload_failures} reload failures and ${statusAfter.haproxy.check_failures - statusBefore.haproxy.check_failures} check failures; HAProxy's own counter (\`show proc\`) went up by ${haproxyAfter - haproxyBefore}.`,
      `Master CPU over the ${(windowS / 60).toFixed(1)} measured minutes: ${masterCpuPct.toFixed(2)} % of one core (utime+stime of it and its reaped children: the \`haproxy -c\` checks and reload commands).`,
      `Master fds by kind: start ${fdKinds(first)}; end ${fdKinds(last)}.`,
      `Per minute: RSS (MiB) ${samples.map((s) => mib(s.rss)).join(", ")}; fds ${samples.map((s) => s.fds).join(", ")}.`,
    ];
    if (reasons.size > 0)
      other.push(`Failure reasons (the first ${load.failures.length} recorded): ${[...reasons].map(([r, n]) => `${n} × ${r}`).join("; ")}.`);
    if (statusErrors > 0) other.push(`${statusErrors} \`GET /status\` reads by the soak failed (a busy machine); they are not requests through HAProxy.`);
    if (unconfirmed.length > 0) other.push(`Unconfirmed reloads: ${unconfirmed.slice(0, 5).join("; ")}${unconfirmed.length > 5 ? "; …" : ""}.`);

    const info = await machineInfo();
    const markdown = [
      `## Soak: ${minutes} minutes, ${AGENTS} agents, a reload every ${RELOAD_EVERY_MS / 1000} s, load the whole time`,
      "",
      `Measured ${startedAt.toISOString().replace(/\.\d+Z$/, "Z")} by \`SOAK_MINUTES=${minutes} npx tsx bench/run.ts soak\` (opt-in: \`npm run bench\` does not run it; \`npm run build\` first). ` +
        `Machine: ${info.cpus} CPUs (${info.cpuModel}); ${info.haproxy}; node ${info.node}; ${loadNote(load1)}, ${load1End.toFixed(2)} at the end.`,
      "",
      `One proxy on loopback (OpenSSH sshd, HAProxy master-worker, \`autoscaler master\`) and ${AGENTS} real \`autoscaler agent\`s (\`agent.interval=1\`, each with its own web app) through the sshd. ` +
        `Every ${RELOAD_EVERY_MS / 1000} s a hand-written hosts.d entry for one extra real web server is written or removed in turn, and the master applies it (render, check, swap, reload, confirm). ` +
        `Keep-alive load goes through HAProxy the whole time. The master's VmRSS and open file descriptors (/proc/PID/fd) are read once a minute, 5 s after an add was confirmed; ` +
        `"start" is the first reading, after a ${WARMUP_MS / 1000} s warm-up under the same load and reloads, "end" the last, ${minutes} minutes later. Failed requests count the warm-up too.`,
      "",
      mdTable(head, rows),
      "",
      ...other.flatMap((l) => [l, ""]),
      `**Goals: no failed request, master RSS growth at most ${GOAL.rssGrowth * 100} %, as many fds at the end as at the start** — ` +
        `failed requests **${verdict(failedOk)}** (${load.failed}), RSS **${verdict(rssOk)}** (${mib(first.rss)} → ${mib(last.rss)} MiB), fds **${verdict(fdOk)}** (${first.fds} → ${last.fds}).`,
    ].join("\n");
    const text = [
      "soak",
      textTable(
        head,
        rows.map((r) => r.map(String)),
      ),
      "",
      ...other,
      "",
      `goal: ${goalMet ? "met" : "MISSED"}`,
    ].join("\n");
    return { id: "soak", text, markdown, goalMet };
  });
}
