/**
 * SPEC "Agent ⇄ master" and "Input that must be refused": a line over 64 KiB, bad JSON, a wrong
 * shape or an unknown version closes that connection with a logged reason; the master carries
 * on. With a real proxy and two real agents reporting through a real sshd, the master's loopback
 * port is attacked directly; afterwards the master still runs, both agents are live with fresh
 * samples, HAProxy serves both, and their hosts.d entries are byte-for-byte what they were.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { afterEach, expect, test } from "vitest";
import { getThrough, startNode, startProxy } from "./helpers/cluster.js";
import { serverLines } from "./helpers/haproxy.js";
import { closedByPeer, floodMaster, hasNonBlankLine, hostsDir, jsonLogLines, probeMaster, refusedByReason, type ProbeResult } from "./helpers/hostile.js";
import { Scope, startBackend, waitFor } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** A complete, valid hello (with `token`), with fields overridden. */
function hello(token: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "hello",
    version: 1,
    token,
    name: "hostile-x",
    address: "127.0.0.1",
    port: 8080,
    instance_id: "i-hostile",
    agent_version: "0.0.0-hostile",
    facts: { cores: 1, memory_bytes: 1024 },
    ...fields,
  };
}
const line = (v: unknown) => JSON.stringify(v) + "\n";

test("random bytes, a 10 MB line, wrong shapes, garbage after a valid hello and 500 idle connections: each bad connection is closed with a logged reason and the real nodes never notice", async () => {
  const proxy = await startProxy(scope);
  const a = await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.2" });
  const b = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.3" });
  const hostileBackend = await startBackend(scope, "hostile-1");
  await a.agent.waitForLog(/connected to the master/, 20_000);
  await b.agent.waitForLog(/connected to the master/, 20_000);
  await waitFor(
    "both real nodes live with samples",
    async () => {
      const s = await proxy.status();
      return s.nodes.length === 2 && s.nodes.every((n) => n.state === "live" && n.cpu_now !== null);
    },
    15_000,
    100,
  );
  const before = await hostsDir(proxy.inst.dir);
  expect(Object.keys(before)).toEqual(["web-a.json", "web-b.json"]);
  const agentLogStart = { a: a.agent.log().length, b: b.agent.log().length };
  const port = proxy.masterPort;

  /** Connections the master must have closed, with the reasons allowed for each. */
  const mustBeLogged: { what: string; probe: ProbeResult; reasons: string[] }[] = [];
  const expectClosed = (what: string, probe: ProbeResult, reasons: string[]) => {
    expect(probe.closedByMaster, `${what}: the master should close the connection`).toBe(true);
    mustBeLogged.push({ what, probe, reasons });
  };
  const junkReasons = ["bad_json", "wrong_shape", "no_hello", "line_too_long", "version"];

  // (i) ~200 random inputs, each on its own connection: raw bytes, arbitrary JSON, and objects
  // that look like messages. Each ends with a newline so the master has a line to judge.
  const message = fc
    .record({
      type: fc.constantFrom("hello", "sample", "welcome", "error"),
      rest: fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }),
    })
    .map(({ type, rest }) => Buffer.from(JSON.stringify({ ...rest, type })));
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 2048 }),
    fc.json({ maxDepth: 4 }).map((s) => Buffer.from(s)),
    message,
  );
  let randomRuns = 0;
  await fc.assert(
    fc.asyncProperty(input, async (bytes) => {
      randomRuns++;
      const data = Buffer.concat([Buffer.from(bytes), Buffer.from("\n")]);
      const judged = hasNonBlankLine(data);
      const probe = await probeMaster(port, data, { waitForClose: judged, timeoutMs: 5000 });
      // The master never answers junk with welcome.
      expect(probe.received).not.toContain("welcome");
      if (judged) expectClosed("random input", probe, junkReasons);
    }),
    { numRuns: 200, interruptAfterTimeLimit: 30_000 },
  );
  expect(randomRuns).toBeGreaterThanOrEqual(100);

  // (ii) One 10 MB line: refused once it passes 64 KiB, without waiting for the rest.
  const huge = await probeMaster(port, Buffer.alloc(10 * 1024 * 1024, "a"), { waitForClose: true, timeoutMs: 15_000 });
  expectClosed("a 10 MB line", huge, ["line_too_long"]);

  // (iii) Wrong shapes, one connection each.
  const t = proxy.token;
  const shapes: [string, string, string[]][] = [
    ["a hello missing fields", line({ type: "hello", version: 1, token: t }), ["wrong_shape"]],
    ["a sample before hello", line({ type: "sample", time: Date.now(), cpu: 12.5 }), ["no_hello"]],
    ["a hello whose name has a /", line(hello(t, { name: "web/../../etc" })), ["wrong_shape"]],
    ["a hello with a newline in the address", line(hello(t, { address: "10.0.0.1\nserver evil 6.6.6.6:80 check" })), ["wrong_shape"]],
    ["a hello with a newline in the name", line(hello(t, { name: "web-1\nserver evil" })), ["wrong_shape"]],
    ["a hello with a huge port", line(hello(t, { port: 1e300 })), ["wrong_shape"]],
    ["a hello with a number too big for a double", line(hello(t)).replace('"version":1', '"version":1e999'), ["wrong_shape"]],
    ["a hello with 10^40 cores", line(hello(t)).replace('"cores":1', '"cores":10000000000000000000000000000000000000000'), ["wrong_shape"]],
    [
      "a hello with nested garbage in facts",
      line(hello(t, { facts: { cores: 1, memory_bytes: 1, junk: { a: [[[[{ b: [null, {}, [[]]] }]]]] } } })),
      ["wrong_shape"],
    ],
    ["20,000 levels of nested arrays", "[".repeat(20_000) + "]".repeat(20_000) + "\n", ["wrong_shape", "bad_json"]],
    ["an unterminated 60,000-deep nest", "[{".repeat(30_000) + "\n", ["bad_json"]],
    ["a __proto__ key", '{"__proto__":{"type":"hello","version":1},"type":"sample"}\n', ["wrong_shape"]],
    ["a hello with an extra field", line(hello(t, { admin: true })), ["wrong_shape"]],
    ["a hello of protocol version 2", line(hello(t, { version: 2 })), ["version"]],
    ["null", "null\n", ["wrong_shape"]],
    ["a bare string", '"hello"\n', ["wrong_shape"]],
    ["an array of hellos", line([hello(t)]), ["wrong_shape"]],
    ["a NUL byte", "\u0000\n", ["bad_json"]],
    ["invalid UTF-8", Buffer.from([0xff, 0xfe, 0x7b, 0x0a]).toString("latin1"), ["bad_json"]],
  ];
  for (const [what, text, reasons] of shapes) {
    const probe = await probeMaster(port, Buffer.from(text, what === "invalid UTF-8" ? "latin1" : "utf8"), { waitForClose: true, timeoutMs: 5000 });
    expect(probe.received, what).not.toContain("welcome");
    expectClosed(what, probe, reasons);
  }

  // (iv) A valid hello with the right token, then garbage: it registers (it had the token), then
  // the garbage closes its connection. Then a sample out of range and a second hello, and a
  // hello claiming web-a's name from another address.
  const hostileHello = line(hello(t, { name: "hostile-1", port: hostileBackend.port, instance_id: "i-hostile-1" }));
  const garbageAfter = await probeMaster(port, hostileHello + "}}}garbage{{{\n", { waitForClose: true, timeoutMs: 5000 });
  expect(garbageAfter.received).toMatch(/^\{"type":"welcome"/);
  expectClosed("garbage after a valid hello", garbageAfter, ["bad_json"]);
  const badSample = await probeMaster(port, hostileHello + line({ type: "sample", time: Date.now(), cpu: 1e308 }), { waitForClose: true, timeoutMs: 5000 });
  expect(badSample.received).toMatch(/^\{"type":"welcome"/);
  expectClosed("a sample with cpu 1e308 after hello", badSample, ["wrong_shape"]);
  const twoHellos = await probeMaster(port, hostileHello + hostileHello, { waitForClose: true, timeoutMs: 5000 });
  expectClosed("a second hello on one connection", twoHellos, ["wrong_shape"]);
  const stealName = await probeMaster(port, line(hello(t, { name: "web-a", address: "127.0.0.66", port: 8080 })), { waitForClose: true, timeoutMs: 5000 });
  expect(stealName.received).toMatch(/^\{"type":"error","code":"NAME_TAKEN"/);
  expectClosed("a hello taking web-a's name from another address", stealName, ["name_taken"]);

  // (v) 500 connections at once, half silent and half with half a line; past the budget the
  // master closes the oldest (hello_budget), the rest are closed by us.
  const connected = await floodMaster(port, 500, (i) => (i % 2 === 0 ? "" : '{"type":"hello","token":"'), 30_000);
  expect(connected).toBe(500);

  // The master still answers a fresh connection the same way.
  const after = await probeMaster(port, "not json\n", { waitForClose: true, timeoutMs: 5000 });
  expectClosed("bad JSON after the flood", after, ["bad_json"]);

  // Every connection the master closed has a logged reason, and the metric counted each one.
  const logged = await waitFor(
    "a logged reason for every connection the master closed",
    () => {
      const byPeer = closedByPeer(proxy.master.log());
      return mustBeLogged.every((m) => byPeer.get(m.probe.localPort)?.some((e) => m.reasons.includes(e.reason))) ? byPeer : undefined;
    },
    10_000,
    100,
  ).catch(() => closedByPeer(proxy.master.log()));
  const missing = mustBeLogged
    .filter((m) => !logged.get(m.probe.localPort)?.some((e) => m.reasons.includes(e.reason)))
    .map((m) => `${m.what} (port ${m.probe.localPort}: ${JSON.stringify(logged.get(m.probe.localPort))}, expected ${m.reasons.join("|")})`);
  expect(missing).toEqual([]);
  expect(logged.get(garbageAfter.localPort)).toContainEqual({ reason: "bad_json", node: "hostile-1" });
  const allClosedLines = jsonLogLines(proxy.master.log()).filter((l) => String(l.msg).startsWith("agent connection closed"));
  expect(allClosedLines.length).toBeGreaterThanOrEqual(mustBeLogged.length);
  for (const reason of ["bad_json", "wrong_shape", "line_too_long", "no_hello", "version", "name_taken"]) {
    expect(
      allClosedLines.some((l) => l.reason === reason),
      `a connection closed for ${reason}`,
    ).toBe(true);
  }
  // The 500 held connections pass the budget for connections without a hello (128): the master
  // closes the oldest of them for each newer one, so silent connections cannot crowd out agents.
  expect(allClosedLines.filter((l) => l.reason === "hello_budget").length).toBeGreaterThan(0);
  const expectedReasons = [...junkReasons, "name_taken", "hello_budget"];
  expect(allClosedLines.filter((l) => !expectedReasons.includes(String(l.reason))).map((l) => l.reason)).toEqual([]);
  const refused = await refusedByReason(proxy.metricsPort);
  expect(Object.values(refused).reduce((x, y) => x + y, 0)).toBe(allClosedLines.length);
  expect(proxy.master.log()).not.toMatch(/too many connections|uncaught|unhandled/i);

  // The master runs, both real nodes are live with fresh samples, HAProxy serves both.
  expect(proxy.master.child.exitCode).toBeNull();
  expect(proxy.master.child.signalCode).toBeNull();
  // A sample counts as fresh when it reached the master after the last attack: the status is
  // asked after `asked`, so `asked - last_seen` is no later than the master's own receive time.
  const attacksEndedAt = Date.now();
  const status = await waitFor(
    "both real nodes live with a sample received after the attacks",
    async () => {
      const asked = Date.now();
      const s = await proxy.status();
      const real = s.nodes.filter((n) => n.name === "web-a" || n.name === "web-b");
      return real.length === 2 &&
        real.every((n) => n.state === "live" && n.cpu_now !== null && asked - (n.last_seen_seconds_ago ?? 99) * 1000 - 100 > attacksEndedAt)
        ? s
        : undefined;
    },
    15_000,
    200,
  );
  expect(status.nodes.map((n) => [n.name, n.address, n.source])).toEqual([
    ["hostile-1", "127.0.0.1", "agent"],
    ["web-a", "127.0.0.2", "agent"],
    ["web-b", "127.0.0.3", "agent"],
  ]);
  // hostile-1's connections were all closed by the master; the real nodes each keep their one tunnel.
  const connections = Object.fromEntries(status.nodes.map((n) => [n.name, n.connections]));
  expect(connections).toEqual({ "hostile-1": 0, "web-a": 1, "web-b": 1 });
  const seen = new Set<string>();
  await waitFor(
    "HAProxy to serve web-a and web-b",
    async () => {
      const body = await getThrough(proxy.inst.frontendPort);
      if (body) seen.add(body);
      return seen.has("web-a") && seen.has("web-b");
    },
    15_000,
    20,
  );
  expect(a.agent.log().slice(agentLogStart.a)).not.toMatch(/tunnel closed|cannot reach the master/);
  expect(b.agent.log().slice(agentLogStart.b)).not.toMatch(/tunnel closed|cannot reach the master/);

  // hosts.d: the two real entries byte-for-byte as before, plus exactly hostile-1 (it had the token).
  const afterHosts = await hostsDir(proxy.inst.dir);
  expect(Object.keys(afterHosts)).toEqual(["hostile-1.json", "web-a.json", "web-b.json"]);
  expect(afterHosts["web-a.json"]).toBe(before["web-a.json"]);
  expect(afterHosts["web-b.json"]).toBe(before["web-b.json"]);
  expect(JSON.parse(afterHosts["hostile-1.json"]!)).toMatchObject({
    name: "hostile-1",
    address: "127.0.0.1",
    port: hostileBackend.port,
    source: "agent",
    instance_id: "i-hostile-1",
  });
  const cfg = await fs.readFile(proxy.inst.haproxyConfig, "utf8");
  expect(serverLines(cfg).map((l) => l.split(" ")[1])).toEqual(["hostile-1", "web-a", "web-b"]);
  expect(cfg).not.toMatch(/evil|6\.6\.6\.6/);
  expect(await fs.readdir(path.join(proxy.inst.dir, "hosts.d"))).toHaveLength(3);
});
