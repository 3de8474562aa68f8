import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { getThrough, startNode, startProxy, type Proxy } from "./helpers/cluster.js";
import { canConnect, serverLines, showServersState } from "./helpers/haproxy.js";
import { Scope, sleep, startBackend, snapshotDir, waitFor } from "./helpers/process.js";
import { status, type MasterStatus } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

const node = (s: MasterStatus, name: string) => s.nodes.find((n) => n.name === name);
const hostFile = (proxy: Proxy, name: string) => path.join(proxy.inst.dir, "hosts.d", `${name}.json`);
const serversOf = async (proxy: Proxy) => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8"));
const hasServer = async (proxy: Proxy, name: string) => (await serversOf(proxy)).some((l) => l.startsWith(`server ${name} `));

/** The backends the running HAProxy serves, from its admin socket (`show servers state`), not from the file. */
const runningServers = async (proxy: Proxy) => (await showServersState(proxy.inst.dir)).map((r) => r.name).sort();

/** The JSON lines of a daemon's log (the master logs JSON when stdout is not a terminal). */
function jsonLines(log: string): Record<string, unknown>[] {
  return log
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Add a hand-written backend with a real web server behind it. */
async function addManualHost(proxy: Proxy, name: string, address: string): Promise<void> {
  const backend = await startBackend(scope, name, address);
  const r = await proxy.inst.cli("add-host", address, String(backend.port), "--name", name);
  expect(r.code, r.stderr).toBe(0);
}

test("a silent node shows unreachable after node_timeout and keeps its entry, then is forgotten after forget_after; a hand-added host is never forgotten", async () => {
  // shared_token = refuse: the agents present their own credentials, so nothing here is the weaker mode to warn about.
  const proxy = await startProxy(scope, {
    settings: ["scaling.node_timeout=2", "scaling.forget_after=5", "master.interval=0.2", "master.shared_token=refuse"],
  });
  // The short settings parse: the ini holds them, check-config accepts it (a decimal duration included) and warns about nothing.
  const ini = await fs.readFile(proxy.inst.ini, "utf8");
  expect(ini).toMatch(/^node_timeout = 2$/m);
  expect(ini).toMatch(/^forget_after = 5$/m);
  expect(ini).toMatch(/^interval = 0\.2$/m);
  const check = await proxy.inst.cli("check-config", "--json");
  expect(check.code, check.stderr).toBe(0);
  expect(check.stderr).toBe("");
  expect(proxy.master.log()).not.toMatch(/"level":"(warn|error)"/);

  await addManualHost(proxy, "manual-1", "127.0.0.4");
  const manualBefore = await fs.readFile(hostFile(proxy, "manual-1"), "utf8");
  const a = await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.2" });
  const b = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.3" });
  await waitFor(
    "both nodes live with samples",
    async () => {
      const s = await status(proxy);
      return ["web-a", "web-b"].every((n) => node(s, n)?.state === "live" && node(s, n)?.cpu_now !== null);
    },
    20_000,
    100,
  );
  expect(await hasServer(proxy, "web-a")).toBe(true);

  // Stop web-a's agent: its tunnel drops, but a dropped tunnel alone changes nothing.
  const exited = new Promise((r) => a.agent.child.once("exit", r));
  process.kill(a.agent.child.pid!, "SIGTERM");
  await exited;
  const stoppedAt = Date.now();
  await proxy.master.waitForLog(/agent disconnected.*"node":"web-a"/, 10_000);
  const justDropped = await status(proxy);
  expect(node(justDropped, "web-a")?.state).toBe("live");

  // After node_timeout without samples: unreachable, entry and server line still there.
  const unreachable = await waitFor(
    "web-a to show unreachable",
    async () => {
      const s = await status(proxy);
      return node(s, "web-a")?.state === "unreachable" ? s : undefined;
    },
    10_000,
    50,
  );
  const unreachableAfter = Date.now() - stoppedAt;
  // last_seen is rounded to a tenth of a second, so 2.04 s shows as 2.
  expect(node(unreachable, "web-a")!.last_seen_seconds_ago).toBeGreaterThanOrEqual(2);
  expect(existsSync(hostFile(proxy, "web-a"))).toBe(true);
  expect(await hasServer(proxy, "web-a")).toBe(true);
  expect(await runningServers(proxy)).toEqual(["manual-1", "web-a", "web-b"]);
  expect(node(unreachable, "web-b")?.state).toBe("live");
  const viaCli = JSON.parse((await proxy.inst.cli("status", "--json")).stdout) as MasterStatus;
  expect(node(viaCli, "web-a")?.state).toBe("unreachable");

  // After forget_after: gone from status, hosts.d and haproxy.cfg, and never shown in between as
  // a plain hosts.d backend ("configured"): the master drops it from memory before removing the file.
  let lastSight = node(unreachable, "web-a")!;
  let configuredSightings = 0;
  await waitFor(
    "web-a to be forgotten",
    async () => {
      const seen = node(await status(proxy), "web-a");
      if (seen?.state === "configured") configuredSightings++;
      else if (seen) lastSight = seen;
      return seen === undefined;
    },
    15_000,
    50,
  );
  const forgottenAfter = Date.now() - stoppedAt;
  await waitFor(
    "web-a's hosts.d entry and server line to go",
    async () => !existsSync(hostFile(proxy, "web-a")) && !(await hasServer(proxy, "web-a")),
    5_000,
    20,
  );
  console.log(
    `agent stopped → unreachable after ${unreachableAfter} ms (node_timeout 2 s), forgotten after ${forgottenAfter} ms (forget_after 5 s); shown "configured" in ${configuredSightings} polls in between`,
  );
  expect(configuredSightings).toBe(0);
  // Kept, unreachable, until close to forget_after (polled every 50 ms; generous for a loaded machine).
  expect(lastSight.state).toBe("unreachable");
  expect(lastSight.last_seen_seconds_ago).toBeGreaterThanOrEqual(4);
  // The last sample came at most one agent interval before the stop, so neither step is late.
  expect(unreachableAfter).toBeLessThan(2_000 + 3_000);
  expect(forgottenAfter).toBeLessThan(5_000 + 4_000);

  // The hand-added host is older than forget_after and sends nothing, yet stays; web-b stays live.
  const after = await proxy.status();
  expect(node(after, "manual-1")).toMatchObject({ source: "manual", state: "configured" });
  expect(node(after, "web-b")?.state).toBe("live");
  expect(await fs.readFile(hostFile(proxy, "manual-1"), "utf8")).toBe(manualBefore);
  expect((await serversOf(proxy)).map((l) => l.split(" ")[1])).toEqual(["manual-1", "web-b"]);
  await waitFor("the running HAProxy to drop web-a", async () => (await runningServers(proxy)).join() === "manual-1,web-b", 5_000, 50);
  expect(b.agent.child.exitCode).toBeNull();
}, 90_000);

test("a hello claiming the name of a live node from another address, or of a hand-added host, is refused and changes nothing", async () => {
  const proxy = await startProxy(scope);
  await addManualHost(proxy, "manual-1", "127.0.0.4");
  const b = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.3" });
  await b.agent.waitForLog(/connected to the master/, 20_000);
  await waitFor("web-b in HAProxy's config", () => hasServer(proxy, "web-b"), 5_000, 20);
  const hostsBefore = await snapshotDir(path.join(proxy.inst.dir, "hosts.d"));
  const configBefore = await fs.readFile(proxy.inst.haproxyConfig, "utf8");

  const impostor = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.5" });
  const refusedLine = await impostor.agent.waitForLog(/the master refused this node/, 20_000);
  expect(refusedLine).toContain("the name web-b is taken by a live node at another address");
  const masterLine = await proxy.master.waitForLog(/"reason":"name_taken"/, 5_000);
  expect(JSON.parse(masterLine)).toMatchObject({ level: "warn", name: "web-b", address: "127.0.0.5" });

  const squatter = await startNode(scope, [proxy], { name: "manual-1", address: "127.0.0.6" });
  const manualLine = await squatter.agent.waitForLog(/the master refused this node/, 20_000);
  expect(manualLine).toContain("belongs to a hand-added backend");
  const masterManual = await proxy.master.waitForLog(/"reason":"name_manual"/, 5_000);
  expect(JSON.parse(masterManual)).toMatchObject({ level: "warn", name: "manual-1", address: "127.0.0.6" });

  // Neither refusal registered anything: the first web-b stays, the hand-added host stays.
  const s = await proxy.status();
  expect(s.nodes.map((n) => [n.name, n.address, n.source, n.state])).toEqual([
    ["manual-1", "127.0.0.4", "manual", "configured"],
    ["web-b", "127.0.0.3", "agent", "live"],
  ]);
  expect(s.events.filter((e) => e.kind === "refused").length).toBeGreaterThanOrEqual(2);
  expect(await snapshotDir(path.join(proxy.inst.dir, "hosts.d"))).toEqual(hostsBefore);
  expect(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).toBe(configBefore);
  expect(await getThrough(proxy.inst.frontendPort)).toMatch(/^(web-b|manual-1)$/);
  expect(impostor.agent.log()).not.toMatch(/connected to the master/);
  expect(squatter.agent.log()).not.toMatch(/connected to the master/);
});

test('a registering node is served by HAProxy within a second of the master\'s "agent registered" line, with an agent entry carrying its instance id', async () => {
  const proxy = await startProxy(scope);
  const n = await startNode(scope, [proxy], { name: "web-r", address: "127.0.0.2", startAgent: false });
  expect(await getThrough(proxy.inst.frontendPort)).toBeUndefined();

  // Poll HAProxy every 10 ms from before the agent starts; note when it first answers with the node.
  let servedAt: number | undefined;
  let stop = false;
  const poll = (async () => {
    while (!stop && servedAt === undefined) {
      if ((await getThrough(proxy.inst.frontendPort)) === "web-r") servedAt = Date.now();
      else await sleep(10);
    }
  })();
  try {
    n.startAgent();
    await waitFor("HAProxy to serve web-r", () => servedAt, 20_000, 10);
  } finally {
    stop = true;
    await poll;
  }
  const registered = jsonLines(proxy.master.log()).find((l) => l.msg === "agent registered" && l.node === "web-r");
  expect(registered).toBeDefined();
  const ms = servedAt! - Date.parse(registered!.time as string);
  console.log(`"agent registered" → HAProxy serves web-r: ${ms} ms`);
  expect(ms).toBeGreaterThanOrEqual(0);
  expect(ms).toBeLessThan(1000);

  const entry = JSON.parse(await fs.readFile(hostFile(proxy, "web-r"), "utf8")) as Record<string, unknown>;
  expect(entry).toMatchObject({ name: "web-r", address: "127.0.0.2", port: n.webPort, source: "agent", instance_id: "i-web-r" });
});

/** The shape of a JSON value: key names and value types, arrays by their elements' shapes. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return [...new Set(v.map((e) => JSON.stringify(shape(e))))].map((s) => JSON.parse(s) as unknown);
  if (v !== null && typeof v === "object")
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, shape((v as Record<string, unknown>)[k])]),
    );
  return v === null ? "null" : typeof v;
}

/** The value of one Prometheus sample line, e.g. `autoscaler_nodes{state="live"}`. */
function metric(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test("/metrics reports each node's CPU, live nodes, samples and reloads; /status matches `status --json`; both are read-only on 127.0.0.1 only", async () => {
  const proxy = await startProxy(scope);
  await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.2" });
  await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.3" });
  const base = `http://127.0.0.1:${proxy.metricsPort}`;
  await waitFor(
    "both nodes reporting CPU",
    async () => {
      const s = await status(proxy);
      return s.nodes.filter((n) => n.state === "live" && n.cpu_now !== null).length === 2 && s.haproxy.reloads >= 1;
    },
    20_000,
    100,
  );

  const res = await fetch(`${base}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  const text = await res.text();
  for (const name of ["web-a", "web-b"]) {
    const cpu = metric(text, `autoscaler_node_cpu_percent{node="${name}"}`);
    expect(cpu, `cpu of ${name} in:\n${text}`).toBeGreaterThanOrEqual(0);
    expect(cpu).toBeLessThanOrEqual(100);
  }
  expect(metric(text, 'autoscaler_nodes{state="live"}')).toBe(2);
  expect(metric(text, "autoscaler_samples_received_total")).toBeGreaterThan(0);
  expect(metric(text, "autoscaler_haproxy_reloads_total")).toBeGreaterThanOrEqual(1);

  const [overHttp, overCli] = [await (await fetch(`${base}/status`)).json(), JSON.parse((await proxy.inst.cli("status", "--json")).stdout) as MasterStatus];
  expect(shape(overHttp)).toEqual(shape(overCli));
  expect((overHttp as MasterStatus).nodes.map((n) => [n.name, n.state])).toEqual(overCli.nodes.map((n) => [n.name, n.state]));

  for (const url of [`${base}/metrics`, `${base}/status`]) {
    const post = await fetch(url, { method: "POST", body: "{}" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  }

  // Bound to 127.0.0.1 alone: the only listening socket on that port, in /proc/net/tcp and tcp6.
  const hexPort = proxy.metricsPort.toString(16).toUpperCase().padStart(4, "0");
  const listeners: string[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const row of (await fs.readFile(file, "utf8")).split("\n").slice(1)) {
      const [, local, , state] = row.trim().split(/\s+/);
      if (state === "0A" && local?.endsWith(`:${hexPort}`)) listeners.push(local);
    }
  }
  expect(listeners).toEqual([`0100007F:${hexPort}`]);
  expect(await canConnect(proxy.metricsPort, "127.0.0.2")).toBe(false);
});
