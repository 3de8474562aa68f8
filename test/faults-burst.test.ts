/**
 * A reconnect burst (issue 6): 100 agents connected through one sshd (the README's MaxStartups),
 * then sshd killed with every session and started again, so all reconnect at once: all are back,
 * and the master's registry, hosts.d and haproxy.cfg hold each exactly once. Everything is real:
 * sshd, HAProxy, a master and 100 `autoscaler agent` processes on loopback.
 *
 * Starting 100 agent processes takes the machine's cores for 40–80 s (about 2 GiB PSS in all),
 * so this file runs alone, after every other file (vitest.config.ts: the "alone" project):
 * tests that read CPU through a burn would otherwise see it starved.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { nodeCredential } from "@autoscaler/shared";
import { afterEach, expect, test } from "vitest";
import { BACKOFF_CAP_MS } from "../packages/agent/src/agent.js";
import { agentSettings, startDaemon, startProxy, trustProxies, type Daemon, type Proxy } from "./helpers/cluster.js";
import { countLines, killSshdAndSessions, logLines, printTable } from "./helpers/faults.js";
import { serverLines } from "./helpers/haproxy.js";
import { runCli, Scope, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

const BURST_AGENTS = 100;
/** Agents started together, each batch waited for before the next (a staggered start, as nodes boot). */
const START_BATCH = 10;

/** The figures `/metrics` has: one sample's value. */
async function metricValue(proxy: Proxy, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  if (line === undefined) throw new Error(`no ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

/** A process's memory in MiB from /proc/<pid>/smaps_rollup: resident (RSS) and its proportional share of shared pages (PSS); 0 when it is gone. */
async function memoryMiB(pid: number): Promise<{ rss: number; pss: number }> {
  const text = await fs.readFile(`/proc/${pid}/smaps_rollup`, "utf8").catch(() => "");
  const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return { rss: kB("Rss") / 1024, pss: kB("Pss") / 1024 };
}

test(`${BURST_AGENTS} agents through one sshd (MaxStartups 200:30:400), sshd killed with every session and started again: all reconnect at once, all are back, and the master's registry, hosts.d and haproxy.cfg hold each exactly once`, async () => {
  const started = Date.now();
  // max_nodes bounds how many agent names may register (max_nodes + pending + 2) and how fast (max_nodes a minute).
  const proxy = await startProxy(scope, { settings: ["scaling.forget_after=600", `scaling.max_nodes=${BURST_AGENTS * 2}`] });
  const dir = await scope.tempDir("autoscaler-burst-");
  await trustProxies(dir, [proxy]);

  // One web app process serves every node: one HTTP server per node on its own port.
  const names = Array.from({ length: BURST_AGENTS }, (_, i) => `burst-${String(i + 1).padStart(3, "0")}`);
  const web = spawn(
    process.execPath,
    [
      "-e",
      `
      const http = require("http");
      const names = ${JSON.stringify(names)};
      Promise.all(names.map((n) => new Promise((ok) => { const s = http.createServer((q, r) => r.end(n)); s.listen(0, "127.0.0.1", () => ok(s.address().port)); })))
        .then((ports) => console.log(JSON.stringify(ports)));`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  scope.track(web);
  const ports = await new Promise<number[]>((resolve, reject) => {
    let out = "";
    web.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.endsWith("\n")) resolve(JSON.parse(out) as number[]);
    });
    web.once("exit", (code) => reject(new Error(`the web app exited with ${code}`)));
  });

  // One ini made by `autoscaler init`, copied per node with its own name and port.
  const base = path.join(dir, "base.ini");
  const settings = agentSettings([proxy], { name: "burst-000", address: "127.0.0.1", port: 1, instanceId: "i-burst", cpuSource: "system" });
  const init = await runCli(["init", "--config", base, ...settings.flatMap((s) => ["--set", s])]);
  expect(init.code, init.stderr).toBe(0);
  const baseText = await fs.readFile(base, "utf8");
  const agents: Daemon[] = [];
  const startAt = Date.now();
  for (let i = 0; i < BURST_AGENTS; i += START_BATCH) {
    const batch: Daemon[] = [];
    for (let j = i; j < Math.min(i + START_BATCH, BURST_AGENTS); j++) {
      const ini = path.join(dir, `${names[j]}.ini`);
      await fs.writeFile(
        ini,
        baseText
          .replace(/^name = burst-000$/m, `name = ${names[j]}`)
          .replace(/^port = 1$/m, `port = ${ports[j]}`)
          .replace(/^instance_id = i-burst$/m, `instance_id = i-${names[j]}`)
          .replace(/^credential = .*$/m, `credential = ${nodeCredential(proxy.token, names[j]!)}`),
        { mode: 0o600 },
      );
      // The agent unit's NODE_OPTIONS (etc/systemd/autoscaler-agent.service): a smaller young generation.
      batch.push(startDaemon(scope, ["agent", "--config", ini, "--log-level", "debug"], { env: { NODE_OPTIONS: "--max-semi-space-size=1" } }));
    }
    agents.push(...batch);
    await waitFor(`agents ${i + 1}–${i + batch.length} to connect`, () => batch.every((d) => countLines(d, /connected to the master/) >= 1), 60_000, 100);
  }
  const startMs = Date.now() - startAt;
  await waitFor(
    `all ${BURST_AGENTS} live in the status`,
    async () => (await status(proxy)).nodes.filter((n) => n.state === "live").length === BURST_AGENTS,
    30_000,
    200,
  );
  const memory = (await Promise.all(agents.map((d) => memoryMiB(d.child.pid!)))).reduce((x, y) => ({ rss: x.rss + y.rss, pss: x.pss + y.pss }), {
    rss: 0,
    pss: 0,
  });

  const registrationsBefore = await metricValue(proxy, "autoscaler_registrations_total");
  const connectedBefore = agents.map((d) => countLines(d, /connected to the master/));
  const failedBefore = agents.map((d) => countLines(d, /cannot reach the master/));
  const killedAt = Date.now();
  const sessions = await killSshdAndSessions(proxy);
  await proxy.sshd.restart(); // resolves once the new sshd accepts connections
  const restartedAt = Date.now();
  expect(sessions).toBeGreaterThanOrEqual(BURST_AGENTS);

  // Every agent back: its own log says so (with the time it was welcomed), then the master's registry says so.
  await waitFor(
    `all ${BURST_AGENTS} agents to reconnect`,
    () => {
      const missing = agents.map((d, i) => ({ d, i })).filter(({ d, i }) => countLines(d, /connected to the master/) <= connectedBefore[i]!);
      if (missing.length === 0) return true;
      // On a timeout, say which agents are not back and what they last logged.
      const lines = missing
        .slice(0, 5)
        .map(
          ({ d, i }) =>
            `${names[i]} (pid ${d.child.pid}, ${d.child.exitCode === null ? "running" : `exited ${d.child.exitCode}`}): ${d.log().trim().split("\n").slice(-4).join(" | ")}`,
        );
      const tail = (text: string) => text.trim().split("\n").slice(-5).join(" | ");
      throw new Error(
        `${missing.length} not back (sshd listening again ${Date.now() - restartedAt} ms ago); ${lines.join("; ")}; sshd: ${tail(proxy.sshd.log())}; master: ${tail(proxy.master.log())}`,
      );
    },
    BACKOFF_CAP_MS + 30_000,
    200,
  );
  const backAt = agents.map((d) => logLines(d, "connected to the master").find((l) => l.at >= killedAt)!.at - killedAt);
  const exact = await waitFor(
    "the registry to hold every node once, live, with one connection and fresh samples",
    async () => {
      const s = await status(proxy);
      const ok = s.nodes.length === BURST_AGENTS && s.nodes.every((n) => n.state === "live" && n.connections === 1 && (n.last_seen_seconds_ago ?? 99) < 2);
      return ok && (await metricValue(proxy, "autoscaler_registrations_total")) - registrationsBefore >= BURST_AGENTS ? s : undefined;
    },
    30_000,
    200,
  );
  const registryMs = Date.now() - killedAt;
  const registrations = (await metricValue(proxy, "autoscaler_registrations_total")) - registrationsBefore;

  expect(exact.nodes.map((n) => n.name)).toEqual(names);
  expect(exact.nodes.map((n) => n.port)).toEqual(ports);
  expect(new Set(exact.nodes.map((n) => n.name)).size).toBe(BURST_AGENTS);
  expect((await fs.readdir(path.join(proxy.inst.dir, "hosts.d"))).sort()).toEqual(names.map((n) => `${n}.json`));
  expect(serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).map((l) => l.split(" ")[1])).toEqual(names);
  const retried = agents.filter((d, i) => countLines(d, /cannot reach the master/) > failedBefore[i]!).length;
  const errors = new Set(
    agents.flatMap((d) =>
      logLines(d, "cannot reach the master")
        .filter((l) => l.at >= killedAt)
        .map((l) => String(l.fields.error)),
    ),
  );
  const drops = proxy.sshd
    .log()
    .split("\n")
    .filter((l) => /drop connection|MaxStartups throttling/.test(l));
  expect(drops).toEqual([]);
  const sorted = [...backAt].sort((x, y) => x - y);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  for (const ms of backAt) expect(ms - (restartedAt - killedAt)).toBeLessThanOrEqual(BACKOFF_CAP_MS + 2_000);

  printTable(`Reconnect burst (1 trial of ${BURST_AGENTS} agents; test ${Math.round((Date.now() - started) / 1000)} s)`, [
    {
      agents: BURST_AGENTS,
      "staggered start (ms)": startMs,
      "agents' memory (MiB, sum of PSS / RSS)": `${Math.round(memory.pss)} / ${Math.round(memory.rss)}`,
      "sessions killed": sessions,
      "sshd listening again after kill (ms)": restartedAt - killedAt,
      "agents back after kill (ms) p50 / p90 / max": `${pct(50)} / ${pct(90)} / ${sorted.at(-1)}`,
      "registry exact after kill (ms)": registryMs,
      "new registrations": registrations,
      "agents that failed an attempt": `${retried}${errors.size > 0 ? ` (${[...errors].join("; ")})` : ""}`,
      "sshd drops (MaxStartups)": drops.length,
    },
  ]);
}, 150_000);
