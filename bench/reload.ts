/**
 * The whole `autoscaler generate --reload` against HAProxy's own check + reload.
 *
 * A folder installation (real `autoscaler init`, shipped template on a free loopback port),
 * HAProxy in master-worker mode (`-W -S master.sock`), reload_command `kill -USR2 $(cat haproxy.pid)`,
 * 10 real HTTP backends on loopback. Each run first adds or removes an 11th hosts.d entry (not
 * timed), so every run really changes the file. Interleaved per run:
 *   (a) `autoscaler generate --reload --json` as a child process, spawn to exit (it exits after
 *       the master CLI shows the new worker), then until a fresh connection is answered by it;
 *   (b) HAProxy alone: `haproxy -c -f haproxy.cfg`, `kill -USR2 <master>`, poll `show proc`
 *       until judgeReload confirms the new worker, then until a fresh connection is answered by it.
 * To tell the workers apart, the bench's copy of the template adds one response header,
 * `X-Served-By: %pid`, to the frontend.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { createHostsStore, loadConfig, renderFromFiles, showProc, type HostEntry, type ProcTable } from "@autoscaler/shared";
import { makeInstallation, startHaproxy } from "../test/helpers/haproxy.js";
import { CLI, startBackend } from "../test/helpers/process.js";
import {
  type BenchResult,
  REPO_ROOT,
  loadNote,
  machineInfo,
  mdTable,
  ms,
  runCommand,
  sleep,
  stats,
  textTable,
  timeHaproxyCheck,
  withResources,
  type Stats,
  signalReloadAndConfirm,
} from "./lib.js";

const RUNS = 20;
const WARMUP = 2;
const STARTUP_RUNS = 10;
/** How often the bench polls `show proc` for HAProxy's own reload (the product polls every 20 ms). */
const POLL_MS = 5;
/** Modules whose load time is shown beside node start-up: what every CLI run loads. */
const IMPORTS = ["zod", "yargs", "@autoscaler/shared", "@autoscaler/cli"];

/** GET / on a fresh connection; resolves with the pid of the worker that answered. */
function servedBy(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/", agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode === 200 ? Number(res.headers["x-served-by"]) : undefined));
      res.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

/** Poll fresh connections until `pid` answers; returns ms waited and how many answers came from others. */
async function untilServedBy(port: number, pid: number, timeoutMs = 5000): Promise<{ waitMs: number; others: number }> {
  const t0 = performance.now();
  let others = 0;
  for (;;) {
    const who = await servedBy(port);
    if (who === pid) return { waitMs: performance.now() - t0, others };
    if (who !== undefined) others++;
    if (performance.now() - t0 > timeoutMs) throw new Error(`worker ${pid} did not answer within ${timeoutMs} ms`);
  }
}

/** Run the CLI; wall time from spawn to exit. */
function timeCli(args: string[], onPid: (pid: number) => void): Promise<{ wallMs: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid !== undefined) onPid(child.pid);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      const wallMs = performance.now() - t0;
      clearTimeout(timer);
      child.on("close", () => resolve({ wallMs, code, stdout, stderr }));
    });
  });
}

/** Wait until the master shows one worker only (the old one has finished), so runs start alike. */
async function settle(socket: string): Promise<ProcTable> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const t = await showProc(socket).catch(() => undefined);
    if (t && t.workers.length === 1) return t;
    if (Date.now() > deadline) throw new Error(`old workers still running after 10 s: ${JSON.stringify(t)}`);
    await sleep(10);
  }
}

interface Timings {
  renderMs: number;
  checkMs: number;
  reloadMs: number;
  confirmMs: number;
  totalMs: number;
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  log("reload: generate --reload vs haproxy's own check + reload");
  const loadAtStart = os.loadavg()[0]!;
  const data = await withResources(async (res) => {
    const inst = await makeInstallation(res.scope);
    const tmpl = path.join(inst.dir, "haproxy.cfg.tmpl");
    const text = await fs.readFile(tmpl, "utf8");
    const withHeader = text.replace(/^(\s*)(bind 127\.0\.0\.1:\d+)\s*$/m, "$1$2\n$1http-response set-header X-Served-By %pid");
    if (withHeader === text) throw new Error("could not add the X-Served-By header to the template");
    await fs.writeFile(tmpl, withHeader);

    const { config } = await loadConfig(inst.ini);
    const store = createHostsStore(config.hostsDir);
    const entry = (name: string, port: number): HostEntry => ({ name, address: "127.0.0.1", port, source: "manual", addedAt: new Date().toISOString() });
    for (let i = 1; i <= 10; i++) {
      const b = await startBackend(res.scope, `b${i}`);
      await store.put(entry(`b${String(i).padStart(2, "0")}`, b.port));
    }
    const extra = await startBackend(res.scope, "b11");
    const first = await inst.cli("generate");
    if (first.code !== 0) throw new Error(`generate failed: ${first.stderr}`);
    const hap = await startHaproxy(res.scope, inst);
    res.trackPid(hap.pid);
    await settle(inst.masterSocket);

    let has11 = false;
    const toggle = async () => {
      if (has11) await store.remove("b11");
      else await store.put(entry("b11", extra.port));
      has11 = !has11;
    };
    const trackCli = (pid: number) => res.trackPid(pid);

    const oursWall: number[] = [];
    const oursServing: number[] = [];
    const oursAfterExit: number[] = [];
    let oursOthers = 0;
    const inner: Timings[] = [];
    const hapConfirm: number[] = [];
    const hapServing: number[] = [];
    const hapCheck: number[] = [];
    const hapSignalToConfirm: number[] = [];
    const hapAfterConfirm: number[] = [];
    let hapOthers = 0;

    for (let r = 0; r < WARMUP + RUNS; r++) {
      const keep = r >= WARMUP;

      // (a) ours: the whole CLI run
      await toggle();
      await settle(inst.masterSocket);
      const out = await timeCli(["generate", "--reload", "--json", "--config", inst.ini], trackCli);
      if (out.code !== 0) throw new Error(`generate --reload failed (${out.code}): ${out.stderr}`);
      const result = JSON.parse(out.stdout) as { changed: boolean; confirmed?: boolean; workerPid?: number; timings: Timings };
      if (!result.changed || result.confirmed !== true || !result.workerPid) throw new Error(`generate --reload did not confirm a new worker: ${out.stdout}`);
      const served = await untilServedBy(inst.frontendPort, result.workerPid);
      if (keep) {
        oursWall.push(out.wallMs);
        oursAfterExit.push(served.waitMs);
        oursServing.push(out.wallMs + served.waitMs);
        oursOthers += served.others;
        inner.push(result.timings);
      }

      // (b) HAProxy alone: check + reload + confirm (the file changes too, written untimed)
      await toggle();
      await fs.writeFile(inst.haproxyConfig, await renderFromFiles(config, store));
      const before = await settle(inst.masterSocket);
      const t0 = performance.now();
      await timeHaproxyCheck(inst.haproxyConfig, inst.dir);
      const tCheck = performance.now() - t0;
      const workerPid = await signalReloadAndConfirm(inst.masterSocket, before, t0, POLL_MS);
      const tConfirm = performance.now() - t0;
      const served2 = await untilServedBy(inst.frontendPort, workerPid);
      if (keep) {
        hapCheck.push(tCheck);
        hapSignalToConfirm.push(tConfirm - tCheck);
        hapConfirm.push(tConfirm);
        hapAfterConfirm.push(served2.waitMs);
        hapServing.push(tConfirm + served2.waitMs);
        hapOthers += served2.others;
      }
    }

    // What the CLI costs before it does anything: node start-up and module loading.
    const version: number[] = [];
    const unchanged: number[] = [];
    const bareNode: number[] = [];
    const importTimes: number[][] = IMPORTS.map(() => []);
    await settle(inst.masterSocket);
    for (let r = 0; r < 1 + STARTUP_RUNS; r++) {
      const v = await timeCli(["--version"], trackCli);
      if (v.code !== 0) throw new Error(`autoscaler --version failed: ${v.stderr}`);
      const u = await timeCli(["generate", "--reload", "--json", "--config", inst.ini], trackCli);
      if (u.code !== 0 || (JSON.parse(u.stdout) as { changed: boolean }).changed) throw new Error(`unchanged generate misbehaved: ${u.stdout} ${u.stderr}`);
      const t0 = performance.now();
      await runCommand(process.execPath, ["-e", "0"], { onSpawn: trackCli });
      const tn = performance.now() - t0;
      const imports: number[] = [];
      for (const m of IMPORTS) {
        const t1 = performance.now();
        const ri = await runCommand(process.execPath, ["--input-type=module", "-e", `await import(${JSON.stringify(m)})`], {
          cwd: REPO_ROOT,
          onSpawn: trackCli,
        });
        imports.push(performance.now() - t1);
        if (ri.code !== 0) throw new Error(`importing ${m} failed: ${ri.stderr}`);
      }
      if (r === 0) continue;
      version.push(v.wallMs);
      unchanged.push(u.wallMs);
      bareNode.push(tn);
      imports.forEach((t, i) => importTimes[i]!.push(t));
    }
    return {
      oursWall: stats(oursWall),
      oursServing: stats(oursServing),
      oursAfterExit: stats(oursAfterExit),
      oursOthers,
      inner: {
        renderMs: stats(inner.map((t) => t.renderMs)),
        checkMs: stats(inner.map((t) => t.checkMs)),
        reloadMs: stats(inner.map((t) => t.reloadMs)),
        confirmMs: stats(inner.map((t) => t.confirmMs)),
        totalMs: stats(inner.map((t) => t.totalMs)),
        outside: stats(inner.map((t, i) => oursWall[i]! - t.totalMs)),
      },
      hapCheck: stats(hapCheck),
      hapSignalToConfirm: stats(hapSignalToConfirm),
      hapConfirm: stats(hapConfirm),
      hapAfterConfirm: stats(hapAfterConfirm),
      hapServing: stats(hapServing),
      hapOthers,
      version: stats(version),
      unchanged: stats(unchanged),
      bareNode: stats(bareNode),
      imports: importTimes.map(stats),
    };
  });
  const info = await machineInfo();

  const row = (name: string, s: Stats) => [name, ms(s.median), ms(s.p95), ms(s.min), ms(s.max)];
  const head = ["measure (ms)", "median", "p95", "min", "max"];
  const rows = [
    row("ours: `generate --reload`, spawn → exit (new worker confirmed)", data.oursWall),
    row("ours: spawn → new worker answers a fresh connection", data.oursServing),
    row("HAProxy alone: `haproxy -c` + SIGUSR2 → new worker in `show proc`", data.hapConfirm),
    row("HAProxy alone: → new worker answers a fresh connection", data.hapServing),
  ];
  const ratioConfirm = data.oursWall.median / data.hapConfirm.median;
  const ratioServing = data.oursServing.median / data.hapServing.median;
  const head2 = ["step (ms)", "median", "p95"];
  const rows2 = [
    ["renderMs (lock + read template + list hosts.d + render + compare)", ms(data.inner.renderMs.median), ms(data.inner.renderMs.p95)],
    ["checkMs (stage + fsync + `sh -c 'haproxy -c -f $CONFIG'`)", ms(data.inner.checkMs.median), ms(data.inner.checkMs.p95)],
    ["reloadMs (`sh -c 'kill -USR2 $(cat haproxy.pid)'`)", ms(data.inner.reloadMs.median), ms(data.inner.reloadMs.p95)],
    ["confirmMs (poll `show proc` every 20 ms until the new worker shows)", ms(data.inner.confirmMs.median), ms(data.inner.confirmMs.p95)],
    ["totalMs (in-process, as `--json` reports)", ms(data.inner.totalMs.median), ms(data.inner.totalMs.p95)],
    ["outside the pipeline: node start-up, module loading, config load, exit (wall − totalMs)", ms(data.inner.outside.median), ms(data.inner.outside.p95)],
    ["for comparison, HAProxy alone: `haproxy -c`", ms(data.hapCheck.median), ms(data.hapCheck.p95)],
    [
      "for comparison, HAProxy alone: SIGUSR2 → new worker in `show proc` (polled every 5 ms)",
      ms(data.hapSignalToConfirm.median),
      ms(data.hapSignalToConfirm.p95),
    ],
  ];
  const head3 = ["fixed cost of a CLI run (ms)", "median", "p95"];
  const rows3 = [
    ["`node -e 0`", ms(data.bareNode.median), ms(data.bareNode.p95)],
    ...IMPORTS.map((m, i) => [`\`node -e 'await import("${m}")'\``, ms(data.imports[i]!.median), ms(data.imports[i]!.p95)]),
    ["`autoscaler --version`", ms(data.version.median), ms(data.version.p95)],
    ["`autoscaler generate --reload` with nothing changed (exits after the compare)", ms(data.unchanged.median), ms(data.unchanged.p95)],
  ];
  const gap =
    `After the CLI exits, a fresh connection reached the new worker after ${ms(data.oursAfterExit.median)} ms median (p95 ${ms(data.oursAfterExit.p95)}); ` +
    `${data.oursOthers} fresh connection(s) over ${RUNS} runs were still answered by the old worker after the CLI had exited. ` +
    `For HAProxy alone, from \`show proc\` showing the new worker to it answering: ${ms(data.hapAfterConfirm.median)} ms median (p95 ${ms(data.hapAfterConfirm.p95)}), ${data.hapOthers} answer(s) from the old worker meanwhile.`;

  const text = [
    `reload: ${RUNS} runs, 10 backends, median/p95/min/max in ms`,
    textTable(head, rows),
    `ratio ours/HAProxy: ${ratioConfirm.toFixed(2)}× to confirmation, ${ratioServing.toFixed(2)}× to serving`,
    "",
    "inside generate --reload (from --json timings)",
    textTable(head2, rows2),
    "",
    textTable(head3, rows3),
    "",
    gap,
  ].join("\n");

  const markdown = [
    "## `generate --reload` vs HAProxy's own check + reload",
    "",
    `Measured ${info.date} (${loadNote(loadAtStart)}): ${RUNS} runs after ${WARMUP} warm-ups, 10 backends (real HTTP servers on 127.0.0.1), HAProxy in master-worker mode (\`-W -S master.sock\`), reload_command \`kill -USR2 $(cat haproxy.pid)\`. ` +
      "Before each run an 11th hosts.d entry is added or removed (not timed), so every run changes the file. The two measurements alternate, and each starts once the old worker has gone.",
    "",
    mdTable(head, rows),
    "",
    `Ours takes **${ratioConfirm.toFixed(2)}×** HAProxy's own check + reload to confirmation (${ms(data.oursWall.median - data.hapConfirm.median)} ms more at the median), and **${ratioServing.toFixed(2)}×** to the new worker serving.`,
    "",
    "- **ours**: `autoscaler generate --reload --json` spawned as a child process; it exits after the master CLI's `show proc` shows a new worker (judgeReload). Then fresh connections are made until the new worker (told apart by an `X-Served-By: %pid` header the bench adds to its copy of the template) answers.",
    "- **HAProxy alone**: `haproxy -c -f haproxy.cfg`, then `kill -USR2 <master>`, then `show proc` polled every 5 ms until judgeReload confirms, then the same fresh-connection poll.",
    "",
    "Where the time of `generate --reload` goes (its own `--json` timings):",
    "",
    mdTable(head2, rows2),
    "",
    mdTable(head3, rows3),
    "",
    gap,
    "",
    `No goal was set for this one beyond showing the two side by side. Of the ${ms(data.oursWall.median - data.hapConfirm.median)} ms that ours adds at the median, ` +
      `${ms(data.inner.outside.median)} ms are outside the apply pipeline (node start-up ${ms(data.bareNode.median)} ms, the rest loading modules and the config), ` +
      `and the pipeline itself takes ${ms(data.inner.totalMs.median)} ms against HAProxy's ${ms(data.hapConfirm.median)} ms (render ${ms(data.inner.renderMs.median)} ms, confirmation polled every 20 ms instead of 5 ms).`,
  ].join("\n");

  return { id: "reload", text, markdown };
}
