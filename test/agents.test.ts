import { afterEach, expect, test } from "vitest";
import { getThrough, startNode, startProxy } from "./helpers/cluster.js";
import { Scope, waitFor } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

test("two agents on their own addresses register through a real sshd and HAProxy serves both within two seconds of hello", async () => {
  const proxy = await startProxy(scope);
  const a = await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.2" });
  const b = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.3" });
  // The agents log JSON lines; "hello sent" carries the moment each said hello.
  const helloTime = async (line: Promise<string>) => Date.parse((JSON.parse(await line) as { time: string }).time);
  const helloAt = Math.max(await helloTime(a.agent.waitForLog(/"hello sent"/, 15_000)), await helloTime(b.agent.waitForLog(/"hello sent"/, 15_000)));
  const seen = new Set<string>();
  await waitFor(
    "HAProxy to serve both nodes",
    async () => {
      const body = await getThrough(proxy.inst.frontendPort);
      if (body) seen.add(body);
      return seen.has("web-a") && seen.has("web-b");
    },
    5_000,
    10,
  );
  expect(Date.now() - helloAt).toBeLessThan(2000);
  const status = await waitFor(
    "fresh CPU samples for both",
    async () => {
      const s = await proxy.status();
      return s.nodes.filter((n) => n.state === "live" && n.cpu_now !== null && (n.last_seen_seconds_ago ?? 99) < 3).length === 2 ? s : undefined;
    },
    10_000,
    200,
  );
  expect(status.nodes.map((n) => [n.name, n.address, n.source])).toEqual([
    ["web-a", "127.0.0.2", "agent"],
    ["web-b", "127.0.0.3", "agent"],
  ]);
  expect(status.role).toBe("decider");
});
