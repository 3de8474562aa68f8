import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, expect, test } from "vitest";
import { getThrough, startNode, startProxy } from "./helpers/cluster.js";
import { freePort, runCli, Scope, waitFor } from "./helpers/process.js";

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

test("an agent with no instance_id asks the metadata service (IMDSv2), again while it fails, and sends its id; one whose service is not there sends none, never its host name, and status says so", async () => {
  // A metadata service that is busy at first, as at boot: two 503s for the token, then IMDSv2 as usual.
  let tokens = 0;
  const imds = scope.trackServer(
    http.createServer((req, res) => {
      if (req.method === "PUT" && req.url === "/latest/api/token") {
        if (++tokens <= 2) return (res.writeHead(503), res.end());
        return res.end("tok");
      }
      if (req.url === "/latest/meta-data/instance-id" && req.headers["x-aws-ec2-metadata-token"] === "tok") return res.end("i-0a1b2c3d4e5f60718");
      res.writeHead(401);
      res.end();
    }),
  );
  await new Promise<void>((r) => imds.listen(0, "127.0.0.1", r));
  const proxy = await startProxy(scope);
  const asked = await startNode(scope, [proxy], {
    name: "web-imds",
    address: "127.0.0.2",
    settings: ["agent.instance_id="],
    env: { AUTOSCALER_METADATA_URL: `http://127.0.0.1:${(imds.address() as AddressInfo).port}` },
  });
  const none = await startNode(scope, [proxy], {
    name: "web-none",
    address: "127.0.0.3",
    settings: ["agent.instance_id="],
    env: { AUTOSCALER_METADATA_URL: `http://127.0.0.1:${await freePort()}` },
  });
  expect(await asked.agent.waitForLog(/the metadata service did not answer \(token: HTTP 503\); asking again/, 15_000)).toBeTruthy();
  expect(await none.agent.waitForLog(/"no instance id: \[agent\] instance_id is empty.*"why":"token: ECONNREFUSED"/, 15_000)).toBeTruthy();
  const s = await waitFor("both nodes live", async () => {
    const st = await proxy.status();
    return st.nodes.filter((n) => n.state === "live").length === 2 ? st : undefined;
  });
  expect(tokens).toBe(3);
  expect(s.nodes.map((n) => [n.name, n.instance_id, n.instance_id_trusted])).toEqual([
    ["web-imds", "i-0a1b2c3d4e5f60718", false],
    ["web-none", null, false],
  ]);
  const text = await runCli(["status", "--config", proxy.inst.ini]);
  expect(text.stdout).toMatch(/^web-none\s.*\snone\s+live/m);
  expect(text.stdout).toMatch(
    /^note: no instance id for web-none: a scale-down runs scale_down_command for such a node with INSTANCE_ID empty \(terminate-instances then fails\); set \[agent\] instance_id/m,
  );
});
