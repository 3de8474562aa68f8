/**
 * Scaling end to end: a real proxy (sshd, HAProxy, master) whose launch command is the fake
 * cloud (test/helpers/cloud.ts): each launch starts a real node on this machine, a web app
 * that burns CPU on demand plus a real agent measuring it through `cpu_source = pid:`. Only
 * the cloud is fake. CPU figures are percent of all of this machine's cores.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test, vi } from "vitest";
import { createCloud, type Cloud } from "./helpers/cloud.js";
import { getThrough, startProxy, type Proxy } from "./helpers/cluster.js";
import { serverLines, showServersState } from "./helpers/haproxy.js";
import { runLoad } from "./helpers/load.js";
import { Scope, sleep, waitFor } from "./helpers/process.js";
import { status, type MasterStatus } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());
// A burn shares the cores with the rest of the suite: a window may restart when a reading dips,
// so these tests get room beyond the default minute (each takes 15–25 s on a quiet machine).
vi.setConfig({ testTimeout: 120_000 });

const liveNames = (s: MasterStatus) =>
  s.nodes
    .filter((n) => n.state === "live")
    .map((n) => n.name)
    .sort();
const configServers = async (proxy: Proxy) => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).map((l) => l.split(" ")[1]!);

/** A proxy whose master launches through the cloud (and terminates through it when `down`). */
async function cloudProxy(settings: string[], options: { down?: boolean; delayMs?: number } = {}): Promise<{ proxy: Proxy; cloud: Cloud }> {
  const cloud = await createCloud(scope, undefined, options.delayMs ? { delayMs: options.delayMs } : {});
  const commands = options.down ? cloud.settings : cloud.settings.filter((s) => s.startsWith("machine.scale_up_command="));
  const proxy = await startProxy(scope, {
    // The seed's instance rule unless a test picks a mode: its thresholds make a burn decisive.
    settings: [
      ...commands,
      "master.interval=0.2",
      ...(settings.some((x) => x.startsWith("scaling.mode=")) ? [] : ["scaling.mode=instance"]),
      // One burning thread reads 50 % of this two-core machine, and well over 15 % when other
      // tests share the cores; an idle node reads about 1 %.
      "scaling.scale_up_threshold=15",
      "scaling.scale_down_threshold=10",
      "scaling.window=3",
      "machine.launch_timeout=60",
      ...settings,
    ],
  });
  await cloud.attach(proxy);
  return { proxy, cloud };
}

/** Every node name HAProxy answers with over `tries` fresh requests. */
async function servedNames(proxy: Proxy, tries = 12): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < tries; i++) {
    const body = await getThrough(proxy.inst.frontendPort);
    if (body) seen.add(body);
  }
  return seen;
}

test("a node held above the threshold for the window makes the master launch exactly once; the new node registers and HAProxy serves both; no second launch inside the cooldown", async () => {
  // min_nodes = 1 and an empty hosts.d: the master launches the first node itself. That launch
  // starts the 12 s scale-up cooldown too.
  const { proxy, cloud } = await cloudProxy(["scaling.min_nodes=1", "scaling.scale_up_cooldown=12"]);
  await waitFor("cloud-1 live", async () => liveNames(await status(proxy)).includes("cloud-1"), 30_000, 200);
  // A node is live once its hello is accepted; its claim of the launch follows the durable write
  // of its name (state_dir/names.json), a moment later on a busy machine.
  const first = await waitFor(
    "cloud-1's claim of the launch",
    async () => {
      const s = await status(proxy);
      return s.launches[0]?.nodes.length ? s : undefined;
    },
    10_000,
    100,
  );
  expect(first.launches).toHaveLength(1);
  expect(first.launches[0]).toMatchObject({ status: "done", count: 1, nodes: ["cloud-1"] });
  expect(first.launches[0]!.reason).toMatch(/below min_nodes: 0 backends or pending < 1/);
  // The launch's claim is saved before the node's hosts.d entry is written: wait for the entry.
  await waitFor("cloud-1's entry as launched", async () => (await status(proxy)).nodes.find((n) => n.name === "cloud-1")?.source === "launched", 10_000, 100);

  // A real CPU burn on cloud-1 (one busy thread, not one per core: the rest of the suite shares
  // the cores), measured by its agent through pid:.
  await cloud.burn(true, "cloud-1", 1);
  const burnStarted = Date.now();
  await waitFor("cloud-2 live", async () => liveNames(await status(proxy)).includes("cloud-2"), 45_000, 200);
  const launches = await cloud.launches();
  expect(launches.map((l) => l.count)).toEqual([1, 1]);
  // The scale-up waited for a whole window of hot readings, and for the cooldown of the first launch.
  expect(launches[1]!.at - burnStarted).toBeGreaterThanOrEqual(3000);
  const s = await status(proxy);
  expect(Date.parse(s.launches[1]!.decided_at) - Date.parse(s.launches[0]!.decided_at)).toBeGreaterThanOrEqual(12_000);
  const scaleUp = s.events.find((e) => e.kind === "scale_up" && /scale-up: node cloud-1 at [\d.]+ % ≥ 15 % for 3 s/.test(e.message));
  expect(scaleUp, JSON.stringify(s.events, null, 1)).toBeDefined();
  expect(s.launches[1]).toMatchObject({ status: "done", nodes: ["cloud-2"], manual: false });
  expect(s.capacity).toMatchObject({ active: 2, pending: 0, desired: 2 });
  await waitFor(
    "HAProxy to serve both nodes",
    async () => {
      const served = await servedNames(proxy);
      return served.has("cloud-1") && served.has("cloud-2");
    },
    10_000,
    200,
  );

  // Still hot for two more windows: the cooldown holds, and status says so (polled: on a busy
  // machine one reading may dip below the threshold and restart the window for a moment).
  const reasons = new Set<string>();
  const until = Date.now() + 6500;
  while (Date.now() < until) {
    reasons.add((await status(proxy)).last_decision?.reason ?? "");
    await sleep(250);
  }
  expect((await cloud.launches()).length).toBe(2);
  expect(
    [...reasons].some((r) => /in scale-up cooldown \(\d+ s left\)/.test(r)),
    [...reasons].join("\n"),
  ).toBe(true);
});

test("target mode (the default): a hot node makes the master launch the whole deficit in one decision, and the reason names the numbers", async () => {
  // A burning node is well over 10 % of this machine even when other tests share the cores: at
  // target_cpu 5 that asks for at least 3 nodes, capped at max_nodes 3, so the launch is for 2 at
  // once (a step of 1 would need two).
  const { proxy, cloud } = await cloudProxy([
    "scaling.mode=target",
    "scaling.target_cpu=5",
    "scaling.min_nodes=1",
    "scaling.max_nodes=3",
    "scaling.scale_up_cooldown=1",
  ]);
  await waitFor("cloud-1 live", async () => liveNames(await status(proxy)).includes("cloud-1"), 30_000, 200);
  await cloud.burn(true, "cloud-1", 1);
  await waitFor("the scale-up launch", async () => (await cloud.launches()).length >= 2, 45_000, 200);
  expect((await cloud.launches()).map((l) => l.count)).toEqual([1, 2]);
  await waitFor("cloud-2 and cloud-3 live", async () => liveNames(await status(proxy)).length === 3, 45_000, 200);
  const s = await status(proxy);
  expect(s.launches[1]!.reason).toMatch(/^scale-up: desired \d+ = ceil\([\d.]+ % \/ 5 %\)(, capped by max_nodes 3)?; 1 measured; \+2/);
  expect(s.capacity).toMatchObject({ active: 3, pending: 0, desired: 3 });
});

test("with a slow launch and max_nodes = 2, sustained load never launches past the cap while launches are pending", async () => {
  const { proxy, cloud } = await cloudProxy(["scaling.min_nodes=1", "scaling.max_nodes=2", "scaling.cooldown=0"], { delayMs: 5000 });
  await waitFor("cloud-1 live", async () => liveNames(await status(proxy)).includes("cloud-1"), 30_000, 200);
  await cloud.burn(true, "cloud-1", 1);
  // Watch capacity while the second (slow) launch is pending and after: never past max_nodes.
  const seen: MasterStatus[] = [];
  const deadline = Date.now() + 16_000;
  while (Date.now() < deadline) {
    const s = await status(proxy);
    seen.push(s);
    if (liveNames(s).includes("cloud-2") && Date.now() > deadline - 4000) break;
    await sleep(200);
  }
  expect(
    seen.some((s) => s.capacity.pending === 1 && s.launches.some((l) => l.status === "running" || l.status === "pending")),
    "a pending launch was seen",
  ).toBe(true);
  for (const s of seen)
    expect(s.capacity.desired, JSON.stringify({ c: s.capacity, n: s.nodes.map((x) => [x.name, x.state, x.source]), l: s.launches })).toBeLessThanOrEqual(2);
  expect((await cloud.launches()).length).toBe(2);
  const last = await status(proxy);
  expect(liveNames(last)).toEqual(["cloud-1", "cloud-2"]);
  // While hot at the cap the decision says why it launched nothing (a busy machine may let one
  // reading dip under the threshold for a moment, so look over every status seen).
  const reasons = seen.map((x) => x.last_decision?.reason ?? "");
  expect(
    reasons.some((r) => /capped 1 → 0 by max_nodes \(2 of 2 backends or pending\)/.test(r)),
    reasons.join("\n"),
  ).toBe(true);
});

test("pause: a hot node launches nothing; a manual scale-up still works; resume lets the hot node scale up", async () => {
  const { proxy, cloud } = await cloudProxy(["scaling.min_nodes=1", "scaling.cooldown=0", "scaling.max_nodes=4"]);
  await waitFor("cloud-1 live", async () => liveNames(await status(proxy)).includes("cloud-1"), 30_000, 200);
  expect((await proxy.inst.cli("pause")).code).toBe(0);
  await cloud.burn(true, "cloud-1", 1);
  await waitFor("cloud-1 to read hot", async () => ((await status(proxy)).nodes.find((n) => n.name === "cloud-1")?.cpu_now ?? 0) >= 15, 10_000, 200);
  // A paused tick launches nothing however hot (machine.test.ts proves it on a fake clock); here, that the
  // running master's decisions say so.
  await waitFor("a paused decision while hot", async () => (await status(proxy)).last_decision?.reason === "paused");
  expect((await cloud.launches()).length).toBe(1);
  expect((await status(proxy)).last_decision?.reason).toBe("paused");

  const manual = await proxy.inst.cli("scale-up");
  expect(manual.code, manual.stderr).toBe(0);
  await waitFor("cloud-2 live", async () => liveNames(await status(proxy)).includes("cloud-2"), 30_000, 200);
  expect((await cloud.launches()).length).toBe(2);

  await cloud.burn(true, "cloud-1", 1);
  expect((await proxy.inst.cli("resume")).code).toBe(0);
  // With cooldown 0 the hot node keeps launching, one after another: a slow poll may see 4 at once.
  await waitFor(
    "an automatic launch after resume",
    async () => {
      if ((await cloud.launches()).length >= 3) return true;
      // Thrown, so a timeout says what the master saw last.
      const s = await status(proxy);
      throw new Error(
        `last decision "${s.last_decision?.reason}"; cpu ${s.nodes.map((n) => `${n.name}=${n.cpu_now}`).join(" ")}; launches ${s.launches.map((l) => l.status).join(",")}`,
      );
    },
    45_000,
    200,
  );
  const after = (await status(proxy)).launches;
  expect(after.slice(0, 2).map((l) => l.manual)).toEqual([false, true]); // below min_nodes, then the manual one
  expect(after[2]).toMatchObject({ manual: false });
  expect(after[2]!.reason).toMatch(/scale-up: node cloud-1 at [\d.]+ % ≥ 15 % for 3 s/);
});

/** The admin state of `name` on the running HAProxy (`show servers state`: srv_admin_state, 0x08 is drain); undefined when it cannot say. */
const adminState = async (proxy: Proxy, name: string) => (await showServersState(proxy.inst.dir).catch(() => [])).find((r) => r.name === name)?.adminState;

test.each([
  ["through HAProxy's runtime socket", true],
  ["by leaving it out of the config", false],
])(
  "scale-down drains the oldest node %s, terminates it once with its INSTANCE_ID, removes its entry, and no request fails under load",
  async (_how, runtime) => {
    const { proxy, cloud } = await cloudProxy(
      ["scaling.min_nodes=1", "scaling.cooldown=0", "scaling.drain_seconds=2", ...(runtime ? ["haproxy.runtime_socket=admin.sock"] : [])],
      { down: true },
    );
    // Hold automatic decisions while the cluster is built: cloud-1 (below min), then cloud-2.
    await waitFor("cloud-1 live", async () => liveNames(await status(proxy)).includes("cloud-1"), 30_000, 200);
    expect((await proxy.inst.cli("pause")).code).toBe(0);
    expect((await proxy.inst.cli("scale-up")).code).toBe(0);
    await waitFor(
      "cloud-2 live and served",
      async () => liveNames(await status(proxy)).includes("cloud-2") && (await servedNames(proxy, 6)).has("cloud-2"),
      30_000,
      200,
    );
    const victim = (await status(proxy)).nodes.find((n) => n.name === "cloud-1")!;

    // A bounded load loop through HAProxy for the whole scale-down; it records who answered when.
    let done = false;
    const answers: { body: string; at: number }[] = [];
    const load = runLoad({
      port: proxy.inst.frontendPort,
      concurrency: 2,
      maxRequests: 20_000,
      deadlineMs: 40_000,
      gapMs: 5,
      stop: () => done,
      onAnswer: (body, at) => answers.push({ body, at }),
    });
    await sleep(500);
    expect((await proxy.inst.cli("resume")).code).toBe(0);

    let sawDrain = false;
    /** Without the runtime socket the drain holds once the live haproxy.cfg no longer lists cloud-1 (a busy machine may take a while to reload). */
    let leftConfigAt: number | undefined;
    const drained = await waitFor(
      "the scale-down to finish",
      async () => {
        if (runtime && !sawDrain) sawDrain = ((await adminState(proxy, "cloud-1")) ?? 0) & 0x08 ? true : false;
        if (!runtime && leftConfigAt === undefined && !(await configServers(proxy)).includes("cloud-1")) leftConfigAt = Date.now();
        const s = await status(proxy);
        return s.drains.find((d) => d.status === "done") ? s : undefined;
      },
      30_000,
      100,
    );
    await sleep(1000);
    done = true;
    const result = await load;

    expect(result.failed, result.failures.join("\n")).toBe(0);
    expect(result.ok).toBeGreaterThan(200);
    const drain = drained.drains.find((d) => d.status === "done")!;
    expect(drain).toMatchObject({ node: "cloud-1", instance_id: victim.instance_id });
    expect(drain.reason).toMatch(/scale-down: every node < 10 % for 3 s; cloud-1 is the oldest removable node/);
    if (runtime) expect(sawDrain, "cloud-1 was seen in HAProxy's drain state").toBe(true);
    // The terminate ran exactly once, with cloud-1's instance id, after the drain.
    const terms = await cloud.terminations();
    expect(terms).toHaveLength(1);
    expect(terms[0]).toMatchObject({ instanceId: victim.instance_id, name: "cloud-1", found: true });
    const drainEvent = drained.events.find((e) => e.kind === "scale_down")!;
    expect(terms[0]!.at - Date.parse(drainEvent.at)).toBeGreaterThanOrEqual(2000);
    // Nothing went to cloud-1 once its drain had taken hold (a moment for in-flight requests).
    const heldAt = runtime ? Date.parse(drainEvent.at) : leftConfigAt!;
    expect(heldAt, "cloud-1 left the live haproxy.cfg").toBeDefined();
    expect(answers.filter((a) => a.body === "cloud-1" && a.at > heldAt + 500)).toEqual([]);
    expect(await cloud.isRunning("cloud-1")).toBe(false);
    await expect(fs.access(path.join(proxy.inst.dir, "hosts.d", "cloud-1.json"))).rejects.toThrow();
    expect(await configServers(proxy)).toEqual(["cloud-2"]);
    // At min_nodes now: the decision says so, and no further scale-down ran.
    await waitFor("the decision to hold at min_nodes", async () => /at min_nodes \(1\)/.test((await status(proxy)).last_decision?.reason ?? ""), 10_000, 100);
    expect(await cloud.terminations()).toHaveLength(1);
  },
);
