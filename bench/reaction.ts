/**
 * Reaction end to end: from the start of a CPU burn on a node to a new node serving through
 * HAProxy, with `[scaling] window = 10` and a launch command that starts a node at once, split
 * into its parts (burn → hot reading, window wait, decision → launch, launch → registration,
 * registration → served).
 *
 * One real proxy (installation, sshd, HAProxy, `autoscaler master --log-level debug`) and the
 * test suite's fake cloud (test/helpers/cloud.ts): its launch command starts a REAL node on a
 * loopback address (a web app that burns CPU while a flag file exists, and a real
 * `autoscaler agent` that reaches the master through the proxy's sshd, sampling every second).
 * The cloud is made first and its launch command goes into the ini before the master starts;
 * with `min_nodes = 1` the master launches the first node, cloud-1, itself.
 *
 * CPU is a percent of all of this machine's cores (one busy thread reads 100/cores %, 50 % on
 * 2 cores): the threshold is 60/cores % (30 on 2 cores), and the bench records cloud-1's idle
 * readings to show they stay below it. The burn is one busy thread per core, as the cloud does by
 * default, so the readings stay over the threshold when other work shares the cores; a trial in
 * which a reading still fell under it (which restarts the window) is left out, reported, and run
 * again (at most MAX_EXTRA_TRIALS times). `cooldown = 15` s: long enough that cloud-1, still hot
 * for a moment after its launch, cannot launch twice; short enough to have passed (checked)
 * before the next trial's burn. No scale_down_command, so nothing is scaled down.
 *
 * Each trial: wait until cloud-1 is live and the master's last decision is "within thresholds"
 * more than a window after any burn, with no cooldown left; then burn cloud-1 (t_burn) and
 * measure:
 *   t_hot     the first reading ≥ threshold as the master holds it: `/status` polled every
 *             50 ms, the reading time from its `now` − `last_seen_seconds_ago`, clamped to the
 *             poll interval (±25 ms)
 *   t_decide  the master's `decision` debug line with action scale_up
 *   t_launch  the launch program's start (`at` of the cloud's launches log)
 *   t_hello   the new node's agent logs "hello sent"
 *   t_reg     the master logs "agent registered" for it
 *   t_served  the first answer from the new node through HAProxy's frontend (GET on a fresh
 *             connection every 20 ms from the `scale_up` event on)
 * The burn stops as soon as the decision is seen: on a real cluster the busy node is another
 * machine, and here its busy thread would otherwise compete with the launch for this machine's
 * cores. Between trials the new node is terminated with the cloud's terminate command and its
 * hosts.d entry removed.
 */
import { promises as fs } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { createHostsStore, loadConfig } from "@autoscaler/shared";
import { createCloud, type Cloud } from "../test/helpers/cloud.js";
import { startProxy, type Daemon } from "../test/helpers/cluster.js";
import { runProcess, Scope } from "../test/helpers/process.js";
import type { MasterStatus } from "../test/helpers/status.js";
import { type BenchResult, type Resources, loadNote, logLines, machineInfo, mdTable, ms, sleep, stats, textTable, withResources } from "./lib.js";

const TRIALS = 3;
/** Trials disturbed by other load on the machine (a reading under the threshold inside the window) are run again, at most this many times. */
const MAX_EXTRA_TRIALS = 3;
/** Busy threads in the hot node's web app: one per core, as the cloud does by default, so the burn reads well over the threshold even when other work shares the cores. */
const BURN_THREADS = os.availableParallelism?.() ?? os.cpus().length;
const WINDOW_S = 10;
const INTERVAL_S = 1;
const COOLDOWN_S = 15;
/** The nodes' `agent.interval` (the cloud's default). */
const AGENT_INTERVAL_S = 1;
const STATUS_POLL_MS = 50;
const CLIENT_EVERY_MS = 20;
/** Bounds. */
const CLIENT_MAX_REQUESTS = 1500;
const SETUP_TIMEOUT_MS = 40_000;
const COLD_TIMEOUT_MS = 60_000;
const TRIAL_TIMEOUT_MS = 40_000;

type LogLine = ReturnType<typeof logLines>[number];

async function getStatus(port: number): Promise<MasterStatus | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(2000) });
    return r.ok ? ((await r.json()) as MasterStatus) : undefined;
  } catch {
    return undefined;
  }
}

/** GET / on a fresh connection to the frontend; the body, or undefined on failure. */
function getBody(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/hit", agent: false, timeout: 2000 }, (r) => {
      let body = "";
      r.on("data", (b: Buffer) => (body += b.toString()));
      r.on("end", () => resolve(r.statusCode === 200 ? body : undefined));
      r.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

async function waitMasterLine(master: Daemon, from: number, pred: (l: LogLine) => boolean, what: string, timeoutMs = TRIAL_TIMEOUT_MS): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = logLines(master.log()).slice(from).find(pred);
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`timed out waiting for the master to log ${what}; last lines: ${master.log().slice(-2000)}`);
    await sleep(10);
  }
}

async function until<T>(what: string, timeoutMs: number, everyMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

interface Trial {
  node: string;
  burnToHot: number;
  hotToDecide: number;
  decideToLaunch: number;
  launchToHello: number;
  helloToRegistered: number;
  registeredToServed: number;
  total: number;
  /** Finer parts, from the master's log, the cloud's and the new agent's. */
  decideToScaleUpEvent: number;
  scaleUpEventToLaunch: number;
  launchToAgentStarted: number;
  agentStartedToHello: number;
  debounce: number;
  applyMs: number;
  appliedToServed: number;
  applyReasons: string;
  hotReading: number;
}

export async function run(log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<BenchResult> {
  const cpus = os.availableParallelism?.() ?? os.cpus().length;
  const thresholds = { up: Math.max(1, Math.round(60 / cpus)), down: Math.max(1, Math.round(10 / cpus)) };
  log(`reaction: ${TRIALS} trials, burn → new node served (window ${WINDOW_S} s, threshold ${thresholds.up} % on ${cpus} CPUs)`);
  const loadAtStart = os.loadavg()[0]!;
  const data = await withResources(async (res) => {
    // The cloud in a scope of its own, stopped before the proxy (see stopCloud).
    const cloudScope = new Scope();
    const cloud = await createCloud(cloudScope);
    try {
      return await measure(res, cloud, thresholds, log);
    } finally {
      await stopCloud(cloudScope, cloud, log);
    }
  });
  return report(data, cpus, thresholds.up, loadAtStart);
}

interface Measured {
  trials: Trial[];
  idleReadings: number[];
  /** Trials whose window was restarted by a reading under the threshold (other load on the machine), left out of the figures. */
  disturbed: { trial: Trial; minReading: number }[];
}

async function measure(res: Resources, cloud: Cloud, thresholds: { up: number; down: number }, log: (s: string) => void): Promise<Measured> {
  const proxy = await startProxy(res.scope, {
    settings: [
      `machine.scale_up_command=${cloud.scaleUpCommand}`,
      `scaling.window=${WINDOW_S}`,
      `scaling.cooldown=${COOLDOWN_S}`,
      "scaling.min_nodes=1",
      "scaling.max_nodes=10",
      "scaling.mode=instance",
      `scaling.scale_up_threshold=${thresholds.up}`,
      `scaling.scale_down_threshold=${thresholds.down}`,
      `master.interval=${INTERVAL_S}`,
    ],
  });
  await cloud.attach(proxy);
  const master = proxy.master;
  const { config } = await loadConfig(proxy.inst.ini);
  const store = createHostsStore(config.hostsDir);
  const status = () => getStatus(proxy.metricsPort);
  const cloudOne = (s: MasterStatus | undefined) => s?.nodes.find((n) => n.name === "cloud-1");

  // The master launches cloud-1 itself, for min_nodes = 1.
  await until("the master to launch cloud-1 and see it live", SETUP_TIMEOUT_MS, 200, async () =>
    cloudOne(await status())?.state === "live" ? true : undefined,
  );

  const trials: Trial[] = [];
  const disturbed: Measured["disturbed"] = [];
  const idleReadings: number[] = [];
  let coldSince = Date.now();
  for (let attempt = 1; trials.length < TRIALS && attempt <= TRIALS + MAX_EXTRA_TRIALS; attempt++) {
    // cloud-1 cold for more than a window, the master's last decision "within thresholds", no cooldown left.
    await until(`cloud-1 cold for a whole window before trial ${attempt}`, COLD_TIMEOUT_MS, 200, async () => {
      const s = await status();
      const one = cloudOne(s);
      if (!s || !one || one.state !== "live" || one.cpu_now === null) return undefined;
      // Readings from 3 s after the last burn on (an agent interval plus margin) are idle ones.
      if (Date.now() > coldSince + 3000) idleReadings.push(one.cpu_now);
      const d = s.last_decision;
      const fresh = d !== null && Date.parse(d.at) > coldSince + (WINDOW_S + INTERVAL_S) * 1000;
      return fresh && d.action === "none" && d.reason.startsWith("within thresholds") && s.cooldown.scale_up_seconds === 0 ? true : undefined;
    });
    const from = logLines(master.log()).length;
    const launchesBefore = (await cloud.launches()).length;

    await cloud.burn(true, "cloud-1", BURN_THREADS);
    const tBurn = Date.now();
    let prevNow = tBurn;
    const hot = await until("cloud-1's first hot reading at the master", TRIAL_TIMEOUT_MS, STATUS_POLL_MS, async () => {
      const s = await status();
      const one = cloudOne(s);
      if (!s || !one) return undefined;
      const now = Date.parse(s.now);
      if (one.cpu_now !== null && one.cpu_now >= thresholds.up && one.last_seen_seconds_ago !== null) {
        // last_seen is rounded to 0.1 s: the reading lies within ±50 ms of now − last_seen, and after the previous poll.
        const mid = now - one.last_seen_seconds_ago * 1000;
        const lo = Math.max(prevNow, mid - 50);
        const hi = Math.min(now, mid + 50);
        return { t: lo <= hi ? (lo + hi) / 2 : (prevNow + now) / 2, cpu: one.cpu_now };
      }
      prevNow = now;
      return undefined;
    });
    // Until the decision, watch cloud-1's readings: one under the threshold restarts the window.
    let minReading = hot.cpu;
    const decision = await until("the scale-up decision", TRIAL_TIMEOUT_MS, STATUS_POLL_MS * 2, async () => {
      const line = logLines(master.log())
        .slice(from)
        .find((l) => l.msg === "decision" && l.action === "scale_up");
      if (line) return line;
      const cpu = cloudOne(await status())?.cpu_now;
      if (typeof cpu === "number") minReading = Math.min(minReading, cpu);
      return undefined;
    });
    await cloud.burn(false, "cloud-1");
    const burnOff = Date.now();
    const scaleUp = await waitMasterLine(master, from, (l) => l.event === "scale_up", "the scale_up event");

    const launch = await until("the cloud's launch to run", TRIAL_TIMEOUT_MS, 10, async () => (await cloud.launches())[launchesBefore]);
    const name = launch.nodes[0]?.name;
    if (!name) throw new Error(`trial ${attempt}: the launch allocated no node: ${JSON.stringify(launch)}`);
    // Poll the frontend until the new node answers.
    let tServed: number | undefined;
    for (let n = 0, deadline = Date.now() + TRIAL_TIMEOUT_MS; n < CLIENT_MAX_REQUESTS && Date.now() < deadline; n++) {
      const body = await getBody(proxy.inst.frontendPort);
      if (body === name) {
        tServed = Date.now();
        break;
      }
      await sleep(CLIENT_EVERY_MS);
    }
    if (tServed === undefined) throw new Error(`trial ${attempt}: ${name} never answered through HAProxy; master log: ${master.log().slice(-2000)}`);
    const registered = await waitMasterLine(master, from, (l) => l.msg === "agent registered" && l.node === name, `"agent registered" for ${name}`);
    const applied = await waitMasterLine(
      master,
      from,
      (l) => l.msg === "haproxy applied" && String(l.reason).includes(`registered ${name}`),
      `"haproxy applied" for ${name}`,
    );
    const agentLog = await fs.readFile(path.join(cloud.dir, "nodes", name, "agent.log"), "utf8");
    const hello = logLines(agentLog).find((l) => l.msg === "hello sent");
    const agentStarted = logLines(agentLog).find((l) => l.msg === "agent started");
    if (!hello || !agentStarted) throw new Error(`trial ${attempt}: ${name}'s agent logged no "agent started" or "hello sent": ${agentLog.slice(-1500)}`);

    const t: Trial = {
      node: name,
      burnToHot: hot.t - tBurn,
      hotToDecide: decision.t - hot.t,
      decideToLaunch: launch.at - decision.t,
      launchToHello: hello.t - launch.at,
      helloToRegistered: registered.t - hello.t,
      registeredToServed: tServed - registered.t,
      total: tServed - tBurn,
      decideToScaleUpEvent: scaleUp.t - decision.t,
      scaleUpEventToLaunch: launch.at - scaleUp.t,
      launchToAgentStarted: agentStarted.t - launch.at,
      agentStartedToHello: hello.t - agentStarted.t,
      debounce: applied.t - Number(applied.ms) - registered.t,
      applyMs: Number(applied.ms),
      appliedToServed: tServed - applied.t,
      applyReasons: String(applied.reason),
      hotReading: hot.cpu,
    };
    // A window restarted by a dip (or longer than window + a tick + slack, a dip the polls missed) measured the machine, not the autoscaler.
    const restarted = minReading < thresholds.up || t.hotToDecide > (WINDOW_S + INTERVAL_S) * 1000 + 500;
    if (restarted) disturbed.push({ trial: t, minReading });
    else trials.push(t);
    log(
      `reaction: trial ${attempt} (${name}): burn → served ${t.total} ms (hot ${Math.round(t.burnToHot)}, window ${Math.round(t.hotToDecide)}, launch ${t.decideToLaunch}, hello ${t.launchToHello}, registered ${t.helloToRegistered}, served ${t.registeredToServed})` +
        (restarted ? `; DISTURBED (lowest reading in the window ${minReading} %), run again` : ""),
    );

    // Terminate the new node and drop its entry, so the next trial starts from cloud-1 alone.
    const node = (await cloud.nodes()).find((n) => n.name === name);
    const down = await runProcess("/bin/sh", ["-c", cloud.scaleDownCommand], {
      env: { INSTANCE_ID: node?.instanceId ?? "", NODE_NAME: name, NODE_ADDRESS: node?.address ?? "" },
      timeoutMs: 20_000,
    });
    if (down.code !== 0) throw new Error(`trial ${attempt}: terminating ${name} failed (${down.code}): ${down.stderr}`);
    const beforeRemoval = logLines(master.log()).length;
    await store.remove(name);
    await waitMasterLine(master, beforeRemoval, (l) => l.msg === "haproxy applied", `the removal of ${name} applied`);
    coldSince = burnOff;
  }
  if (trials.length < TRIALS)
    throw new Error(
      `only ${trials.length} of ${TRIALS} trials were undisturbed in ${TRIALS + MAX_EXTRA_TRIALS} attempts: the machine is too busy for this benchmark now`,
    );
  // One launch for cloud-1 and one per attempt: never a second launch within a trial.
  const launches = (await cloud.launches()).length;
  const attempts = trials.length + disturbed.length;
  if (launches !== attempts + 1) throw new Error(`expected ${attempts + 1} launches (cloud-1 and one per trial), found ${launches}`);
  return { trials, idleReadings, disturbed };
}

/**
 * Stop every process of the cloud. The cloud's own stop (a scope cleanup hook) scans /proc and
 * can fail with ESRCH when any process on the machine exits during its scan; then look again
 * (bounded) and kill what is left by pid, so a run never leaves a node behind.
 */
async function stopCloud(scope: Scope, cloud: Cloud, log: (s: string) => void): Promise<void> {
  try {
    await scope.cleanup();
    return;
  } catch (err) {
    log(`reaction: the cloud's cleanup failed (${(err as Error).message}); checking for its processes again`);
  }
  let quiet = 0;
  for (let pass = 0; pass < 20 && quiet < 2; pass++) {
    const live = await cloud.livePids().catch(() => undefined);
    if (live === undefined) continue;
    quiet = live.length === 0 ? quiet + 1 : 0;
    for (const pid of live) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
    await sleep(50);
  }
  if (quiet < 2) throw new Error("the cloud's processes could not be confirmed stopped");
}

async function report(data: Measured, cpus: number, upThreshold: number, loadAtStart: number): Promise<BenchResult> {
  const info = await machineInfo();
  const { trials, idleReadings, disturbed } = data;
  const med = (f: (t: Trial) => number) => stats(trials.map(f)).median;
  const s = (v: number) => (v / 1000).toFixed(2);
  const head = [
    "trial (s)",
    "burn → hot reading",
    "hot → decision (window wait)",
    "decision → launch starts",
    "launch → agent hello",
    "hello → registered",
    "registered → served (reload)",
    "burn → served",
  ];
  const rowOf = (label: string, f: (g: (t: Trial) => number) => number) => [
    label,
    s(f((t) => t.burnToHot)),
    s(f((t) => t.hotToDecide)),
    s(f((t) => t.decideToLaunch)),
    s(f((t) => t.launchToHello)),
    s(f((t) => t.helloToRegistered)),
    s(f((t) => t.registeredToServed)),
    s(f((t) => t.total)),
  ];
  const rows = [...trials.map((t, i) => rowOf(`${i + 1} (${t.node})`, (g) => g(t))), rowOf("**median**", med)];
  const total = stats(trials.map((t) => t.total));
  const idleMax = Math.max(...idleReadings);
  const hotMin = Math.min(...trials.map((t) => t.hotReading));
  const overWindow = total.median - WINDOW_S * 1000;
  const summary =
    `**Burn → new node serving: ${s(total.median)} s at the median** (${trials.map((t) => s(t.total)).join(", ")} s), of which ${s(med((t) => t.hotToDecide))} s is the window wait; ` +
    `everything but the ${WINDOW_S} s window takes ${s(overWindow)} s (${ms(med((t) => t.burnToHot))} ms until the master holds a hot reading, ${ms(med((t) => t.decideToLaunch))} ms decision → launch, ` +
    `${ms(med((t) => t.launchToHello + t.helloToRegistered))} ms for the new node to start and register, ${ms(med((t) => t.registeredToServed))} ms to serve).`;
  const notes = [
    `- **burn → hot reading**: the web app sees the flag within 100 ms and starts its busy threads; the agent reports CPU every 1 s, averaged over that second, so the first reading at or over ${upThreshold} % comes in the first or second report after the burn starts.`,
    `- **hot → decision (window wait)**: \`instance\` mode needs every reading inside the window at or over the threshold, so the window is counted from the last cold reading, one agent interval before the first hot one; the wait is then the window − ${AGENT_INTERVAL_S} s, plus the wait for the next tick (0–${INTERVAL_S} s; ${ms(med((t) => t.hotToDecide - (WINDOW_S - AGENT_INTERVAL_S) * 1000))} ms at the median here). ` +
      "The agent's sample timer and the master's tick timer both run every second, so that tick wait is the same in every trial of one run and changes only from run to run (3 trials do not sample it). " +
      `On a real cluster it is anywhere in 0–${INTERVAL_S} s (${INTERVAL_S / 2} s on average), so the same reaction would take between ${s(med((t) => t.total - (t.hotToDecide - (WINDOW_S - AGENT_INTERVAL_S) * 1000)))} and ${s(med((t) => t.total - (t.hotToDecide - (WINDOW_S - AGENT_INTERVAL_S) * 1000)) + INTERVAL_S * 1000)} s.`,
    "- **decision → launch starts**: the launch saved to state.json, `/bin/sh -c` spawned, and the cloud program (Node) started (`at` in its launches log).",
    "- **launch → agent hello**: the cloud program writes the node's ini with `autoscaler init`, starts the web app, waits until it listens, starts `autoscaler agent`; the agent reads its config and facts, connects to the proxy's sshd and opens a channel to the master's port.",
    "- **hello → registered**: the master validates the hello, writes hosts.d and claims the pending launch in state.json. **registered → served**: the debounced apply (render, `haproxy -c`, reload) until the new worker sends a client request to the node.",
    `- Readings: cloud-1 idle at most ${idleMax.toFixed(1)} % while waiting for a cold window; the first hot reading at least ${hotMin.toFixed(1)} % (threshold ${upThreshold} %). t_hot is the reading's arrival at the master to ±25 ms (from \`/status\` polled every ${STATUS_POLL_MS} ms); the other times come from log lines (ms) and the bench's clock.`,
  ].join("\n");
  const head2 = ["part (ms)", ...trials.map((t, i) => `trial ${i + 1}`), "median"];
  const partRow = (label: string, f: (t: Trial) => number) => [label, ...trials.map((t) => ms(f(t))), ms(med(f))];
  const rows2 = [
    partRow("decision → `scale_up` event (launch saved to state.json)", (t) => t.decideToScaleUpEvent),
    partRow("`scale_up` event → launch program starts (`/bin/sh -c`, Node start-up of the cloud program)", (t) => t.scaleUpEventToLaunch),
    partRow('launch program starts → new agent logs "agent started" (`autoscaler init`, web app up, agent start-up)', (t) => t.launchToAgentStarted),
    partRow('"agent started" → "hello sent" (SSH connection to the proxy\'s sshd, channel to the master)', (t) => t.agentStartedToHello),
    partRow("registered → apply starts (debounce: 100 ms quiet, 800 ms ceiling)", (t) => t.debounce),
    partRow('apply (render, `haproxy -c`, reload, confirmed in `show proc`; `ms` of "haproxy applied")', (t) => t.applyMs),
    partRow(`"haproxy applied" → first answer from the new node (client polls every ${CLIENT_EVERY_MS} ms)`, (t) => t.appliedToServed),
  ];
  const reasons = `The apply that put the new node in served these changes together: ${[...new Set(trials.map((t) => `"${t.applyReasons}"`))].join("; ")}.`;
  const markdown = [
    "## Reaction end to end",
    "",
    `Measured ${info.date} (${loadNote(loadAtStart)}). One proxy on 127.0.0.1 (real sshd, HAProxy and \`autoscaler master\`), \`[master] interval = ${INTERVAL_S}\`, ` +
      `\`[scaling] window = ${WINDOW_S}\`, \`cooldown = ${COOLDOWN_S}\`, \`min_nodes = 1\`, \`scale_up_threshold = ${upThreshold}\` (percent of all ${cpus} CPUs, so one busy thread reads about ${Math.round(100 / cpus)} %), mode \`instance\`, no \`scale_down_command\`. ` +
      "`scale_up_command` is the test suite's fake cloud (test/helpers/cloud.ts): it starts a real node at once on a loopback address, a web app plus a real `autoscaler agent` (`agent.interval = 1`, `cpu_source = pid:web.pid`) that reaches the master through the proxy's sshd. " +
      `The master launched the first node (cloud-1) itself for \`min_nodes\`. ${TRIALS} trials: with cloud-1 cold for a whole window (the master's last decision "within thresholds", no cooldown left), ${BURN_THREADS} busy thread(s) start in its web app (one per core, so the burn stays over the threshold when other work shares the cores), and the bench times each step until HAProxy serves a request from the new node. ` +
      "The burn stops once the decision is made (on a real cluster the busy node is another machine; here it would compete with the launch for the same cores). Between trials the new node is terminated with the cloud's terminate command and its hosts.d entry removed.",
    "",
    mdTable(head, rows),
    "",
    summary,
    "",
    notes,
    ...(disturbed.length > 0
      ? [
          "",
          `${disturbed.length} more trial(s) were left out and run again because a reading of cloud-1 fell under the threshold inside the window (other work on this machine took its cores), which restarts the window: ` +
            disturbed
              .map(
                (d) =>
                  `${d.trial.node}, lowest reading ${d.minReading.toFixed(1)} %, window wait ${s(d.trial.hotToDecide)} s, burn → served ${s(d.trial.total)} s`,
              )
              .join("; ") +
            ".",
        ]
      : []),
    "",
    "The launch → served steps in detail:",
    "",
    mdTable(head2, rows2),
    "",
    reasons,
  ].join("\n");
  const text = [
    `reaction: ${TRIALS} trials (seconds)`,
    textTable(
      head,
      rows.map((r) => r.map((c) => String(c).replace(/\*\*/g, ""))),
    ),
    "",
    summary.replace(/\*\*/g, ""),
    `disturbed trials left out: ${disturbed.length}`,
    "",
    textTable(head2, rows2),
    reasons,
  ].join("\n");
  return { id: "reaction", text, markdown };
}
