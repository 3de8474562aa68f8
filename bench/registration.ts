/**
 * Registration: from an agent's `hello` to the first request HAProxy sends to the node
 * (SPEC behaviour 1: "in HAProxy within a second"), beside HAProxy's own check + reload.
 *
 * One real proxy (installation, sshd on loopback, HAProxy master-worker, `autoscaler master
 * --log-level debug`). For each of TRIALS trials, a fresh node: a new web app (an HTTP server
 * in this process on a fresh loopback port, recording when its first health check `GET /` and
 * its first proxied client request `GET /hit` arrive) and a new `autoscaler agent` named
 * bench-NN (one key, authorised once). A client loop polls HAProxy's frontend with `GET /hit`
 * on fresh connections every 5 ms. Times:
 *   hello   = the agent's debug log line "hello sent" (`time`, ms resolution)
 *   first   = arrival of the first request at the web app (Date.now(), same clock)
 * and, from the master's JSON log: "agent registered" (hosts.d written), "haproxy config
 * written" (after render + check), "haproxy applied" (after reload + confirmation; its `ms` is
 * the whole apply, so apply start = its time − ms).
 * Between trials the agent is stopped, its hosts.d entry removed and the master's apply
 * awaited, so the backend stays empty (HAProxy answers 503) until the next node.
 * Interleaved with the trials, HAProxy alone: `haproxy -c -f haproxy.cfg`, SIGUSR2 to its
 * master, `show proc` polled every 5 ms until judgeReload confirms, then fresh connections
 * until the new worker answers (told apart by an `X-Served-By: %pid` header the bench adds to
 * its copy of the template with `http-after-response`, which also marks HAProxy's own 503s).
 */
import { promises as fs } from "node:fs";
import http from "node:http";
import type net from "node:net";
import os from "node:os";
import path from "node:path";
import { createHostsStore, loadConfig, nodeCredential, renderFromFiles, showProc, type ProcTable } from "@autoscaler/shared";
import { agentSettings, startDaemon, startProxy, trustProxies, type Daemon, type Proxy } from "../test/helpers/cluster.js";
import { runCli } from "../test/helpers/process.js";
import {
  type BenchResult,
  type Resources,
  loadNote,
  logLines,
  machineInfo,
  mdTable,
  ms,
  sleep,
  stats,
  textTable,
  timeHaproxyCheck,
  withResources,
  type Stats,
  signalReloadAndConfirm,
} from "./lib.js";

const TRIALS = 20;
const CLIENT_EVERY_MS = 5;
/** Bounds of the client loop of one trial. */
const CLIENT_MAX_REQUESTS = 4000;
const TRIAL_TIMEOUT_MS = 15_000;
/** How long to wait for the first health check once the first client request has arrived. */
const CHECK_WAIT_MS = 5_000;
const POLL_MS = 5;
const GOAL_MEDIAN_MS = 300;
const GOAL_P95_MS = 1000;

/** A web app in this process that records when its first health check and first client request arrived. */
export async function startRecordingApp(
  res: Resources,
  name: string,
): Promise<{ port: number; firstCheck: () => number | undefined; firstHit: () => number | undefined; close: () => Promise<void> }> {
  let firstCheck: number | undefined;
  let firstHit: number | undefined;
  const server = http.createServer((req, out) => {
    const now = Date.now();
    if (req.url === "/") firstCheck ??= now;
    else firstHit ??= now;
    out.writeHead(200, { "content-type": "text/plain" });
    out.end(name);
  });
  res.scope.trackServer(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    firstCheck: () => firstCheck,
    firstHit: () => firstHit,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** GET path on a fresh connection to 127.0.0.1:port; resolves with the status and X-Served-By (or undefined on failure). */
function get(port: number, urlPath: string): Promise<{ status: number; servedBy: number } | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, agent: false, timeout: 2000 }, (r) => {
      r.resume();
      r.on("end", () => resolve({ status: r.statusCode ?? 0, servedBy: Number(r.headers["x-served-by"]) }));
      r.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

/** Poll the frontend with GET /hit every `everyMs` until `done()`, the request count or the deadline. */
export function clientLoop(port: number, done: () => boolean, everyMs = CLIENT_EVERY_MS): Promise<number> {
  return (async () => {
    const deadline = Date.now() + TRIAL_TIMEOUT_MS;
    let sent = 0;
    while (!done() && sent < CLIENT_MAX_REQUESTS && Date.now() < deadline) {
      sent++;
      await get(port, "/hit");
      await sleep(everyMs);
    }
    return sent;
  })();
}

/** Stop a daemon by its pid (SIGTERM, SIGKILL after 10 s) and wait for it to exit. */
export async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => d.child.kill("SIGKILL"), 10_000);
    d.child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    d.child.kill("SIGTERM");
  });
}

/** Wait until HAProxy runs one worker only (the old one has gone). */
async function settle(socket: string): Promise<ProcTable> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const t = await showProc(socket).catch(() => undefined);
    if (t && t.workers.length === 1) return t;
    if (Date.now() > deadline) throw new Error(`old HAProxy workers still running after 15 s: ${JSON.stringify(t)}`);
    await sleep(10);
  }
}

/** Wait for the master's log to hold a line matching `pred` at or after index `from`; returns it. */
async function waitMasterLine(
  master: Daemon,
  from: number,
  pred: (l: ReturnType<typeof logLines>[number]) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<ReturnType<typeof logLines>[number]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = logLines(master.log()).slice(from).find(pred);
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`timed out waiting for the master to log ${what}; last lines: ${master.log().slice(-1500)}`);
    await sleep(10);
  }
}

/**
 * Agent inis for `proxy`: one node key, authorised once, and one base ini; `iniFor(name, port)`
 * writes a copy with that name, port, instance id and node credential.
 */
export async function agentInis(res: Resources, proxy: Proxy): Promise<(name: string, port: number) => Promise<string>> {
  // One node key, authorised once; one base ini, copied per trial with its name and port.
  const nodeDir = await res.tempDir("autoscaler-bench-node-");
  await trustProxies(nodeDir, [proxy]);
  const baseIni = path.join(nodeDir, "base.ini");
  const settings = agentSettings([proxy], { name: "bench-00", address: "127.0.0.1", port: 1, instanceId: "i-bench-00", cpuSource: "system" });
  const init = await runCli(["init", "--config", baseIni, ...settings.flatMap((s) => ["--set", s])]);
  if (init.code !== 0) throw new Error(`node init failed: ${init.stderr}`);
  const base = await fs.readFile(baseIni, "utf8");
  const agentAt = base.indexOf("[agent]");
  if (agentAt < 0) throw new Error("the node's ini has no [agent] section");
  return async (name: string, port: number) => {
    const agentPart = base
      .slice(agentAt)
      .replace(/^name = .*$/m, `name = ${name}`)
      .replace(/^port = .*$/m, `port = ${port}`)
      .replace(/^instance_id = .*$/m, `instance_id = i-${name}`)
      .replace(/^credential = .*$/m, `credential = ${nodeCredential(proxy.token, name)}`);
    if (!agentPart.includes(`name = ${name}`) || !agentPart.includes(`port = ${port}`)) throw new Error("could not set the agent's name and port in the ini");
    const file = path.join(nodeDir, `${name}.ini`);
    await fs.writeFile(file, base.slice(0, agentAt) + agentPart);
    return file;
  };
}

interface Trial {
  helloToRegistered: number;
  debounce: number;
  renderCheck: number;
  reloadConfirm: number;
  appliedToHit: number;
  writtenToHit: number;
  helloToHit: number;
  helloToCheck: number | undefined;
  applyMs: number;
  clientRequests: number;
}

interface Baseline {
  check: number;
  signalToConfirm: number;
  confirm: number;
  confirmToServed: number;
  served: number;
}

async function baselineReload(proxy: Proxy, render: () => Promise<string>, n: number): Promise<Baseline> {
  // A changed file (one comment line), written untimed, as reload.ts does.
  await fs.writeFile(proxy.inst.haproxyConfig, (await render()) + `# bench baseline ${n}\n`);
  const before = await settle(proxy.inst.masterSocket);
  const t0 = performance.now();
  await timeHaproxyCheck(proxy.inst.haproxyConfig, proxy.inst.dir);
  const tCheck = performance.now() - t0;
  const workerPid = await signalReloadAndConfirm(proxy.inst.masterSocket, before, t0, POLL_MS);
  const tConfirm = performance.now() - t0;
  for (;;) {
    const r = await get(proxy.inst.frontendPort, "/");
    if (r && r.servedBy === workerPid) break;
    if (performance.now() - t0 > 10_000) throw new Error(`worker ${workerPid} did not answer within 10 s`);
  }
  const tServed = performance.now() - t0;
  return { check: tCheck, signalToConfirm: tConfirm - tCheck, confirm: tConfirm, confirmToServed: tServed - tConfirm, served: tServed };
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  log(`registration: ${TRIALS} fresh agents, hello → first request from HAProxy`);
  const loadAtStart = os.loadavg()[0]!;
  const data = await withResources(async (res) => {
    const proxy = await startProxy(res.scope, { settings: ["scaling.max_nodes=200"] });
    const master = proxy.master;
    const { config } = await loadConfig(proxy.inst.ini);
    const store = createHostsStore(config.hostsDir);

    // Mark every answer with the worker's pid (for HAProxy's own reload below); the master applies the template edit.
    const tmpl = path.join(proxy.inst.dir, "haproxy.cfg.tmpl");
    const text = await fs.readFile(tmpl, "utf8");
    const withHeader = text.replace(/^(\s*)(bind 127\.0\.0\.1:\d+)\s*$/m, "$1$2\n$1http-after-response set-header X-Served-By %pid");
    if (withHeader === text) throw new Error("could not add the X-Served-By header to the template");
    const applied0 = logLines(master.log()).length;
    await fs.writeFile(tmpl, withHeader);
    await waitMasterLine(master, applied0, (l) => l.msg === "haproxy applied", "the template edit applied");
    await settle(proxy.inst.masterSocket);

    const iniFor = await agentInis(res, proxy);
    const render = () => renderFromFiles(config, store);

    const trials: Trial[] = [];
    const baselines: Baseline[] = [];
    let checksMissing = 0;
    for (let i = 1; i <= TRIALS; i++) {
      const name = `bench-${String(i).padStart(2, "0")}`;
      const app = await startRecordingApp(res, name);
      const ini = await iniFor(name, app.port);
      const from = logLines(master.log()).length;
      const client = clientLoop(proxy.inst.frontendPort, () => app.firstHit() !== undefined);
      const agent = startDaemon(res.scope, ["agent", "--config", ini, "--log-level", "debug"]);
      const sent = await client;
      if (app.firstHit() === undefined)
        throw new Error(`${name}: no client request reached the node within ${TRIAL_TIMEOUT_MS} ms; agent log: ${agent.log().slice(-1500)}`);
      const tHitSeen = Date.now();
      while (app.firstCheck() === undefined && Date.now() - tHitSeen < CHECK_WAIT_MS) await sleep(10);
      if (app.firstCheck() === undefined) checksMissing++;

      const hello = logLines(agent.log()).find((l) => l.msg === "hello sent");
      if (!hello) throw new Error(`${name}: the agent logged no "hello sent": ${agent.log().slice(-1500)}`);
      const registered = await waitMasterLine(master, from, (l) => l.msg === "agent registered" && l.node === name, `"agent registered" for ${name}`);
      const applied = await waitMasterLine(
        master,
        from,
        (l) => l.msg === "haproxy applied" && String(l.reason).includes(`registered ${name}`),
        `"haproxy applied" for ${name}`,
      );
      const lines = logLines(master.log());
      const appliedIdx = lines.findIndex((l) => l === applied || (l.msg === "haproxy applied" && l.time === applied.time && l.reason === applied.reason));
      const written = lines
        .slice(from, appliedIdx)
        .reverse()
        .find((l) => l.msg === "haproxy config written");
      if (!written) throw new Error(`${name}: no "haproxy config written" before the apply`);
      const applyMs = Number(applied.ms);
      const applyStart = applied.t - applyMs;
      trials.push({
        helloToRegistered: registered.t - hello.t,
        debounce: applyStart - registered.t,
        renderCheck: written.t - applyStart,
        reloadConfirm: applied.t - written.t,
        appliedToHit: app.firstHit()! - applied.t,
        writtenToHit: app.firstHit()! - written.t,
        helloToHit: app.firstHit()! - hello.t,
        helloToCheck: app.firstCheck() === undefined ? undefined : app.firstCheck()! - hello.t,
        applyMs,
        clientRequests: sent,
      });

      // Tidy up: stop the agent, remove its entry, wait for the master's apply, so the backend is empty again.
      await stopDaemon(agent);
      await app.close();
      const before = logLines(master.log()).length;
      await store.remove(name);
      await waitMasterLine(master, before, (l) => l.msg === "haproxy applied", `the removal of ${name} applied`);
      await settle(proxy.inst.masterSocket);

      baselines.push(await baselineReload(proxy, render, i));
      const t = trials.at(-1)!;
      log(
        `registration: ${name}: hello → first request ${t.helloToHit} ms, → first check ${t.helloToCheck ?? "none"} ms; HAProxy alone ${baselines.at(-1)!.served.toFixed(0)} ms`,
      );
    }
    const reloads = logLines(master.log()).filter((l) => l.msg === "haproxy applied").length;
    return { trials, baselines, checksMissing, reloads };
  });
  const info = await machineInfo();
  const { trials, baselines } = data;
  const pick = (f: (t: Trial) => number) => stats(trials.map(f));
  const hit = pick((t) => t.helloToHit);
  const checks = trials.map((t) => t.helloToCheck).filter((v): v is number => v !== undefined);
  const check = stats(checks);
  const bServed = stats(baselines.map((b) => b.served));
  const bConfirm = stats(baselines.map((b) => b.confirm));

  const row = (label: string, s: Stats) => [label, ms(s.median), ms(s.p95), ms(s.min), ms(s.max)];
  const head = ["measure (ms)", "median", "p95", "min", "max"];
  const rows = [
    row("ours: `hello` sent → first proxied client request at the node", hit),
    row(`ours: \`hello\` sent → first health check at the node (${checks.length} of ${trials.length} trials)`, check),
    row("HAProxy alone: `haproxy -c` + SIGUSR2 → new worker in `show proc`", bConfirm),
    row("HAProxy alone: `haproxy -c` + SIGUSR2 → new worker answers a fresh connection", bServed),
  ];
  const rows2 = [
    row(
      'hello sent → master logs "agent registered" (tunnel, validation, hosts.d written)',
      pick((t) => t.helloToRegistered),
    ),
    row(
      "debounce: registered → apply starts (APPLY_QUIET_MS = 100)",
      pick((t) => t.debounce),
    ),
    row(
      'render + check: apply start → "haproxy config written" (lock, read template, list hosts.d, render, stage, `haproxy -c`, rename)',
      pick((t) => t.renderCheck),
    ),
    row(
      'reload + confirm: written → "haproxy applied" (`kill -USR2`, `show proc` polled every 20 ms)',
      pick((t) => t.reloadConfirm),
    ),
    row(
      "config written → first proxied client request at the node (reload until the new worker serves; client polls every 5 ms)",
      pick((t) => t.writtenToHit),
    ),
    row(
      '"haproxy applied" → first proxied client request (negative: the new worker served before the master\'s 20 ms `show proc` poll confirmed it)',
      pick((t) => t.appliedToHit),
    ),
    row(
      'whole apply as the master logs it (`ms` of "haproxy applied")',
      pick((t) => t.applyMs),
    ),
  ];
  const rows3 = [
    row("`haproxy -c -f haproxy.cfg`", stats(baselines.map((b) => b.check))),
    row("SIGUSR2 → new worker in `show proc` (polled every 5 ms)", stats(baselines.map((b) => b.signalToConfirm))),
    row("new worker in `show proc` → it answers a fresh connection", stats(baselines.map((b) => b.confirmToServed))),
  ];
  const goalMet = hit.median < GOAL_MEDIAN_MS && hit.p95 < GOAL_P95_MS;
  const note =
    `Master log times have millisecond resolution, and the breakdown rows are differences of them, so each is ±1 ms. ` +
    `The client loop sent ${stats(trials.map((t) => t.clientRequests)).median.toFixed(0)} requests per trial at the median (HAProxy answers 503 while the backend is empty). ` +
    (data.checksMissing > 0 ? `${data.checksMissing} trial(s) saw no health check within ${CHECK_WAIT_MS / 1000} s of the first client request. ` : "") +
    `The master did ${data.reloads} applies in all (each trial: one for the registration, one for the removal).`;

  const markdown = [
    "## Registration: `hello` to first request",
    "",
    `Measured ${info.date} (${loadNote(loadAtStart)}). One proxy on 127.0.0.1 (real sshd, HAProxy master-worker, \`autoscaler master\`, shipped template with \`option httpchk GET /\`, \`inter 2s\`). ` +
      `${TRIALS} trials, each a fresh node: a new web app on a fresh port and a new \`autoscaler agent\` (bench-01 … bench-${TRIALS}, \`agent.interval=1\`, \`cpu_source=system\`) connecting through the sshd. ` +
      `A client polls HAProxy's frontend with \`GET /hit\` on fresh connections every ${CLIENT_EVERY_MS} ms; the web app records when the first \`GET /hit\` (a proxied client request) and the first \`GET /\` (HAProxy's health check) arrive. ` +
      '"hello sent" is the agent\'s own debug log line. Between trials the agent is stopped and its hosts.d entry removed (the master reloads), so every node joins an empty backend. ' +
      "HAProxy's own check + reload is measured in the same run, once after each trial.",
    "",
    mdTable(head, rows),
    "",
    `**Goal: \`hello\` → first request, median under ${GOAL_MEDIAN_MS} ms and p95 under ${GOAL_P95_MS / 1000} s** — **${goalMet ? "met" : "missed"}** (median ${ms(hit.median)} ms, p95 ${ms(hit.p95)} ms, against HAProxy's own ${ms(bServed.median)} ms median for check + reload + serving).`,
    "",
    "Where the time goes, from the master's debug log (JSON lines):",
    "",
    mdTable(head, rows2),
    "",
    "HAProxy alone, step by step:",
    "",
    mdTable(head, rows3),
    "",
    note,
  ].join("\n");
  const text = [
    `registration: ${TRIALS} trials`,
    textTable(head, rows),
    "",
    textTable(head, rows2),
    "",
    textTable(head, rows3),
    "",
    `goal median < ${GOAL_MEDIAN_MS} ms, p95 < ${GOAL_P95_MS} ms: ${goalMet ? "met" : "MISSED"}`,
    note,
  ].join("\n");
  return { id: "registration", text, markdown, goalMet };
}
