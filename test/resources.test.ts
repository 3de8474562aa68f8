/**
 * `[scaling] mode = resources` with a real proxy (sshd, HAProxy, master) and the fake cloud: each
 * node's web app reports its free slots as JSON (`[agent] capacity_url`), and the master keeps
 * `min_available` slots free across the live nodes. The decision's table is decide.test.ts and
 * machine.test.ts (fake clock); this is the whole path with real agents.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test, vi } from "vitest";
import { createCloud } from "./helpers/cloud.js";
import { startProxy } from "./helpers/cluster.js";
import { Scope, sleep, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());
vi.setConfig({ testTimeout: 90_000 });

test("resources mode: web apps that report 2 free slots with min_available 3 bring a second node; bad answers are missing data (counted, never scaled on); 5 free each gives one back", async () => {
  const cloud = await createCloud(scope, undefined, { appState: true });
  await cloud.setApp('{"slots": 2}');
  const proxy = await startProxy(scope, {
    settings: [
      ...cloud.settings,
      "master.interval=0.2",
      "scaling.mode=resources",
      "scaling.min_available=3",
      "scaling.min_nodes=1",
      "scaling.max_nodes=4",
      "scaling.window=2",
      "scaling.scale_up_cooldown=1",
      "scaling.scale_down_window=3",
      "scaling.drain_seconds=1",
      "machine.launch_timeout=60",
    ],
  });
  await cloud.attach(proxy);

  // min_nodes brings the first node; its 2 free slots are short of 3: ceil(1 / 2) = 1 more.
  const two = await waitFor(
    "a second node launched for the slots",
    async () => {
      const s = await status(proxy);
      return s.launches.length === 2 && s.nodes.filter((n) => n.state === "live").length === 2 ? s : undefined;
    },
    40_000,
  );
  expect(two.launches[1]!.reason).toMatch(/2 free < min_available 3: ceil\(1 \/ 2 per node\)/);
  await waitFor("both nodes' reports in status", async () => (await status(proxy)).nodes.every((n) => n.available_now === 2));
  // 4 free ≥ 3, and without a node 2 < 3: it holds.
  await waitFor("the decision to hold at 2", async () =>
    /desired 2 \(4 free, min_available 3: removing a node would leave less\)/.test((await status(proxy)).last_decision?.reason ?? ""),
  );

  // Answers that are no data: not JSON, then a negative number. Once the last good reports are older than
  // three sample periods (15 s), nothing is known: nothing scales, and the master counts the samples.
  await cloud.setApp("all good");
  await sleep(2500);
  await cloud.setApp('{"slots": -4}');
  const quiet = await waitFor(
    "the decision to say nothing is known",
    async () => {
      const s = await status(proxy);
      return /no node has reported free resource units/.test(s.last_decision?.reason ?? "") ? s : undefined;
    },
    25_000,
  );
  expect(quiet.launches).toHaveLength(2);
  expect(quiet.drains).toEqual([]);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
  expect(Number(/^autoscaler_capacity_missing_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(4);
  const nodeLog = await fs.readFile(path.join(cloud.dir, "nodes", two.nodes[0]!.name, "agent.log"), "utf8");
  expect(nodeLog).toMatch(/capacity_url gave no usable answer.*the answer is not JSON/);

  // 5 free each: without one node 5 ≥ 3, so after scale_down_window one node goes (oldest first).
  await cloud.setApp('{"slots": 5}');
  const down = await waitFor(
    "one node drained and terminated",
    async () => {
      const s = await status(proxy);
      return s.drains.some((d) => d.status === "done") ? s : undefined;
    },
    20_000,
  );
  expect(down.drains).toHaveLength(1);
  expect(down.drains[0]!.reason).toMatch(/10 free; without 1 node\(s\) 5 ≥ min_available 3/);
  await sleep(1500);
  expect((await status(proxy)).launches).toHaveLength(2);
});
