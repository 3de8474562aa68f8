import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { BACKOFF_CAP_MS } from "../packages/agent/src/agent.js";
import { getThrough, startNode, startProxy, type Daemon, type Proxy, type TestNode } from "./helpers/cluster.js";
import { canConnect } from "./helpers/haproxy.js";
import { descendants, Scope, sleep, snapshotDir, waitFor } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** Lines of a daemon's output that match `pattern`. */
const count = (d: Daemon, pattern: RegExp) =>
  d
    .log()
    .split("\n")
    .filter((l) => pattern.test(l)).length;

/** Both nodes live in `status --json`, each with a sample newer than two seconds. */
async function bothLive(proxy: Proxy, names: string[]) {
  return waitFor(
    `${names.join(" and ")} live with fresh samples`,
    async () => {
      const s = await proxy.status();
      const fresh = s.nodes.filter((n) => names.includes(n.name) && n.state === "live" && n.cpu_now !== null && (n.last_seen_seconds_ago ?? 99) < 2);
      return fresh.length === names.length ? s : undefined;
    },
    15_000,
    200,
  );
}

async function twoNodes(proxy: Proxy): Promise<[TestNode, TestNode]> {
  const a = await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.2" });
  const b = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.3" });
  await a.agent.waitForLog(/connected to the master/, 20_000);
  await b.agent.waitForLog(/connected to the master/, 20_000);
  return [a, b];
}

test("after sshd and every connection it holds are killed, agents are back within the backoff cap once sshd restarts", async () => {
  const proxy = await startProxy(scope);
  const nodes = await twoNodes(proxy);
  await bothLive(proxy, ["web-a", "web-b"]);

  // Killing only the listener leaves the per-connection sshd processes, and so the tunnels, alive.
  const listener = proxy.sshd.pid();
  const children = await descendants(listener);
  expect(children.length).toBeGreaterThanOrEqual(2);
  const masterLog = proxy.master;
  const failedBefore = nodes.map((n) => count(n.agent, /cannot reach the master/));
  const connectedBefore = nodes.map((n) => count(n.agent, /connected to the master/));
  proxy.sshd.kill("SIGKILL");
  for (const pid of children) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone with its parent
    }
  }
  await waitFor(
    "the master to log both agents disconnected",
    () =>
      ["web-a", "web-b"].every((n) =>
        masterLog
          .log()
          .split("\n")
          .some((l) => l.includes("agent disconnected") && l.includes(`"node":"${n}"`)),
      ),
    10_000,
    20,
  );
  for (const n of nodes) await n.agent.waitForLog(/tunnel closed/, 10_000);

  // Keep sshd down while each agent fails three reconnects, so their backoff has grown.
  const downSince = Date.now();
  await waitFor(
    "each agent to fail three reconnects",
    () => nodes.every((n, i) => count(n.agent, /cannot reach the master/) >= failedBefore[i]! + 3),
    20_000,
    50,
  );
  expect(await canConnect(proxy.sshd.port)).toBe(false);
  const downMs = Date.now() - downSince;

  const restartedAt = Date.now();
  await proxy.sshd.restart();
  const limit = BACKOFF_CAP_MS + 2_000;
  const backMs = await Promise.all(
    nodes.map(async (n, i) => {
      await waitFor(
        `${n.name} to log "connected to the master" again`,
        () => count(n.agent, /connected to the master/) > connectedBefore[i]!,
        limit + 5_000,
        20,
      );
      return Date.now() - restartedAt;
    }),
  );
  console.log(`sshd down ${downMs} ms; agents back after the restart in: ${nodes.map((n, i) => `${n.name} ${backMs[i]} ms`).join(", ")} (limit ${limit} ms)`);
  for (const ms of backMs) expect(ms).toBeLessThan(limit);

  // Fresh samples: more readings than at the reconnect, and seen in the last two seconds.
  const atReconnect = await bothLive(proxy, ["web-a", "web-b"]);
  const samples = (s: typeof atReconnect, name: string) => s.nodes.find((n) => n.name === name)!.samples_in_window;
  await waitFor(
    "new samples from both nodes",
    async () => {
      const s = await proxy.status();
      return ["web-a", "web-b"].every((name) => samples(s, name) > samples(atReconnect, name) && s.nodes.find((n) => n.name === name)!.state === "live");
    },
    15_000,
    200,
  );
}, 120_000);

test("a master killed with SIGKILL and started again leaves hosts.d byte-identical, HAProxy serves both nodes throughout, and the agents come back", async () => {
  const proxy = await startProxy(scope);
  const nodes = await twoNodes(proxy);
  const seenBefore = new Set<string>();
  await waitFor(
    "HAProxy to serve both nodes",
    async () => {
      const body = await getThrough(proxy.inst.frontendPort);
      if (body) seenBefore.add(body);
      return seenBefore.has("web-a") && seenBefore.has("web-b");
    },
    10_000,
    10,
  );
  await bothLive(proxy, ["web-a", "web-b"]);

  const hostsDir = path.join(proxy.inst.dir, "hosts.d");
  const hostsBefore = await snapshotDir(hostsDir);
  expect(Object.keys(hostsBefore).sort()).toEqual(["web-a.json", "web-b.json"]);
  const configBefore = await fs.readFile(proxy.inst.haproxyConfig, "utf8");
  const connectedBefore = nodes.map((n) => count(n.agent, /connected to the master/));

  // Requests all through the outage, one every 25 ms.
  const bodies: string[] = [];
  let failures = 0;
  let stop = false;
  const traffic = (async () => {
    while (!stop) {
      const body = await getThrough(proxy.inst.frontendPort);
      if (body) bodies.push(body);
      else failures++;
      await sleep(25);
    }
  })();

  const old = proxy.master.child;
  const exited = new Promise<NodeJS.Signals | null>((resolve) => old.once("exit", (_code, signal) => resolve(signal)));
  process.kill(old.pid!, "SIGKILL");
  expect(await exited).toBe("SIGKILL");

  // Right after the kill, HAProxy carries on without its master.
  const rightAfter: (string | undefined)[] = [];
  for (let i = 0; i < 6; i++) rightAfter.push(await getThrough(proxy.inst.frontendPort));
  expect(rightAfter).not.toContain(undefined);
  expect(new Set(rightAfter)).toEqual(new Set(["web-a", "web-b"]));
  expect(await snapshotDir(hostsDir)).toEqual(hostsBefore);
  for (const n of nodes) await n.agent.waitForLog(/tunnel closed|cannot reach the master/, 10_000);

  const restartedAt = Date.now();
  proxy.master = await proxy.startMaster();
  const backMs = await Promise.all(
    nodes.map(async (n, i) => {
      await waitFor(`${n.name} to reconnect`, () => count(n.agent, /connected to the master/) > connectedBefore[i]!, BACKOFF_CAP_MS + 10_000, 20);
      return Date.now() - restartedAt;
    }),
  );
  const status = await bothLive(proxy, ["web-a", "web-b"]);
  expect(status.nodes.map((n) => [n.name, n.address, n.source, n.state])).toEqual([
    ["web-a", "127.0.0.2", "agent", "live"],
    ["web-b", "127.0.0.3", "agent", "live"],
  ]);
  // The same hosts, so the same config: the new master had nothing to reload.
  expect(status.haproxy.reloads).toBe(0);
  expect(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).toBe(configBefore);
  expect(await snapshotDir(hostsDir)).toEqual(hostsBefore);

  stop = true;
  await traffic;
  expect(failures).toBe(0);
  expect(new Set(bodies)).toEqual(new Set(["web-a", "web-b"]));
  console.log(
    `master restart: agents back in ${nodes.map((n, i) => `${n.name} ${backMs[i]} ms`).join(", ")}; ${bodies.length} requests through HAProxy during the outage and reconnect, ${failures} failed`,
  );
}, 90_000);
