/**
 * Network faults (issue 6), each with its trials counted and its figures printed for
 * RELIABILITY.md. Everything is real: sshd, HAProxy, masters, web apps and `autoscaler agent`
 * processes, and network namespaces that the test makes and removes itself (helpers/netns.ts).
 * Traffic goes only to loopback and to those namespaces.
 *
 * 1. A partition between nodes and their proxy (the bridge end of each node's veth set down for
 *    twice node_timeout, then up), three trials: the nodes show unreachable, keep their hosts.d
 *    entry and server line, nothing scales, and they are live again soon after the heal.
 * 2. The first (deciding) proxy's sshd killed, with every connection it held, for 60 s under
 *    load: the second proxy's HAProxy serves all nodes without a failed request, its master lists
 *    them live, no launch runs; once sshd is back every agent reconnects and no launch repeats.
 *
 * The third network fault, a burst of 100 agents reconnecting through one sshd, is
 * faults-burst.test.ts (it runs alone). Cost on two shared cores: about 30 s and 85 s (60 of
 * them the outage, up to 30 more the agents' capped backoff).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { BACKOFF_CAP_MS } from "../packages/agent/src/agent.js";
import { agentSettings, startDaemon, trustProxies, type Daemon, type Proxy } from "./helpers/cluster.js";
import { countLines, killSshdAndSessions, logLines, printTable } from "./helpers/faults.js";
import { canConnect, makeInstallation, serverLines, showServersState, startHaproxy, type Installation } from "./helpers/haproxy.js";
import { cleanupScopeAndNetworks, createNetwork, type Namespace, setLink, startNsProxy, type TestNetwork } from "./helpers/netns.js";
import { freePort, runCli, Scope, sleep, snapshotDir, waitFor } from "./helpers/process.js";
import { startSshd } from "./helpers/sshd.js";
import { status, type MasterStatus } from "./helpers/status.js";

const scope = new Scope();
const networks: TestNetwork[] = [];
afterEach(() => cleanupScopeAndNetworks(scope, networks));

const CORES = os.availableParallelism();
const round1 = (x: number) => Math.round(x * 10) / 10;

// ---------------------------------------------------------------------------------------------
// Reading a master

const nodeOf = (s: MasterStatus, name: string) => s.nodes.find((n) => n.name === name);
const stateOf = (s: MasterStatus, name: string) => nodeOf(s, name)?.state;

// ---------------------------------------------------------------------------------------------
// Building the parts

/** Cloud commands that start nothing and only count their runs (one line each in runs.log). */
async function countingCommands(): Promise<{ settings: string[]; runs: () => Promise<string[]> }> {
  const dir = await scope.tempDir("autoscaler-faults-cmd-");
  const log = path.join(dir, "runs.log");
  await fs.writeFile(path.join(dir, "up.sh"), `#!/bin/sh\necho "launch COUNT=$COUNT at $(date +%s%3N)" >> '${log}'\n`);
  await fs.writeFile(path.join(dir, "down.sh"), `#!/bin/sh\necho "terminate NODE_NAME=$NODE_NAME at $(date +%s%3N)" >> '${log}'\n`);
  return {
    settings: [`machine.scale_up_command=sh '${dir}/up.sh'`, `machine.scale_down_command=sh '${dir}/down.sh'`],
    runs: async () => (await fs.readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean),
  };
}

/**
 * A proxy box in the root namespace whose sshd listens on `address` (the test network's bridge,
 * so nodes in namespaces reach it and lose it when their link goes down), with HAProxy and the
 * master on loopback: cluster.ts's startProxy, but not on 127.0.0.1.
 */
async function startBridgeProxy(address: string, settings: string[]): Promise<Proxy> {
  const masterPort = await freePort();
  const metricsPort = await freePort();
  const token = randomBytes(24).toString("base64url");
  const inst = await makeInstallation(scope, [
    `master.listen=127.0.0.1:${masterPort}`,
    `master.metrics_listen=127.0.0.1:${metricsPort}`,
    `master.token=${token}`,
    ...settings,
  ]);
  const sshd = await startSshd(scope, { masterPort, address });
  const gen = await inst.cli("generate");
  if (gen.code !== 0) throw new Error(`generate failed: ${gen.stderr}`);
  await startHaproxy(scope, inst);
  const startMaster = async () => {
    const d = startDaemon(scope, ["master", "--config", inst.ini, "--log-level", "debug"]);
    await d.waitForLog(/master started/, 15_000);
    return d;
  };
  return { inst, sshd, masterPort, metricsPort, token, master: await startMaster(), startMaster, status: () => status(inst) };
}

/**
 * A web app answering every request with `name`, writing its pid file once it listens. With
 * `burnMs`, a worker thread is busy that many ms of every 100 ms: CPU the agent reads through
 * `cpu_source = pid:` (a node "under load" without flooding the two cores with requests).
 */
async function startWebApp(name: string, address: string, port: number, pidFile: string, burnMs: number, wrap: string[]): Promise<ChildProcess> {
  const script = `
    require("fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
    if (${burnMs} > 0) new (require("worker_threads").Worker)("setInterval(() => { const u = Date.now() + ${burnMs}; while (Date.now() < u) {} }, 100)", { eval: true });
    require("http").createServer((q, r) => r.end(${JSON.stringify(name)})).listen(${port}, ${JSON.stringify(address)}, () => console.log("listening"));`;
  const argv = [...wrap, process.execPath, "-e", script];
  const web = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  scope.track(web);
  await new Promise<void>((resolve, reject) => {
    web.stdout!.once("data", () => resolve());
    web.once("exit", (code) => reject(new Error(`web app ${name} exited with ${code}`)));
  });
  return web;
}

/** A test web node: a web app and a real agent, in a namespace or in the root namespace. */
interface FaultNode {
  name: string;
  address: string;
  port: number;
  ns: Namespace | undefined;
  agent: Daemon;
}

/**
 * Start a node reporting to `proxies`, like cluster.ts's startNode, but with its web app and agent
 * inside `ns` when given (so a link change partitions it) and an optional CPU burn.
 */
async function startFaultNode(proxies: Proxy[], o: { name: string; address: string; port: number; ns?: Namespace; burnMs?: number }): Promise<FaultNode> {
  const dir = await scope.tempDir(`autoscaler-node-${o.name}-`);
  await trustProxies(dir, proxies);
  const ini = path.join(dir, "autoscaler.ini");
  const settings = agentSettings(proxies, { name: o.name, address: o.address, port: o.port, cpuSource: "pid:web.pid" });
  const init = await runCli(["init", "--config", ini, ...settings.flatMap((s) => ["--set", s])]);
  if (init.code !== 0) throw new Error(`node init failed: ${init.stderr}`);
  const wrap = o.ns?.wrap ?? [];
  await startWebApp(o.name, o.address, o.port, path.join(dir, "web.pid"), o.burnMs ?? 0, wrap);
  const agent = startDaemon(scope, ["agent", "--config", ini, "--log-level", "debug"], { wrap, cwd: dir });
  return { name: o.name, address: o.address, port: o.port, ns: o.ns, agent };
}

/** Change one `key = value` line of an installation's ini (keys used here appear once). */
async function setIni(inst: Installation, key: string, value: string): Promise<void> {
  const text = await fs.readFile(inst.ini, "utf8");
  const pattern = new RegExp(`^${key} = .*$`, "m");
  if (!pattern.test(text)) throw new Error(`no ${key} line in ${inst.ini}`);
  await fs.writeFile(inst.ini, text.replace(pattern, `${key} = ${value}`));
}

/** Stop a proxy's master with SIGTERM (by pid), wait for it to exit, and start it again. */
async function restartMaster(proxy: Proxy): Promise<void> {
  const old = proxy.master.child;
  const exited = new Promise((r) => old.once("exit", r));
  process.kill(old.pid!, "SIGTERM");
  await exited;
  proxy.master = await proxy.startMaster();
}

/** A decision's reason with its figures left out, so the distinct kinds of reason can be listed. */
const vague = (reason: string) => reason.replace(/\d+(\.\d+)?/g, "#");

// ---------------------------------------------------------------------------------------------
// 1. Partition between nodes and the proxy

const PARTITION_TRIALS = 3;
const NODE_TIMEOUT_S = 3;
const PARTITION_MS = 2 * NODE_TIMEOUT_S * 1000;
/** The warm node burns this many ms of every 100 (30 % of one core), read through `cpu_source = pid:`. */
const WARM_BURN_MS = 30;

test(`a partition between nodes and their proxy (link down ${PARTITION_MS / 1000} s, node_timeout ${NODE_TIMEOUT_S} s), ${PARTITION_TRIALS} trials: the nodes show unreachable, keep their hosts.d entry and server line, nothing scales; after the heal they are live within the backoff cap + 2 s`, async () => {
  const started = Date.now();
  const net3 = await createNetwork(3);
  networks.push(net3);
  const [nsP1, nsP2, nsQ] = net3.namespaces as [Namespace, Namespace, Namespace];
  // Temptations, each of which would act if missing data counted: min_nodes = 2 launches when
  // the two unreachable nodes stop counting as backends; the threshold makes the idle node Q
  // "cold", so only the warm node P1's readings hold a scale-down back, and P1 is cut off.
  // Cooldowns are off, so nothing but the decision itself stands in the way.
  // An eighth of the warm node's expected reading: it still clears it when other work halves its CPU share.
  const downThreshold = Math.max(0.5, round1(WARM_BURN_MS / CORES / 8));
  const cmds = await countingCommands();
  const proxy = await startBridgeProxy(net3.hostAddress, [
    ...cmds.settings,
    "master.interval=0.2",
    `scaling.node_timeout=${NODE_TIMEOUT_S}`,
    "scaling.window=2",
    "scaling.cooldown=0",
    // 0 while the nodes come up (an empty hosts.d would make the master launch two), 2 below.
    "scaling.min_nodes=0",
    "scaling.max_nodes=10",
    "scaling.mode=instance",
    "scaling.scale_up_threshold=90",
    `scaling.scale_down_threshold=${downThreshold}`,
    "scaling.drain_seconds=1",
    "haproxy.runtime_socket=admin.sock",
  ]);
  const p1 = await startFaultNode([proxy], { name: "web-p1", address: nsP1.address, port: 8080, ns: nsP1, burnMs: WARM_BURN_MS });
  const p2 = await startFaultNode([proxy], { name: "web-p2", address: nsP2.address, port: 8080, ns: nsP2 });
  await startFaultNode([proxy], { name: "web-q", address: nsQ.address, port: 8080, ns: nsQ });
  const cut = [p1, p2];
  await waitFor("all three nodes registered", async () => (await proxy.status()).nodes.filter((n) => n.state === "live").length === 3, 20_000, 100);
  // Now min_nodes = 2, by restarting the master on the edited ini: its hosts.d holds all three.
  await setIni(proxy.inst, "min_nodes", "2");
  await restartMaster(proxy);
  const names = ["web-p1", "web-p2", "web-q"];
  const hostsDir = path.join(proxy.inst.dir, "hosts.d");

  /** All three live, heard in the last 1.5 s, P1 visibly warm over the window: the cluster at rest, held back from a scale-down by P1 alone. */
  const settled = () =>
    waitFor(
      "all three nodes live and fresh, web-p1 warm over the window",
      async () => {
        const s = await proxy.status();
        const fresh = names.every(
          (n) => nodeOf(s, n)?.state === "live" && (nodeOf(s, n)?.last_seen_seconds_ago ?? 99) < 1.5 && (nodeOf(s, n)?.samples_in_window ?? 0) >= 2,
        );
        return fresh && (nodeOf(s, "web-p1")?.cpu_window ?? 0) >= downThreshold && s.last_decision?.reason === "within thresholds" ? s : undefined;
      },
      30_000,
      100,
    );
  const atRest = await settled();
  const restFigures = `web-p1 ${nodeOf(atRest, "web-p1")!.cpu_window} %, web-p2 ${nodeOf(atRest, "web-p2")!.cpu_window} %, web-q ${nodeOf(atRest, "web-q")!.cpu_window} % (scale-down below ${downThreshold} %)`;
  const hostsBefore = await snapshotDir(hostsDir);
  expect(Object.keys(hostsBefore).sort()).toEqual(names.map((n) => `${n}.json`));
  const configBefore = await fs.readFile(proxy.inst.haproxyConfig, "utf8");
  expect(serverLines(configBefore).map((l) => l.split(" ")[1])).toEqual(names);

  const rows: Record<string, string | number>[] = [];
  for (let trial = 1; trial <= PARTITION_TRIALS; trial++) {
    await settled();
    const connectedBefore = cut.map((n) => countLines(n.agent, /connected to the master/));
    const downAt = Date.now();
    for (const n of cut) await setLink(n.ns!, "down");

    // Watch the whole partition: when each cut node turns unreachable, what the decider says.
    const unreachableAt = new Map<string, number>();
    const reasons = new Set<string>();
    const qStates = new Set<string>();
    let polls = 0;
    while (Date.now() - downAt < PARTITION_MS && polls < 1000) {
      polls++;
      const s = await proxy.status();
      for (const n of cut) if (stateOf(s, n.name) === "unreachable" && !unreachableAt.has(n.name)) unreachableAt.set(n.name, Date.now() - downAt);
      if (s.last_decision) reasons.add(s.last_decision.reason);
      qStates.add(stateOf(s, "web-q") ?? "absent");
      await sleep(200);
    }
    const during = await proxy.status();
    const haproxyDuring = new Map((await showServersState(proxy.inst.dir)).map((r) => [r.name, r.opState]));
    const runsDuring = await cmds.runs();
    // Before the heal: entries and server lines all kept, the running HAProxy still has every backend.
    for (const n of cut) expect(stateOf(during, n.name), `${n.name} in trial ${trial}`).toBe("unreachable");
    const story = `decisions: ${[...reasons].join(" / ")}; commands: ${(await cmds.runs()).join(", ")}; events: ${during.events.map((e) => `${e.kind}: ${e.message}`).join(" | ")}`;
    expect([...qStates], `web-q's states during partition ${trial}; ${story}`).toEqual(["live"]);
    expect(await snapshotDir(hostsDir)).toEqual(hostsBefore);
    expect(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).toBe(configBefore);
    expect([...haproxyDuring.keys()].sort()).toEqual(names);
    expect(runsDuring, `commands run during partition ${trial}; decisions: ${[...reasons].join(" / ")}`).toEqual([]);
    expect(during.launches).toEqual([]);
    expect(during.drains).toEqual([]);
    expect(during.capacity).toMatchObject({ active: 1, pending: 0, leaving: 0, desired: 3 });

    const upAt = Date.now();
    for (const n of cut) await setLink(n.ns!, "up");
    const liveAfter = new Map<string, number>();
    await waitFor(
      "the cut nodes to be live again",
      async () => {
        const s = await proxy.status();
        for (const n of cut) if (stateOf(s, n.name) === "live" && !liveAfter.has(n.name)) liveAfter.set(n.name, Date.now() - upAt);
        return liveAfter.size === cut.length;
      },
      BACKOFF_CAP_MS + 10_000,
      100,
    );
    const reconnected = cut.map((n, i) => countLines(n.agent, /connected to the master/) - connectedBefore[i]!);
    for (const n of cut) expect(liveAfter.get(n.name)!).toBeLessThanOrEqual(BACKOFF_CAP_MS + 2_000);
    rows.push({
      trial,
      "link down (ms)": upAt - downAt,
      "unreachable after (ms) p1 / p2": cut.map((n) => unreachableAt.get(n.name) ?? "-").join(" / "),
      "HAProxy op state during (p1 / p2 / q)": names.map((n) => haproxyDuring.get(n)).join(" / "),
      "live again after heal (ms) p1 / p2": cut.map((n) => liveAfter.get(n.name)).join(" / "),
      "new SSH sessions": reconnected.join(" / "),
      "commands run": runsDuring.length,
      "decider said": [...new Set([...reasons].map(vague))].join("; "),
    });
  }
  // And nothing ran afterwards either, once the nodes were back.
  await sleep(1000);
  const end = await proxy.status();
  expect(await cmds.runs()).toEqual([]);
  expect(end.launches).toEqual([]);
  expect(end.drains).toEqual([]);
  printTable(
    `Partition (${PARTITION_TRIALS} trials; at rest: ${restFigures}; limit ${BACKOFF_CAP_MS + 2000} ms; test ${Math.round((Date.now() - started) / 1000)} s)`,
    rows,
  );
}, 150_000);

// ---------------------------------------------------------------------------------------------
// 2. The deciding proxy's sshd gone for a minute under load

/** How long the first proxy's sshd stays dead. The issue says minutes; the suite's 10-minute budget pays one. */
/** 60 s in the suite (its budget); `AUTOSCALER_SSHD_OUTAGE_S=180 npx vitest run test/faults-network.test.ts` runs minutes. */
const SSHD_OUTAGE_MS = Math.min(600, Math.max(10, Number(process.env.AUTOSCALER_SSHD_OUTAGE_S ?? "60") || 60)) * 1000;
/** Each node under load burns this many ms of every 100 (10 % of one core; three of them cost 0.3 of a core, for the whole outage). */
const HOT_BURN_MS = 10;

/** What a bounded request loop saw: every answer with its time, every failure with its reason. */
interface LoopResult {
  answers: { body: string; at: number }[];
  failures: { reason: string; at: number }[];
}

/**
 * `concurrency` loops of sequential GETs to address:port over keep-alive connections, with a gap
 * after each, until `stop()` or `maxRequests` or `deadlineMs`. Nothing is retried.
 */
async function requestLoop(
  address: string,
  port: number,
  o: { concurrency: number; gapMs: number; maxRequests: number; deadlineMs: number; stop: () => boolean },
): Promise<LoopResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  const result: LoopResult = { answers: [], failures: [] };
  const deadline = Date.now() + o.deadlineMs;
  let sent = 0;
  const one = () =>
    new Promise<string>((resolve, reject) => {
      const req = http.get({ host: address, port, path: "/hit", agent }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 80)}`))));
        res.on("error", reject);
      });
      req.setTimeout(5000, () => req.destroy(new Error("no answer within 5 s")));
      req.on("error", reject);
    });
  const loop = async () => {
    while (!o.stop() && sent < o.maxRequests && Date.now() < deadline) {
      sent++;
      try {
        result.answers.push({ body: await one(), at: Date.now() });
      } catch (err) {
        result.failures.push({ reason: (err as Error).message, at: Date.now() });
      }
      await sleep(o.gapMs);
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, loop));
  } finally {
    agent.destroy();
  }
  return result;
}

test(
  `the first proxy's sshd killed with every session for ${SSHD_OUTAGE_MS / 1000} s under load: the second proxy's HAProxy serves all three nodes with no failed request and its master lists them live; no launch runs; after sshd returns every agent reconnects within the backoff cap + 5 s and no launch ran twice`,
  async () => {
    const started = Date.now();
    const net2 = await createNetwork(2);
    networks.push(net2);
    const [nsA, nsB] = net2.namespaces as [Namespace, Namespace];
    const token = randomBytes(24).toString("base64url");
    const servers = [nsA.address, nsB.address];
    // Hot nodes (one in the window is enough to scale up in `instance` mode) and min_nodes = 4
    // with three nodes: the decider launches once at start (COUNT=4, three of which the nodes
    // claim as they register; one stays pending), then holds back only because unreachable nodes
    // still count and the scale-up cooldown runs. The follower sees all of this and must never act.
    const upThreshold = round1(HOT_BURN_MS / CORES / 4);
    const settings = (cmds: string[]) => [
      ...cmds,
      "master.interval=0.5",
      "scaling.node_timeout=5",
      "scaling.window=3",
      "scaling.min_nodes=4",
      "scaling.max_nodes=10",
      "scaling.mode=instance",
      `scaling.scale_up_threshold=${upThreshold}`,
      `scaling.scale_down_threshold=${round1(upThreshold / 4)}`,
      "scaling.cooldown=300",
    ];
    const [cmdsA, cmdsB] = [await countingCommands(), await countingCommands()];
    const [a, b] = await Promise.all([
      startNsProxy(scope, nsA, { token, servers, settings: settings(cmdsA.settings) }),
      startNsProxy(scope, nsB, { token, servers, settings: settings(cmdsB.settings) }),
    ]);
    const names = ["web-1", "web-2", "web-3"];
    const nodes: FaultNode[] = [];
    for (const name of names) nodes.push(await startFaultNode([a, b], { name, address: net2.hostAddress, port: await freePort(), burnMs: HOT_BURN_MS }));
    const labelA = `${nsA.address}:22`;
    const connectedToA = (n: FaultNode) =>
      n.agent
        .log()
        .split("\n")
        .filter((l) => l.includes("connected to the master") && l.includes(labelA)).length;

    const allLive = (s: MasterStatus) => names.every((n) => stateOf(s, n) === "live");
    await waitFor("both masters to list all three nodes live", async () => allLive(await status(a.inst)) && allLive(await status(b.inst)), 30_000, 200);
    // The launch that was due: exactly one, on the decider, its nodes claimed by the registrations.
    const launched = await waitFor(
      "the decider's launch for min_nodes",
      async () => {
        const s = await status(a.inst);
        return s.launches.length === 1 && s.launches[0]!.nodes.length === 3 ? s : undefined;
      },
      15_000,
      200,
    );
    expect(launched.launches[0]).toMatchObject({ count: 4, status: "pending" });
    expect(await cmdsA.runs()).toHaveLength(1);
    // Load: a bounded request loop through the second proxy's HAProxy, for the whole outage.
    let stopLoad = false;
    const load = requestLoop(nsB.address, b.inst.frontendPort, {
      concurrency: 2,
      gapMs: 20,
      maxRequests: 20_000,
      deadlineMs: SSHD_OUTAGE_MS + 60_000,
      stop: () => stopLoad,
    });
    await waitFor("the decider to see a hot node", async () => /scale-up cooldown/.test((await status(a.inst)).last_decision?.reason ?? ""), 15_000, 200);
    for (const p of [a, b]) {
      await waitFor(
        `${p.inst.haproxyConfig} to hold all three nodes`,
        async () =>
          serverLines(await fs.readFile(p.inst.haproxyConfig, "utf8"))
            .map((l) => l.split(" ")[1])
            .join() === names.join(),
        10_000,
        100,
      );
    }
    const configB = await fs.readFile(b.inst.haproxyConfig, "utf8");
    const hostsB = await snapshotDir(path.join(b.inst.dir, "hosts.d"));
    const hostsA = await snapshotDir(path.join(a.inst.dir, "hosts.d"));
    // The reload that put the third node in finishes (and is counted) after the file is renamed: wait for the count to stay put.
    const { reloads: reloadsB } = await waitFor(
      "the follower's reload count to settle",
      async () => {
        const before = (await status(b.inst)).haproxy.reloads;
        await sleep(1000);
        const now = (await status(b.inst)).haproxy.reloads;
        return now === before ? { reloads: now } : undefined;
      },
      10_000,
      0,
    );
    const connectedBefore = nodes.map(connectedToA);
    const failedBefore = nodes.map((n) => countLines(n.agent, /cannot reach the master/));

    const sessions = await killSshdAndSessions(a);
    const downAt = Date.now();
    expect(sessions).toBeGreaterThanOrEqual(3);
    await waitFor(
      "the decider to log all three agents disconnected",
      () =>
        names.every((n) =>
          a.master
            .log()
            .split("\n")
            .some((l) => l.includes("agent disconnected") && l.includes(`"node":"${n}"`)),
        ),
      10_000,
      50,
    );

    // The outage: every 2 s, the follower lists all three live and neither master ran a command.
    const reasonsA = new Set<string>();
    let checks = 0;
    while (Date.now() - downAt < SSHD_OUTAGE_MS && checks < SSHD_OUTAGE_MS / 1000) {
      checks++;
      const [sa, sb] = [await status(a.inst), await status(b.inst)];
      expect(
        names.map((n) => stateOf(sb, n)),
        `the follower's view ${Math.round((Date.now() - downAt) / 1000)} s into the outage`,
      ).toEqual(["live", "live", "live"]);
      if (sa.last_decision) reasonsA.add(sa.last_decision.reason);
      expect(await cmdsA.runs()).toHaveLength(1);
      expect(await cmdsB.runs()).toEqual([]);
      await sleep(2000);
    }
    const upAt = Date.now();
    const duringA = await status(a.inst);
    expect(names.map((n) => stateOf(duringA, n))).toEqual(["unreachable", "unreachable", "unreachable"]);
    expect(duringA.launches).toHaveLength(1);
    // Both proxies kept every backend: the follower's HAProxy config never changed, nor either hosts.d.
    expect(await fs.readFile(b.inst.haproxyConfig, "utf8")).toBe(configB);
    expect((await status(b.inst)).haproxy.reloads).toBe(reloadsB);
    expect(await snapshotDir(path.join(b.inst.dir, "hosts.d"))).toEqual(hostsB);
    expect(await snapshotDir(path.join(a.inst.dir, "hosts.d"))).toEqual(hostsA);
    const backoffs = nodes.map((n) =>
      Math.max(
        ...n.agent
          .log()
          .split("\n")
          .filter((l) => l.includes("reconnecting after backoff") && l.includes(labelA))
          .map((l) => (JSON.parse(l) as { ms: number }).ms),
      ),
    );
    const attempts = nodes.map((n, i) => countLines(n.agent, /cannot reach the master/) - failedBefore[i]!);

    await a.sshd.restart();
    await waitFor("sshd in the first namespace to listen again", async () => canConnect(22, nsA.address), 10_000, 20);
    const restartedAt = Date.now();
    await waitFor(
      "every agent to reconnect to the first proxy",
      () => nodes.every((n, i) => connectedToA(n) > connectedBefore[i]!),
      BACKOFF_CAP_MS + 10_000,
      100,
    );
    // From each agent's own log line: when it was welcomed again, after sshd listened.
    const backMs = nodes.map((n) => logLines(n.agent, "connected to the master").find((l) => l.fields.proxy === labelA && l.at > downAt)!.at - restartedAt);
    await waitFor("the decider to list all three live again", async () => allLive(await status(a.inst)), 10_000, 100);
    await sleep(1500); // a few decision ticks with every node back and hot
    stopLoad = true;
    const traffic = await load;
    const after = await status(a.inst);

    const inOutage = traffic.answers.filter((x) => x.at >= downAt && x.at <= upAt);
    const servedInOutage = Object.fromEntries(names.map((n) => [n, inOutage.filter((x) => x.body === n).length]));
    expect(traffic.failures.map((f) => f.reason)).toEqual([]);
    for (const n of names) expect(servedInOutage[n], `${n} served through the second proxy during the outage`).toBeGreaterThan(0);
    for (const ms of backMs) expect(ms).toBeLessThanOrEqual(BACKOFF_CAP_MS + 5_000);
    // No launch twice: the one launch is still the only one, on either proxy, and still waits for its fourth node.
    expect(await cmdsA.runs()).toHaveLength(1);
    expect(await cmdsB.runs()).toEqual([]);
    expect(after.launches).toHaveLength(1);
    expect(after.launches[0]).toMatchObject({ count: 4, status: "pending", nodes: [...launched.launches[0]!.nodes] });
    expect((await status(b.inst)).launches).toEqual([]);

    printTable(`sshd outage (1 trial; test ${Math.round((Date.now() - started) / 1000)} s)`, [
      {
        "sshd down (ms)": restartedAt - downAt,
        "sessions killed": sessions,
        "failed reconnects per agent": attempts.join(" / "),
        "longest backoff reached (ms)": backoffs.join(" / "),
        "back after sshd restart (ms)": backMs.join(" / "),
        "requests via proxy 2 in outage (web-1/2/3)": names.map((n) => servedInOutage[n]).join(" / "),
        "failed requests": traffic.failures.length,
        "follower checks all live": `${checks}/${checks}`,
        "launch runs (decider / follower)": `${(await cmdsA.runs()).length} / ${(await cmdsB.runs()).length}`,
        "decider said during outage": [...new Set([...reasonsA].map(vague))].join("; "),
        "decider said after": vague(after.last_decision?.reason ?? "-"),
      },
    ]);
  },
  SSHD_OUTAGE_MS + 120_000,
);
