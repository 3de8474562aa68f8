/**
 * SPEC "Agent ⇄ master": the agent sends `hello` only after its `health_url` answers 2xx. A real
 * node whose web app fails its health check until a flag file exists is not registered while it
 * fails (measured over several agent intervals), and registers, in hosts.d and HAProxy, once it
 * passes.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { getThrough, startNode, startProxy } from "./helpers/cluster.js";
import { hostsDir, startGatedWebApp } from "./helpers/hostile.js";
import { freePort, Scope, sleep, waitFor } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

test("a node whose health_url answers 503 is not registered during several agent intervals; once it answers 200 it registers and HAProxy serves it within seconds, and a later failure shows as unhealthy", async () => {
  const proxy = await startProxy(scope);
  const address = "127.0.0.4";
  const appPort = await freePort();
  const dir = await scope.tempDir("autoscaler-gated-");
  const flag = path.join(dir, "ready");
  // The agent announces the gated app's port and checks its /health (later --set values win).
  const node = await startNode(scope, [proxy], {
    name: "web-gated",
    address,
    startAgent: false,
    settings: [`agent.port=${appPort}`, `agent.health_url=http://${address}:${appPort}/health`],
  });
  const app = await startGatedWebApp(scope, "web-gated", address, appPort, flag, path.join(dir, "gated.pid"));
  node.agent = node.startAgent();

  await node.agent.waitForLog(/waiting for the health check before saying hello/, 15_000);
  // Waiting is the test here: at interval = 1 s the agent re-checks health about once a second.
  const checksAtStart = app.healthChecks();
  const windowMs = 3500;
  const started = Date.now();
  await sleep(windowMs);
  expect(Date.now() - started).toBeGreaterThanOrEqual(windowMs);
  expect(app.healthChecks() - checksAtStart, "the agent kept re-checking /health").toBeGreaterThanOrEqual(2);
  expect(node.agent.log()).not.toMatch(/hello sent|connected to the master/);
  expect(proxy.master.log()).not.toMatch(/agent registered/);
  expect((await proxy.status()).nodes).toEqual([]);
  expect(await hostsDir(proxy.inst.dir)).toEqual({});
  expect(await getThrough(proxy.inst.frontendPort)).toBeUndefined();

  // Now it passes: it says hello, registers, and HAProxy serves it.
  await fs.writeFile(flag, "");
  const passedAt = Date.now();
  await node.agent.waitForLog(/connected to the master/, 10_000);
  await waitFor("HAProxy to serve web-gated", async () => (await getThrough(proxy.inst.frontendPort)) === "web-gated", 10_000, 20);
  // A health re-check (1 s), the SSH handshake and one debounced reload: seconds, even on a loaded machine.
  expect(Date.now() - passedAt).toBeLessThan(8_000);
  const status = await proxy.status();
  expect(status.nodes.map((n) => [n.name, n.address, n.port, n.source])).toEqual([["web-gated", address, appPort, "agent"]]);
  const entries = await hostsDir(proxy.inst.dir);
  expect(Object.keys(entries)).toEqual(["web-gated.json"]);
  expect(JSON.parse(entries["web-gated.json"]!)).toMatchObject({ name: "web-gated", address, port: appPort, source: "agent" });

  // The agent keeps re-checking: when /health fails again, its samples say so and status shows it.
  const healthyOf = async () => (await proxy.status()).nodes.find((n) => n.name === "web-gated")?.healthy;
  await waitFor("status to show web-gated healthy", async () => (await healthyOf()) === true, 10_000, 200);
  await fs.rm(flag);
  await waitFor("status to show web-gated unhealthy", async () => (await healthyOf()) === false, 10_000, 200);
  await node.agent.waitForLog(/health check fails/, 5_000);
});
