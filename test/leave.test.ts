/**
 * Nodes that ask to leave, with a real proxy (sshd, HAProxy, master): `autoscaler leave` on a
 * real node (the cloud's web app plus a real agent, through its leave socket and its tunnel), the
 * agent's `leave_url` (only a JSON true is a leave), and the trust boundary: a node, even with the
 * cluster secret, cannot make another node leave.
 */
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, expect, test, vi } from "vitest";
import { nodeCredential } from "@autoscaler/shared";
import { createCloud } from "./helpers/cloud.js";
import { startProxy } from "./helpers/cluster.js";
import { runCli, Scope, sleep, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());
vi.setConfig({ testTimeout: 90_000 });

test("autoscaler leave on a node, then a leave_url that says true: each node is drained, terminated once and replaced up to min_nodes; a failing or non-true leave_url is no leave", async () => {
  const cloud = await createCloud(scope, undefined, { appState: true });
  await cloud.setApp('{"leave": false}');
  const proxy = await startProxy(scope, {
    settings: [...cloud.settings, "master.interval=0.2", "scaling.min_nodes=2", "scaling.drain_seconds=1", "machine.launch_timeout=60"],
  });
  await cloud.attach(proxy);
  await waitFor("two live nodes", async () => (await status(proxy)).nodes.filter((n) => n.state === "live").length === 2, 30_000);
  const started = (await cloud.nodes()).filter((n) => n.started);
  expect(started).toHaveLength(2);
  const [a, b] = [started[0]!, started[1]!];

  // Not a leave: an answer that is not JSON, a 404, a "true" string.
  await cloud.setApp("not json", a.name);
  await cloud.setApp('{"leave": "true"}', b.name);
  await sleep(3000); // three agent intervals
  await cloud.setApp(undefined, a.name);
  await sleep(2000);
  expect((await status(proxy)).drains).toEqual([]);

  // autoscaler leave on node a, with that node's own ini: through its agent's socket and tunnel.
  const leave = await runCli(["leave", "--config", path.join(cloud.dir, "nodes", a.name, "autoscaler.ini")]);
  expect(leave.code, leave.stderr).toBe(0);
  expect(leave.stdout).toMatch(/asked 127\.0\.0\.1:\d+ to drain and terminate this node/);
  expect(leave.stdout).toContain(`this node (${a.name})`);
  const afterA = await waitFor(
    `${a.name} terminated and a replacement live`,
    async () => {
      const s = await status(proxy);
      const live = s.nodes.filter((n) => n.state === "live").map((n) => n.name);
      return s.drains.some((d) => d.node === a.name && d.status === "done") && live.length === 2 && !live.includes(a.name) ? s : undefined;
    },
    30_000,
  );
  expect(afterA.drains.find((d) => d.node === a.name)).toMatchObject({ reason: `${a.name} asked to leave`, manual: false });
  expect(afterA.events.some((e) => e.kind === "leave" && e.message.includes(a.name))).toBe(true);

  // leave_url says true for node b.
  await cloud.setApp('{"leave": true}', b.name);
  await waitFor(
    `${b.name} terminated and a replacement live`,
    async () => {
      const s = await status(proxy);
      const live = s.nodes.filter((n) => n.state === "live").map((n) => n.name);
      return s.drains.some((d) => d.node === b.name && d.status === "done") && live.length === 2 && !live.includes(b.name);
    },
    30_000,
  );
  const terminated = (await cloud.terminations()).filter((t) => t.found).map((t) => t.instanceId);
  expect(terminated).toEqual([a.instanceId, b.instanceId]);
  expect((await cloud.launches()).map((l) => l.count)).toEqual([2, 1, 1]);
});

/** One agent connection straight to the master's port (as the tunnel delivers it): hello, the answer, then lines. */
async function connect(port: number, hello: Record<string, unknown>) {
  const socket = net.createConnection({ host: "127.0.0.1", port });
  let received = "";
  let closed = false;
  socket.on("data", (b: Buffer) => (received += b.toString()));
  socket.on("close", () => (closed = true));
  socket.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.write(JSON.stringify({ type: "hello", version: 1, agent_version: "test", facts: { cores: 1, memory_bytes: 1024 }, ...hello }) + "\n");
  const answer = await waitFor("the master's answer", () => (received.includes("\n") ? received : undefined), 5000);
  return {
    answer: JSON.parse(answer.split("\n")[0]!) as { type: string; code?: string },
    send: (line: Record<string, unknown>) => socket.write(JSON.stringify(line) + "\n"),
    closed: () => closed,
    close: () => socket.destroy(),
  };
}

test("a node cannot make another node leave, even with the cluster secret: the leave names no one, a connection with the secret is refused, another name's credential is refused; its own leave takes only itself", async () => {
  const dir = await scope.tempDir("autoscaler-leave-");
  const log = path.join(dir, "terminated.log");
  await fs.writeFile(path.join(dir, "down.sh"), `#!/bin/sh\necho "$NODE_NAME" >> '${log}'\n`);
  const proxy = await startProxy(scope, {
    settings: [`machine.scale_down_command=sh '${path.join(dir, "down.sh")}'`, "master.interval=0.2", "scaling.drain_seconds=0"],
  });
  const victim = await connect(proxy.masterPort, { name: "victim", address: "127.0.0.21", port: 8081, token: nodeCredential(proxy.token, "victim") });
  const attacker = await connect(proxy.masterPort, {
    name: "attacker",
    address: "127.0.0.22",
    port: 8082,
    token: nodeCredential(proxy.token, "attacker"),
  });
  expect([victim.answer.type, attacker.answer.type]).toEqual(["welcome", "welcome"]);
  await waitFor("both in hosts.d", async () => (await status(proxy)).nodes.filter((n) => n.source === "agent").length === 2);

  // 1. A leave that names another node is not a message the master takes: that connection closes.
  attacker.send({ type: "leave", name: "victim" });
  await waitFor("the attacker's connection to close", () => attacker.closed());
  // 2. The cluster secret lets a connection speak as "victim" (the weaker mode), but its leave is refused.
  const withSecret = await connect(proxy.masterPort, { name: "victim", address: "127.0.0.21", port: 8081, token: proxy.token });
  expect(withSecret.answer.type).toBe("welcome");
  withSecret.send({ type: "leave" });
  await waitFor("the refusal", async () => (await status(proxy)).events.some((e) => e.kind === "leave_refused"));
  withSecret.close();
  // 3. The attacker's own credential does not speak for "victim".
  const borrowed = await connect(proxy.masterPort, { name: "victim", address: "127.0.0.21", port: 8081, token: nodeCredential(proxy.token, "attacker") });
  expect(borrowed.answer).toMatchObject({ type: "error", code: "CREDENTIAL_NAME" });
  await sleep(1000);
  expect((await status(proxy)).drains).toEqual([]);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^autoscaler_leaves_refused_total 1$/m);

  // 4. The attacker's leave on its own connection takes the attacker, and only it.
  const own = await connect(proxy.masterPort, { name: "attacker", address: "127.0.0.22", port: 8082, token: nodeCredential(proxy.token, "attacker") });
  own.send({ type: "leave" });
  await waitFor("the attacker's terminate", async () => (await fs.readFile(log, "utf8").catch(() => "")) === "attacker\n", 10_000);
  const s = await waitFor("its scale-down to be done and its entry gone", async () => {
    const st = await status(proxy);
    return st.drains.every((d) => d.status === "done") && st.nodes.length === 1 ? st : undefined;
  });
  expect(s.drains.map((d) => [d.node, d.status])).toEqual([["attacker", "done"]]);
  expect(await fs.readFile(log, "utf8")).toBe("attacker\n");
  expect(s.nodes.map((n) => n.name)).toEqual(["victim"]);
  victim.close();
  own.close();
});
