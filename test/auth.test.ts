/**
 * SPEC "Agent ⇄ master": the agent verifies the proxy's host key against known_hosts (an
 * unknown or changed key is refused with the fingerprint and the fix), and the master refuses
 * a `hello` without the right token, logs it without the token, and registers nothing. All
 * with real processes: sshd, HAProxy, `autoscaler master`, `autoscaler agent`.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { startNode, startProxy, type Proxy, type TestNode } from "./helpers/cluster.js";
import { fetchText, hostsDir, jsonLogLines, probeMaster, readAllFiles, sshFingerprint } from "./helpers/hostile.js";
import { Scope, waitFor } from "./helpers/process.js";
import { makeKeyPair } from "./helpers/sshd.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** The agent's log messages that refuse a proxy. */
function refusals(node: TestNode): string[] {
  return jsonLogLines(node.agent.log())
    .map((l) => String(l.msg))
    .filter((m) => m.startsWith("refusing proxy"));
}

/** Wait for at least `n` host-key refusals (so the agent tried, backed off and tried again). */
async function waitForRefusals(node: TestNode, n: number): Promise<string[]> {
  return waitFor(
    `${n} host-key refusals in the agent log (log: ${node.agent.log().slice(-1500)})`,
    () => {
      const r = refusals(node);
      return r.length >= n ? r : undefined;
    },
    20_000,
    50,
  );
}

/** Nothing of `name` reached the master: no hosts.d entry, not in status, no registration logged. */
async function expectNotRegistered(proxy: Proxy, name: string): Promise<void> {
  expect(Object.keys(await hostsDir(proxy.inst.dir))).not.toContain(`${name}.json`);
  expect((await proxy.status()).nodes.map((n) => n.name)).not.toContain(name);
  expect(proxy.master.log()).not.toMatch(new RegExp(`"msg":"agent registered"[^\\n]*"node":"${name}"`));
}

describe("the agent verifies the proxy's host key against known_hosts", () => {
  // One proxy for both cases: neither may register, so they cannot disturb each other.
  const shared = new Scope();
  let proxy: Proxy;
  let realFingerprint: string;
  beforeAll(async () => {
    proxy = await startProxy(shared);
    realFingerprint = sshFingerprint(proxy.sshd.hostKey.publicFile);
    expect(realFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
  afterAll(() => shared.cleanup());

  test("a changed key (known_hosts trusts another key for [127.0.0.1]:port) is refused with the real fingerprint and the line to use; nothing registers", async () => {
    const node = await startNode(scope, [proxy], { name: "web-changed", startAgent: false });
    const impostor = makeKeyPair(node.dir, "other_host_key");
    const knownHosts = path.join(node.dir, "known_hosts");
    const name = `[127.0.0.1]:${proxy.sshd.port}`;
    await fs.writeFile(knownHosts, `${name} ${impostor.publicLine.split(" ").slice(0, 2).join(" ")}\n`);
    expect(sshFingerprint(impostor.publicFile)).not.toBe(realFingerprint);
    const sshdLogBefore = proxy.sshd.log().length;

    node.agent = node.startAgent();
    const msgs = await waitForRefusals(node, 2);
    for (const m of msgs) {
      expect(m).toContain(`the host key of ${name} has CHANGED`);
      expect(m).toContain(realFingerprint);
      expect(m).not.toContain(sshFingerprint(impostor.publicFile));
      expect(m).toContain(`replace line 1 of ${knownHosts} with: ${proxy.sshd.knownHostsLine}`);
    }
    await expectNotRegistered(proxy, "web-changed");
    expect(node.agent.log()).not.toMatch(/connected to the master/);
    // The agent refused before logging in: sshd never accepted the node key.
    expect(proxy.sshd.log().slice(sshdLogBefore)).not.toMatch(/Accepted publickey/);
    expect(node.agent.child.exitCode).toBeNull();
  });

  test("an empty known_hosts refuses the key as not in the file, with the fingerprint and the line to add; nothing registers", async () => {
    const node = await startNode(scope, [proxy], { name: "web-unknown", startAgent: false });
    const knownHosts = path.join(node.dir, "known_hosts");
    await fs.writeFile(knownHosts, "");

    node.agent = node.startAgent();
    const msgs = await waitForRefusals(node, 2);
    for (const m of msgs) {
      expect(m).toContain(`the host key of [127.0.0.1]:${proxy.sshd.port} is not in ${knownHosts}`);
      expect(m).toContain(realFingerprint);
      expect(m).toContain(`add this line to ${knownHosts}: ${proxy.sshd.knownHostsLine}`);
    }
    await expectNotRegistered(proxy, "web-unknown");
    expect(node.agent.log()).not.toMatch(/connected to the master/);
  });
});

test("a hello with a wrong token is refused and registers nothing, from a real agent and over raw TCP; no token appears in any log, output or file", async () => {
  const proxy = await startProxy(scope);
  const wrongAgentToken = `WRONG-${randomBytes(24).toString("base64url")}`;
  const wrongDirectToken = `ALSO-WRONG-${randomBytes(24).toString("base64url")}`;

  // A good node first (the master works), then one whose ini holds a wrong token (a later --set wins).
  const good = await startNode(scope, [proxy], { name: "web-good", address: "127.0.0.2" });
  const bad = await startNode(scope, [proxy], { name: "web-bad", address: "127.0.0.3", settings: [`master.token=${wrongAgentToken}`, "agent.credential="] });
  expect(await fs.readFile(bad.ini, "utf8")).toContain(`token = ${wrongAgentToken}`);
  await good.agent.waitForLog(/connected to the master/, 20_000);

  // (a) The real agent: refused by the master, told why, and it keeps trying.
  await bad.agent.waitForLog(/the master refused this node: token refused/, 20_000);
  await proxy.master.waitForLog(/"msg":"agent connection closed: token refused[^\n]*"reason":"token"[^\n]*"name":"web-bad"/, 10_000);
  await waitFor("a second refusal of web-bad (it retried)", () => (bad.agent.log().match(/token refused/g) ?? []).length >= 2, 20_000, 50);
  expect(bad.agent.log()).not.toMatch(/connected to the master/);
  const metrics = await fetchText(`http://127.0.0.1:${proxy.metricsPort}/metrics`);
  const refusedToken = Number(/^autoscaler_connections_refused_total\{reason="token"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
  expect(refusedToken).toBeGreaterThanOrEqual(1);

  // (b) Straight to the master's loopback port: an error answer, then the master closes the connection.
  const direct = await probeMaster(
    proxy.masterPort,
    JSON.stringify({
      type: "hello",
      version: 1,
      token: wrongDirectToken,
      name: "direct-bad",
      address: "127.0.0.1",
      port: 9,
      agent_version: "x",
      facts: { cores: 1, memory_bytes: 0 },
    }) + "\n",
    { waitForClose: true, timeoutMs: 5000 },
  );
  expect(direct.closedByMaster).toBe(true);
  expect(direct.received).toMatch(/^\{"type":"error","code":"TOKEN","message":"token refused/);
  await proxy.master.waitForLog(new RegExp(`"reason":"token"[^\\n]*"peer":"127\\.0\\.0\\.1:${direct.localPort}"[^\\n]*"name":"direct-bad"`), 5000);

  // Only the good node is registered, anywhere.
  expect(Object.keys(await hostsDir(proxy.inst.dir))).toEqual(["web-good.json"]);
  const status = await proxy.status();
  expect(status.nodes.map((n) => n.name)).toEqual(["web-good"]);
  await expectNotRegistered(proxy, "web-bad");
  await expectNotRegistered(proxy, "direct-bad");

  // Collect everything an operator could read and look for every token in it.
  const texts = new Map<string, Buffer | string>();
  texts.set("master log", proxy.master.log());
  texts.set("good agent log", good.agent.log());
  texts.set("bad agent log", bad.agent.log());
  texts.set("sshd log", proxy.sshd.log());
  for (const args of [["status", "--json"], ["status"], ["hosts", "--json"], ["check-config"]]) {
    const r = await proxy.inst.cli(...args);
    texts.set(`${args.join(" ")} output`, r.stdout + r.stderr);
  }
  texts.set("/status", await fetchText(`http://127.0.0.1:${proxy.metricsPort}/status`));
  texts.set("/metrics", await fetchText(`http://127.0.0.1:${proxy.metricsPort}/metrics`));
  const notIni = (rel: string) => path.basename(rel) === "autoscaler.ini";
  for (const [where, dir] of [
    ["proxy", proxy.inst.dir],
    ["sshd", path.dirname(proxy.sshd.authorizedKeysFile)],
    ["good node", good.dir],
    ["bad node", bad.dir],
  ] as const) {
    for (const [rel, bytes] of await readAllFiles(dir, notIni)) texts.set(`${where}: ${rel}`, bytes);
  }
  expect(texts.size).toBeGreaterThan(15);
  expect(String(texts.get("master log"))).toContain("token refused");
  const leaks: string[] = [];
  for (const [where, content] of texts) {
    const text = Buffer.isBuffer(content) ? content.toString("latin1") : content;
    for (const [which, token] of [
      ["real", proxy.token],
      ["agent's wrong", wrongAgentToken],
      ["direct wrong", wrongDirectToken],
    ] as const) {
      if (text.includes(token)) leaks.push(`${which} token in ${where}`);
    }
  }
  expect(leaks).toEqual([]);
  // The tokens are where they belong, so the search above could have found them.
  expect(await fs.readFile(proxy.inst.ini, "utf8")).toContain(proxy.token);
  expect(await fs.readFile(good.ini, "utf8")).toContain(proxy.token);
});
