/**
 * Registration through HAProxy's runtime API, side by side with the reload path and with
 * HAProxy's own `add server` + `enable server` (the floor), idle and with the CPUs saturated;
 * then 200 runtime adds and removes under keep-alive load.
 *
 * Two proxies on 127.0.0.1 in one run (real sshd, HAProxy master-worker, `autoscaler master
 * --log-level debug`, the shipped template): "runtime" with `runtime_socket` at its admin socket,
 * "reload" without one (today's path: debounce, check, reload, confirm). For each of TRIALS
 * trials, in turn: a fresh node (web app recording its first proxied `GET /hit`, new `autoscaler
 * agent`) joins the runtime proxy, then another joins the reload proxy, then the floor: the
 * bench itself sends `add server … check` (with the template's default-server options), `enable
 * health` and `enable server` to the runtime proxy's admin socket. Each time a client polls the
 * frontend with `GET /hit` on fresh connections every CLIENT_EVERY_MS ms. hello → first request
 * is the agent's "hello sent" log time to the web app's first `GET /hit` (same clock); the floor
 * is measured from the moment before `add server` was sent. Between trials the node is removed
 * and the backend is empty again.
 * "Saturated": the same trials while one bounded HTTP load loop per CPU runs on loopback (each
 * a child process hammering its own HTTP server over keep-alive, stopped by pid at the end and
 * by its own deadline).
 * Churn: a permanent backend on the runtime proxy takes keep-alive load (LOOPS loops) while
 * CHURN hosts.d entries are added and removed in turn (each waited for in `show servers state`);
 * every request is counted, and so are reloads (HAProxy's `show proc` and the master's).
 */
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { createHostsStore, loadConfig, sendCliCommand, showProc } from "@autoscaler/shared";
import { startDaemon, startProxy, startWebApp, type Proxy } from "../test/helpers/cluster.js";
import { runLoad } from "../test/helpers/load.js";
import { freePort } from "../test/helpers/process.js";
import { agentInis, clientLoop, startRecordingApp, stopDaemon } from "./registration.js";
import { type BenchResult, type Resources, loadNote, logLines, machineInfo, mdTable, ms, sleep, stats, textTable, withResources, type Stats } from "./lib.js";

const TRIALS = 15;
const CLIENT_EVERY_MS = 1;
const CHURN = 200;
const LOOPS = 4;
const GOAL_MEDIAN_MS = 20;
const GOAL_P95_MS = 50;
/** Hard bound of each saturating load child (it is stopped by pid long before). */
const BURN_DEADLINE_MS = 600_000;

type Mode = "runtime" | "reload" | "floor";
const MODES: Mode[] = ["runtime", "reload", "floor"];

/** Wait until the proxy's HAProxy runs exactly `names` in the backend (asked on its admin socket). */
async function untilRunning(proxy: Proxy, names: string[], timeoutMs = 15_000): Promise<void> {
  const want = [...names].sort().join(",");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await sendCliCommand(path.join(proxy.inst.dir, "admin.sock"), "show servers state autoscaler").catch(() => "");
    const have = answer
      .split("\n")
      .filter((l) => /^\d+ autoscaler /.test(l))
      .map((l) => l.split(" ")[3])
      .sort()
      .join(",");
    if (have === want) return;
    if (Date.now() > deadline) throw new Error(`HAProxy runs [${have}], expected [${want}]`);
    await sleep(5);
  }
}

/** One agent joining `proxy`: hello → first proxied request (ms); the node is removed again afterwards. */
async function agentTrial(res: Resources, proxy: Proxy, iniFor: (name: string, port: number) => Promise<string>, name: string): Promise<number> {
  const store = createHostsStore(path.join(proxy.inst.dir, "hosts.d"));
  const app = await startRecordingApp(res, name);
  const client = clientLoop(proxy.inst.frontendPort, () => app.firstHit() !== undefined, CLIENT_EVERY_MS);
  const agent = startDaemon(res.scope, ["agent", "--config", await iniFor(name, app.port), "--log-level", "debug"]);
  await client;
  if (app.firstHit() === undefined) throw new Error(`${name}: no request reached the node; agent log: ${agent.log().slice(-1500)}`);
  const hello = logLines(agent.log()).find((l) => l.msg === "hello sent");
  if (!hello) throw new Error(`${name}: the agent logged no "hello sent"`);
  const took = app.firstHit()! - hello.t;
  await stopDaemon(agent);
  await app.close();
  await store.remove(name);
  await untilRunning(proxy, []);
  return took;
}

/** HAProxy alone: add server + enable health + enable server on the admin socket → first proxied request (ms). */
async function floorTrial(res: Resources, proxy: Proxy, name: string): Promise<number> {
  const socket = path.join(proxy.inst.dir, "admin.sock");
  const app = await startRecordingApp(res, name);
  const client = clientLoop(proxy.inst.frontendPort, () => app.firstHit() !== undefined, CLIENT_EVERY_MS);
  await sleep(20); // the client loop is running
  const t0 = Date.now();
  const ref = `autoscaler/${name}`;
  const answer = await sendCliCommand(
    socket,
    `add server ${ref} 127.0.0.1:${app.port} inter 2s fall 2 rise 2 check; enable health ${ref}; enable server ${ref}`,
  );
  if (!answer.startsWith("New server registered.")) throw new Error(`add server: ${answer}`);
  await client;
  if (app.firstHit() === undefined) throw new Error(`${name}: no request reached the floor node`);
  const took = app.firstHit()! - t0;
  await sendCliCommand(socket, `set server ${ref} state maint; del server ${ref}`);
  await app.close();
  await untilRunning(proxy, []);
  return took;
}

/** One bounded HTTP load loop per CPU on loopback, as child processes; returns their stop function. */
async function saturate(res: Resources): Promise<() => Promise<void>> {
  const script = `
    const http = require("http");
    const deadline = Date.now() + ${BURN_DEADLINE_MS};
    const server = http.createServer((q, r) => r.end("x")).listen(0, "127.0.0.1", () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
      const port = server.address().port;
      const loop = () => { if (Date.now() > deadline) process.exit(0); http.get({ host: "127.0.0.1", port, agent }, (r) => { r.resume(); r.on("end", loop); }).on("error", loop); };
      for (let i = 0; i < 4; i++) loop();
    });`;
  const children = os.cpus().map(() => res.scope.track(spawn(process.execPath, ["-e", script], { stdio: "ignore" })));
  await sleep(1000);
  return async () => {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once("exit", r)))));
  };
}

interface Churn {
  ok: number;
  failed: number;
  failures: string[];
  operations: number;
  haproxyReloads: number;
  masterReloads: number;
  runtimeApplies: number;
  ms: number;
}

/** CHURN adds and removes on the runtime proxy while keep-alive load runs through it. */
async function churn(res: Resources, proxy: Proxy): Promise<Churn> {
  const store = createHostsStore(path.join(proxy.inst.dir, "hosts.d"));
  const dir = await res.tempDir("autoscaler-bench-churn-");
  const steady = await freePort();
  await startWebApp(res.scope, "steady", "127.0.0.1", steady, dir);
  const churners = [await freePort(), await freePort()];
  for (const [i, port] of churners.entries()) await startWebApp(res.scope, `churn-${i}`, "127.0.0.1", port, dir);
  await store.put({ name: "steady", address: "127.0.0.1", port: steady, source: "manual", addedAt: new Date().toISOString() });
  await untilRunning(proxy, ["steady"]);
  const procBefore = await showProc(proxy.inst.masterSocket);
  const statusBefore = await proxy.status();
  let done = false;
  const t0 = performance.now();
  const load = runLoad({ port: proxy.inst.frontendPort, concurrency: LOOPS, maxRequests: 2_000_000, deadlineMs: 300_000, stop: () => done });
  let operations = 0;
  for (let i = 0; operations < CHURN; i++) {
    const name = `churn-${i}`;
    await store.put({ name, address: "127.0.0.1", port: churners[i % 2]!, source: "manual", addedAt: new Date().toISOString() });
    await untilRunning(proxy, ["steady", name]);
    await sleep(20); // let it take requests
    await store.remove(name);
    await untilRunning(proxy, ["steady"]);
    operations += 2;
  }
  await sleep(200);
  done = true;
  const result = await load;
  const took = performance.now() - t0;
  const procAfter = await showProc(proxy.inst.masterSocket);
  const statusAfter = await proxy.status();
  await store.remove("steady");
  await untilRunning(proxy, []);
  return {
    ok: result.ok,
    failed: result.failed,
    failures: result.failures,
    operations,
    haproxyReloads: procAfter.master.reloads - procBefore.master.reloads,
    masterReloads: statusAfter.haproxy.reloads - statusBefore.haproxy.reloads,
    runtimeApplies: statusAfter.haproxy.runtime_applies - statusBefore.haproxy.runtime_applies,
    ms: took,
  };
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  log(`runtime-registration: ${TRIALS} trials per path, idle and saturated; ${CHURN} adds/removes under load`);
  const loadAtStart = os.loadavg()[0]!;
  const data = await withResources(async (res) => {
    const runtime = await startProxy(res.scope, { settings: ["haproxy.runtime_socket=admin.sock", "scaling.max_nodes=200"] });
    const reload = await startProxy(res.scope, { settings: ["scaling.max_nodes=200"] });
    for (const p of [runtime, reload]) {
      const { config } = await loadConfig(p.inst.ini);
      if ((config.haproxy.runtime_socket !== "") !== (p === runtime)) throw new Error("the proxies' runtime_socket settings are not as intended");
      while ((await p.status()).haproxy.applies < 1) await sleep(20);
    }
    const inis = { runtime: await agentInis(res, runtime), reload: await agentInis(res, reload) };
    const results: Record<"idle" | "saturated", Record<Mode, number[]>> = {
      idle: { runtime: [], reload: [], floor: [] },
      saturated: { runtime: [], reload: [], floor: [] },
    };
    for (const condition of ["idle", "saturated"] as const) {
      const stopBurn = condition === "saturated" ? await saturate(res) : async () => undefined;
      try {
        for (let i = 1; i <= TRIALS; i++) {
          const tag = `${condition[0]}${String(i).padStart(2, "0")}`;
          const r = await agentTrial(res, runtime, inis.runtime, `rt-${tag}`);
          const l = await agentTrial(res, reload, inis.reload, `rl-${tag}`);
          const f = await floorTrial(res, runtime, `fl-${tag}`);
          results[condition].runtime.push(r);
          results[condition].reload.push(l);
          results[condition].floor.push(f);
          log(`runtime-registration: ${condition} ${i}: runtime ${r} ms, reload ${l} ms, HAProxy alone ${f} ms`);
        }
      } finally {
        await stopBurn();
      }
    }
    log("runtime-registration: churn under keep-alive load");
    const c = await churn(res, runtime);
    return { results, churn: c, fallbacks: (await runtime.status()).haproxy.runtime_fallbacks };
  });
  const info = await machineInfo();
  const row = (label: string, s: Stats) => [label, ms(s.median), ms(s.p95), ms(s.min), ms(s.max)];
  const head = ["hello → first proxied request (ms)", "median", "p95", "min", "max"];
  const label: Record<Mode, string> = {
    runtime: "ours, runtime path (`add server`, no reload)",
    reload: "ours, reload path (debounce, `haproxy -c`, reload, confirm)",
    floor: "HAProxy alone: `add server` + `enable server` → first request",
  };
  const tables = (["idle", "saturated"] as const).map((condition) => ({
    condition,
    rows: MODES.map((m) => row(label[m], stats(data.results[condition][m]))),
    runtime: stats(data.results[condition].runtime),
    reload: stats(data.results[condition].reload),
  }));
  const idle = tables[0]!.runtime;
  const goalMet = idle.median <= GOAL_MEDIAN_MS && idle.p95 <= GOAL_P95_MS && data.churn.failed === 0;
  const c = data.churn;
  const churnRows = [
    ["requests answered 2xx / failed", `${c.ok} / ${c.failed}`],
    ["adds + removes (each waited for in `show servers state`)", String(c.operations)],
    ["reloads meanwhile: HAProxy's `show proc` / the master's count", `${c.haproxyReloads} / ${c.masterReloads}`],
    ["changes the master applied through the runtime API", String(c.runtimeApplies)],
    ["duration (s)", (c.ms / 1000).toFixed(1)],
  ];
  const ratio = (a: Stats, b: Stats) => (b.median / a.median).toFixed(1);
  const summary =
    `**Goal: runtime path median ≤ ${GOAL_MEDIAN_MS} ms and p95 ≤ ${GOAL_P95_MS} ms (idle), 0 failed requests under churn** — **${goalMet ? "met" : "missed"}** ` +
    `(median ${ms(idle.median)} ms, p95 ${ms(idle.p95)} ms; ${c.failed} failed of ${c.ok + c.failed}). ` +
    `The reload path takes ${ratio(tables[0]!.runtime, tables[0]!.reload)}× as long idle and ${ratio(tables[1]!.runtime, tables[1]!.reload)}× saturated. ` +
    `Runtime fallbacks during the run: ${data.fallbacks}.`;
  const intro =
    `Measured ${info.date} (${loadNote(loadAtStart)}). Two proxies on 127.0.0.1 in one run (real sshd, HAProxy master-worker, \`autoscaler master\`, the shipped template): one with \`runtime_socket\` at its admin socket, one without. ` +
    `${TRIALS} trials per path and condition, interleaved: a fresh node (web app + \`autoscaler agent\`) joins each proxy in turn, then the bench sends HAProxy's own \`add server … check\` (with the template's default-server options) + \`enable health\` + \`enable server\` on the admin socket (the floor). ` +
    `A client polls the frontend with \`GET /hit\` on fresh connections every ${CLIENT_EVERY_MS} ms; hello is the agent's "hello sent" log time, the floor starts just before \`add server\`. ` +
    `Saturated: one bounded keep-alive HTTP load loop per CPU (${os.cpus().length}) on loopback, running through all of those trials.`;
  const markdown = [
    "## Registration through the runtime API",
    "",
    intro,
    "",
    ...tables.flatMap((t) => [`${t.condition === "idle" ? "Idle" : "CPUs saturated"}:`, "", mdTable(head, t.rows), ""]),
    summary,
    "",
    `${CHURN} runtime adds and removes under keep-alive load (${LOOPS} loops through the frontend; one permanent backend, and a churned one added, given 20 ms of traffic, and removed, ${CHURN / 2} times):`,
    "",
    mdTable(["measure", "value"], churnRows),
    ...(c.failures.length > 0 ? ["", `Failures seen: ${c.failures.join("; ")}`] : []),
  ].join("\n");
  const text = [
    "runtime-registration",
    ...tables.flatMap((t) => [t.condition, textTable(head, t.rows), ""]),
    textTable(["measure", "value"], churnRows),
    "",
    summary,
  ].join("\n");
  return { id: "runtime-registration", text, markdown, goalMet };
}
