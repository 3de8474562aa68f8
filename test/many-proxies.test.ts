import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { afterEach, expect, test } from "vitest";
import { startNode } from "./helpers/cluster.js";
import { serverLines } from "./helpers/haproxy.js";
import { cleanupScopeAndNetworks, createNetwork, getFrom, startNsProxy, type TestNetwork } from "./helpers/netns.js";
import { Scope, waitFor } from "./helpers/process.js";

const scope = new Scope();
const networks: TestNetwork[] = [];
afterEach(() => cleanupScopeAndNetworks(scope, networks));

test("one agent reports to two proxies in their own network namespaces: both HAProxies serve it, only the first master decides", async () => {
  const net = await createNetwork(2);
  networks.push(net);
  const [nsA, nsB] = net.namespaces as [(typeof net.namespaces)[0], (typeof net.namespaces)[0]];
  const token = randomBytes(24).toString("base64url");
  const servers = [nsA.address, nsB.address];
  const [a, b] = await Promise.all([startNsProxy(scope, nsA, { token, servers }), startNsProxy(scope, nsB, { token, servers })]);

  const node = await startNode(scope, [a, b], { name: "web-m", address: net.hostAddress });
  // One "connected" line per proxy, each with the role that proxy's master announced.
  const connected = await waitFor(
    "the agent to be connected to both proxies",
    () => {
      const lines = node.agent
        .log()
        .split("\n")
        .filter((l) => l.includes("connected to the master"));
      return lines.length >= 2 ? lines : undefined;
    },
    20_000,
    50,
  );
  const roleOf = (address: string) => JSON.parse(connected.find((l) => l.includes(`${address}:22`))!) as { role: string };
  expect(roleOf(nsA.address).role).toBe("decider");
  expect(roleOf(nsB.address).role).toBe("follower");

  const line = `server web-m ${net.hostAddress}:${node.webPort} check`;
  for (const p of [a, b]) {
    await waitFor(
      `${p.inst.haproxyConfig} to hold the node`,
      async () => serverLines(await fs.readFile(p.inst.haproxyConfig, "utf8")).includes(line),
      5_000,
      20,
    );
  }
  for (const [ns, p] of [
    [nsA, a],
    [nsB, b],
  ] as const) {
    await waitFor(`HAProxy in ${ns.name} to serve the node`, async () => (await getFrom(ns.address, p.inst.frontendPort)) === "web-m", 5_000, 20);
  }

  const [statusA, statusB] = await Promise.all([a.status(), b.status()]);
  expect(statusA.role).toBe("decider");
  expect(statusB.role).toBe("follower");
  for (const s of [statusA, statusB]) {
    expect(s.nodes.map((n) => [n.name, n.address, n.port, n.source, n.state])).toEqual([["web-m", net.hostAddress, node.webPort, "agent", "live"]]);
  }
  const reasonA = statusA.role_reason;
  const reasonB = statusB.role_reason;
  expect(reasonA).toContain(nsA.address);
  expect(reasonB).toContain(nsA.address);
});
