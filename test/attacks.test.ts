/**
 * Attacks on a real proxy (sshd, HAProxy, `autoscaler master`) with real agents, beyond what
 * auth.test.ts (wrong token from a real agent and over TCP, no token leak), hostile-input.test.ts
 * (random bytes, a 10 MB line, wrong shapes, 500 idle connections, one NAME_TAKEN) and
 * liveness.test.ts (NAME_TAKEN and NAME_MANUAL from real agents) cover:
 *
 * - forged agents on the master's loopback port (no token, an empty or wrong token, the right
 *   token with the name of another live node or of a hand-added host), one by one and as a flood
 *   of 2,000 connections at once, while two real agents stay registered and HAProxy serves them
 *   under a load loop with no failed request;
 * - config injection through every value that reaches haproxy.cfg or a shell command: hello
 *   fields, hand-written hosts.d files, `run-instances` output, and INSTANCE_ID itself;
 * - an ini readable by group or others: a warning at every start (and reload) naming the file and the fix;
 * - the suite's own secrets check (test/helpers/secrets.ts) catching a leak.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { startDaemon, startNode, startProxy, type Proxy } from "./helpers/cluster.js";
import { serverLines } from "./helpers/haproxy.js";
import { closedByPeer, forgedHello as hello, hostsDir, jsonLogLines, probeMaster, refusedByReason, type ProbeResult } from "./helpers/hostile.js";
import { runLoad } from "./helpers/load.js";
import { runCli, runProcess, Scope, sleep, startBackend, waitFor } from "./helpers/process.js";
import { KNOWN_AWS_SECRET_KEY, registerSecret } from "./helpers/secrets.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** The reasons the master logged for closing connections, by our local port. */
function reasonsByPeer(proxy: Proxy): Map<number, string[]> {
  return new Map([...closedByPeer(proxy.master.log())].map(([port, closes]) => [port, closes.map((c) => c.reason)]));
}

/** Wait until the master has applied and reloaded everything it was asked to (no apply for 1.2 s, past the 800 ms ceiling); its counts then. */
async function appliesSettled(proxy: Proxy): Promise<{ applies: number; reloads: number }> {
  let last = "";
  return waitFor(
    "the master's applies to settle",
    async () => {
      const { applies, reloads } = (await status(proxy)).haproxy;
      const now = JSON.stringify({ applies, reloads });
      if (now === last) return { applies, reloads };
      last = now;
      await sleep(1200);
      return undefined;
    },
    15_000,
    0,
  );
}

/** A hand-added backend: a real HTTP server answering `name`, added with `add-host`. */
async function addManual(proxy: Proxy, name: string): Promise<void> {
  const backend = await startBackend(scope, name);
  const r = await proxy.inst.cli("add-host", "127.0.0.1", String(backend.port), "--name", name);
  expect(r.code, r.stderr).toBe(0);
}

describe("forged agents on the master's port", () => {
  test("no token, an empty or wrong token, the right token with another live node's name or a hand-added host's name, and a flood of 2,000 such connections: none registers, hosts.d and haproxy.cfg stay byte-identical, and the real agents keep their service with no failed request", async () => {
    // node_timeout 30 s: the rules let a token holder take the name of an *unreachable* node, so keep the real ones plainly live.
    const proxy = await startProxy(scope, { settings: ["scaling.node_timeout=30"] });
    await addManual(proxy, "manual-1");
    const a = await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.2" });
    const b = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.3" });
    await waitFor(
      "both real nodes live",
      async () => {
        const s = await status(proxy);
        return ["web-a", "web-b"].every((n) => s.nodes.some((x) => x.name === n && x.state === "live" && x.connections === 1));
      },
      20_000,
      100,
    );
    await waitFor("HAProxy to have three servers", async () => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).length === 3, 5_000, 20);
    const reloadsBefore = await appliesSettled(proxy);
    const hostsBefore = await hostsDir(proxy.inst.dir);
    const cfgBefore = await fs.readFile(proxy.inst.haproxyConfig, "utf8");
    const agentLogFrom = { a: a.agent.log().length, b: b.agent.log().length };
    const t = proxy.token;

    // Traffic through HAProxy for the whole attack: every request must succeed.
    let attacking = true;
    const load = runLoad({ port: proxy.inst.frontendPort, concurrency: 2, maxRequests: 100_000, deadlineMs: 120_000, stop: () => !attacking, gapMs: 2 });

    // (1) One connection each, with the answer the agent would see.
    const single: [string, string, RegExp | undefined, string][] = [
      ["a hello without a token field", hello({}), undefined, "wrong_shape"],
      ["a hello with an empty token", hello({ token: "" }), /^\{"type":"error","code":"TOKEN"/, "token"],
      ["a hello with a wrong token", hello({ token: `wrong-${randomBytes(16).toString("hex")}` }), /^\{"type":"error","code":"TOKEN"/, "token"],
      ["a hello with a token one character off", hello({ token: t.slice(0, -1) + (t.endsWith("A") ? "B" : "A") }), /^\{"type":"error","code":"TOKEN"/, "token"],
      [
        "the right token, web-a's name, another address",
        hello({ token: t, name: "web-a", address: "127.0.0.99" }),
        /^\{"type":"error","code":"NAME_TAKEN"/,
        "name_taken",
      ],
      [
        "the right token, the hand-added host's name, its own address",
        hello({ token: t, name: "manual-1", address: "127.0.0.1" }),
        /^\{"type":"error","code":"NAME_MANUAL"/,
        "name_manual",
      ],
      [
        "the right token, the hand-added host's name, another address",
        hello({ token: t, name: "manual-1", address: "127.0.0.98" }),
        /^\{"type":"error","code":"NAME_MANUAL"/,
        "name_manual",
      ],
    ];
    const probes: { what: string; probe: ProbeResult; reason: string }[] = [];
    for (const [what, line, answer, reason] of single) {
      const probe = await probeMaster(proxy.masterPort, line, { waitForClose: true, timeoutMs: 5000 });
      expect(probe.closedByMaster, what).toBe(true);
      expect(probe.received, what).not.toContain("welcome");
      if (answer) expect(probe.received, what).toMatch(answer);
      probes.push({ what, probe, reason });
    }

    // (2) A flood: 2,000 connections, each forged in one of six ways, opened in eight waves of
    // 250 back to back (each wave as soon as the last is connected, so all 2,000 are open at once
    // within a few seconds) and each waiting (bounded) for the master to close it, the silent
    // ones by the 3 s hello timeout. Waves, because 2,000 SYNs at one instant overflow the
    // listen backlog (Node's default 511): the kernel then holds a silent connection half-open
    // where the master never sees it, and only the client's first byte would complete it.
    const kinds: [string, (i: number) => string][] = [
      ["hello_timeout", () => ""],
      ["wrong_shape", (i) => hello({ name: `flood-${i}` })],
      ["token", (i) => hello({ token: "", name: `flood-${i}` })],
      ["token", (i) => hello({ token: `wrong-${i}-${randomBytes(8).toString("hex")}`, name: `flood-${i}` })],
      ["name_taken", (i) => hello({ token: t, name: i % 2 ? "web-a" : "web-b", address: `127.0.1.${1 + (i % 250)}` })],
      ["name_manual", (i) => hello({ token: t, name: "manual-1", address: `127.0.2.${1 + (i % 250)}` })],
    ];
    const FLOOD = 2000;
    const floodStarted = Date.now();
    const WAVE = 250;
    const pending: Promise<{ i: number; probe: ProbeResult }>[] = [];
    for (let w = 0; w < FLOOD / WAVE; w++) {
      const connected: Promise<void>[] = [];
      for (let i = w * WAVE; i < (w + 1) * WAVE; i++) {
        let up!: () => void;
        connected.push(new Promise<void>((r) => (up = r)));
        pending.push(
          probeMaster(proxy.masterPort, kinds[i % kinds.length]![1](i), { waitForClose: true, timeoutMs: 30_000, onConnect: up }).then((probe) => ({
            i,
            probe,
          })),
        );
      }
      await Promise.race([Promise.all(connected), sleep(10_000)]);
    }
    const openedMs = Date.now() - floodStarted;
    const flood = await Promise.all(pending);
    const floodMs = Date.now() - floodStarted;
    expect(flood.filter((f) => f.probe.received.includes("welcome"))).toEqual([]);
    expect(flood.filter((f) => !f.probe.closedByMaster).map((f) => f.i)).toEqual([]);
    expect(openedMs).toBeLessThan(10_000);
    expect(floodMs).toBeLessThan(30_000);

    // Every forged connection has its logged reason, and the metric counted each. A flood
    // connection may instead be closed as hello_budget: past 128 connections without a hello,
    // the oldest goes (before the master read its line), so silent ones never crowd out agents.
    const reasonOf = (port: number, wanted: string, byPeer: Map<number, string[]>) => byPeer.get(port)?.find((r) => r === wanted || r === "hello_budget");
    const logged = await waitFor(
      "a logged reason for each forged connection",
      () => {
        const byPeer = reasonsByPeer(proxy);
        const singleOk = probes.every((p) => byPeer.get(p.probe.localPort)?.includes(p.reason));
        return singleOk && flood.every((f) => reasonOf(f.probe.localPort, kinds[f.i % kinds.length]![0], byPeer)) ? byPeer : undefined;
      },
      10_000,
      200,
    );
    expect([...logged.values()].flat().length).toBe(single.length + FLOOD);
    const expected: Record<string, number> = {};
    for (const p of probes) expected[p.reason] = (expected[p.reason] ?? 0) + 1;
    for (const f of flood) {
      const reason = reasonOf(f.probe.localPort, kinds[f.i % kinds.length]![0], logged)!;
      expected[reason] = (expected[reason] ?? 0) + 1;
    }
    // Each kind was still seen as itself, most of the time.
    for (const [reason] of kinds) expect(expected[reason], reason).toBeGreaterThan(0);
    expect(await refusedByReason(proxy.metricsPort)).toEqual(expected);
    expect(proxy.master.log()).not.toMatch(/too many connections|uncaught|unhandled/i);
    expect(proxy.master.log()).not.toMatch(/"msg":"agent registered"[^\n]*"node":"(flood-|forged-|manual-1)/);

    // The real agents never noticed: live, fresh samples, one tunnel each, no reconnect.
    const attacksEndedAt = Date.now();
    await waitFor(
      "both real nodes live with a sample after the flood",
      async () => {
        const asked = Date.now();
        const s = await status(proxy);
        const real = s.nodes.filter((n) => n.name === "web-a" || n.name === "web-b");
        return (
          real.length === 2 &&
          real.every((n) => n.state === "live" && n.connections === 1 && asked - (n.last_seen_seconds_ago ?? 99) * 1000 - 100 > attacksEndedAt)
        );
      },
      10_000,
      200,
    );
    expect(a.agent.log().slice(agentLogFrom.a)).not.toMatch(/tunnel closed|cannot reach the master|refused/);
    expect(b.agent.log().slice(agentLogFrom.b)).not.toMatch(/tunnel closed|cannot reach the master|refused/);
    attacking = false;
    const served = await load;
    expect(served.failures).toEqual([]);
    expect(served.failed).toBe(0);
    expect(served.bodies["web-a"]).toBeGreaterThan(0);
    expect(served.bodies["web-b"]).toBeGreaterThan(0);
    expect(served.bodies["manual-1"]).toBeGreaterThan(0);

    // Nothing changed on disk or in HAProxy.
    expect(await hostsDir(proxy.inst.dir)).toEqual(hostsBefore);
    expect(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).toBe(cfgBefore);
    expect((await status(proxy)).haproxy).toMatchObject(reloadsBefore);
    expect((await status(proxy)).nodes.map((n) => [n.name, n.source])).toEqual([
      ["manual-1", "manual"],
      ["web-a", "agent"],
      ["web-b", "agent"],
    ]);
    console.info(
      `flood of ${FLOOD} forged connections: all open after ${openedMs} ms, the last closed by the master after ${floodMs} ms; ${served.ok} requests through HAProxy meanwhile, 0 failed`,
    );
  }, 120_000);
});

describe("config injection", () => {
  test("hello values with newlines, spaces, ;, $(…), backticks, ../, HAProxy keywords or over-long text are refused with a logged reason, never echoed, and nothing reaches hosts.d or haproxy.cfg", async () => {
    const proxy = await startProxy(scope);
    const marker = path.join(proxy.inst.dir, "pwned");
    await addManual(proxy, "manual-1");
    await waitFor("manual-1 in haproxy.cfg", async () => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).length === 1, 5_000, 20);
    const hostsBefore = await hostsDir(proxy.inst.dir);
    const cfgBefore = await fs.readFile(proxy.inst.haproxyConfig, "utf8");
    const t = proxy.token;
    const sh = `$(touch ${marker})`;
    const tick = `\`touch ${marker}\``;
    const hostile: [string, Record<string, unknown>][] = [
      ["name with a newline and a server line", { name: "x\nserver evil 1.2.3.4:80" }],
      ["name with a space", { name: "web 1" }],
      ["name with ;", { name: "web;reboot" }],
      ["name with $(…)", { name: `web${sh}` }],
      ["name with backticks", { name: `web${tick}` }],
      ["name ../", { name: "../../etc/passwd" }],
      ["name ..", { name: ".." }],
      ["name of 64 characters", { name: "w".repeat(64) }],
      ["empty name", { name: "" }],
      ["name with a NUL", { name: "web\u0000x" }],
      ["name with a carriage return", { name: "web\r" }],
      ["address with a newline and a server line", { address: "127.0.0.1\nserver evil 1.2.3.4:80" }],
      ["address with a HAProxy keyword", { address: "127.0.0.1 backup" }],
      ["address with ;", { address: "127.0.0.1;reboot" }],
      ["address $(…)", { address: sh }],
      ["address with backticks", { address: tick }],
      ["address ../", { address: "../../etc" }],
      ["address with a port", { address: "127.0.0.1:80" }],
      ["address of 254 characters", { address: `${"a".repeat(60)}.`.repeat(4) + "aaaaaaaaaa" }],
      ["address with a zone id", { address: "fe80::1%eth0" }],
      ["port as text with a keyword", { port: "80 backup" }],
      ["port 0", { port: 0 }],
      ["port 65536", { port: 65536 }],
      ["port 80.5", { port: 80.5 }],
      ["instance id with $(…)", { instance_id: `i-${sh}` }],
      ["instance id with backticks", { instance_id: `i-${tick}` }],
      ["instance id with ;", { instance_id: "i-1;reboot" }],
      ["instance id with a space", { instance_id: "i-1 2" }],
      ["instance id with a newline", { instance_id: "i-1\nserver evil 1.2.3.4:80" }],
      ["instance id ../", { instance_id: "../../i" }],
      ["instance id of 129 characters", { instance_id: "i".repeat(129) }],
      ["empty instance id", { instance_id: "" }],
      ["agent version of 65 characters", { agent_version: "v".repeat(65) }],
      ["token of 1025 characters", { token: "t".repeat(1025) }],
      ["facts.os of 129 characters", { facts: { cores: 1, memory_bytes: 1, os: "o".repeat(129) } }],
    ];
    const probes: { what: string; probe: ProbeResult }[] = [];
    for (const [what, fields] of hostile) {
      const probe = await probeMaster(proxy.masterPort, hello({ token: t, name: "inject-1", ...fields }), { waitForClose: true, timeoutMs: 5000 });
      expect(probe.closedByMaster, what).toBe(true);
      expect(probe.received, what).toBe("");
      probes.push({ what, probe });
    }
    const byPeer = await waitFor(
      "a logged reason for each",
      () => {
        const m = reasonsByPeer(proxy);
        return probes.every((p) => m.has(p.probe.localPort)) ? m : undefined;
      },
      5_000,
      50,
    );
    expect(probes.filter((p) => byPeer.get(p.probe.localPort)?.[0] !== "wrong_shape").map((p) => `${p.what}: ${byPeer.get(p.probe.localPort)}`)).toEqual([]);
    // The master names the field, never the value: no line of its log carries the payloads.
    const log = proxy.master.log();
    for (const needle of ["evil", "touch", "reboot", "backup", "../", "inject-1", "w".repeat(64), "i".repeat(129)]) expect(log, needle).not.toContain(needle);
    expect(
      jsonLogLines(log)
        .filter((l) => String(l.msg).startsWith("agent connection closed"))
        .map((l) => String(l.msg)),
    ).toContainEqual(expect.stringMatching(/^agent connection closed: wrong shape: name: expected 1-63 characters/));
    await sleep(300);
    expect(await hostsDir(proxy.inst.dir)).toEqual(hostsBefore);
    expect(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).toBe(cfgBefore);
    await expect(fs.access(marker)).rejects.toThrow();
  });

  test("hand-written hosts.d files with a server line in the address, a keyword in the port, $(…) in the instance id, a bad source or ; in the file name are refused by name; HAProxy keeps its config; removing them recovers", async () => {
    const proxy = await startProxy(scope);
    const marker = path.join(proxy.inst.dir, "pwned");
    await addManual(proxy, "manual-1");
    await waitFor("manual-1 in haproxy.cfg", async () => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).length === 1, 5_000, 20);
    const cfgBefore = await fs.readFile(proxy.inst.haproxyConfig, "utf8");
    const files: Record<string, unknown> = {
      "evil-addr.json": { address: "10.0.0.1\n    server evil 6.6.6.6:80 check", port: 80 },
      "evil-port.json": { address: "10.0.0.1", port: "80 backup" },
      "evil-id.json": { address: "10.0.0.1", port: 80, source: "agent", instance_id: `i-1$(touch ${marker})` },
      "evil-source.json": { address: "10.0.0.1", port: 80, source: "root" },
      "web;touch x.json": { address: "10.0.0.1", port: 80 },
    };
    for (const [name, body] of Object.entries(files)) await fs.writeFile(path.join(proxy.inst.dir, "hosts.d", name), JSON.stringify(body));
    const s = await waitFor(
      "status to name every refused file",
      async () => {
        const st = await status(proxy);
        const details = st.haproxy.last_error?.details ?? [];
        return Object.keys(files).every((f) => details.some((d) => d.startsWith(`${f}: `))) ? st : undefined;
      },
      10_000,
      100,
    );
    const details = s.haproxy.last_error!.details;
    expect(details.find((d) => d.startsWith("evil-addr.json"))).toMatch(/host "10\.0\.0\.1\\n {4}server evil 6\.6\.6\.6:80 check" contains white space/);
    expect(details.find((d) => d.startsWith("evil-port.json"))).toMatch(/port "80 backup" is not a port number/);
    expect(details.find((d) => d.startsWith("evil-id.json"))).toMatch(/instance id .* is not valid; expected 1-128 characters/);
    expect(details.find((d) => d.startsWith("evil-source.json"))).toMatch(/source "root" is not valid/);
    expect(details.find((d) => d.startsWith("web;touch x.json"))).toMatch(/name "web;touch x" is not a valid name/);
    expect(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).toBe(cfgBefore);
    expect((await runCli(["hosts", "--config", proxy.inst.ini])).code).toBe(1);

    for (const name of Object.keys(files)) await fs.rm(path.join(proxy.inst.dir, "hosts.d", name));
    await waitFor("the error to clear", async () => (await status(proxy)).haproxy.last_error === null, 10_000, 100);
    expect(serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8"))).toEqual([expect.stringMatching(/^server manual-1 127\.0\.0\.1:\d+ check$/)]);
    expect(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).not.toMatch(/evil|6\.6\.6\.6|backup|touch/);
    await expect(fs.access(marker)).rejects.toThrow();
  });

  test("hostile run-instances output never reaches hosts.d or a command: the node (with the cluster secret) is matched as 'any new node', and its scale-down skips the terminate because its id is only its own word; an INSTANCE_ID full of shell syntax (planted in state.json) reaches the terminate script only as data", async () => {
    const cloud = await scope.tempDir("autoscaler-evil-cloud-");
    // Commands run in the ini's folder: a spliced `touch pwned` would create it there.
    const out = path.join(cloud, "terminated.log");
    const evil = {
      Instances: [
        { InstanceId: "i-0123456789abcdef0$(touch pwned)", PrivateIpAddress: "127.0.0.5\nserver evil 6.6.6.6:80" },
        { InstanceId: "`touch pwned`", PrivateIpAddress: "127.0.0.5; touch pwned" },
        { InstanceId: "i-1; reboot", PrivateIpAddress: "127.0.0.5 backup" },
        { InstanceId: "i-0123456789abcdef1\nserver evil 6.6.6.6:80", PrivateIpAddress: "../../etc" },
        { InstanceId: `i-${"a".repeat(200)}`, PrivateIpAddress: "999.0.0.1" },
      ],
    };
    await fs.writeFile(path.join(cloud, "launch.json"), JSON.stringify(evil, null, 2));
    await fs.writeFile(path.join(cloud, "launch.sh"), `cat '${cloud}/launch.json'\n`);
    // Each run appends INSTANCE_ID, NODE_NAME and NODE_ADDRESS as they arrived, one a line, then a separator.
    await fs.writeFile(path.join(cloud, "terminate.sh"), `printf '%s\\n' "$INSTANCE_ID" "$NODE_NAME" "$NODE_ADDRESS" -- >> '${out}'\n`);
    const proxy = await startProxy(scope, {
      settings: [
        `machine.scale_up_command=sh '${cloud}/launch.sh'`,
        `machine.scale_down_command=sh '${cloud}/terminate.sh'`,
        "machine.launch_timeout=300",
        "scaling.drain_seconds=0",
        "master.interval=0.2",
      ],
    });
    const marker = path.join(proxy.inst.dir, "pwned");

    const up = await proxy.inst.cli("scale-up", "1");
    expect(up.code, up.stderr).toBe(0);
    const launched = await waitFor(
      "the launch to be pending",
      async () => {
        const s = await status(proxy);
        return s.launches[0]?.status === "pending" ? s : undefined;
      },
      10_000,
      50,
    );
    // Every hostile id and address was dropped: the launch waits for "any new node".
    expect(launched.launches[0]!.instances).toEqual([]);
    expect(proxy.master.log()).toMatch(/launch command for 1 node\(s\) succeeded in \d+ ms \(no run-instances JSON: the next new node\(s\) will be matched\)/);
    // With the cluster secret (no credential of its own): only such a node may stand in for "any new node".
    const node = await startNode(scope, [proxy], { name: "web-l", address: "127.0.0.5", settings: ["agent.credential="] });
    await node.agent.waitForLog(/connected to the master/, 20_000);
    const registered = await waitFor(
      "the launch to be done",
      async () => {
        const s = await status(proxy);
        return s.launches[0]?.status === "done" ? s : undefined;
      },
      10_000,
      50,
    );
    expect(registered.launches[0]!.nodes).toEqual(["web-l"]);
    const entry = JSON.parse((await hostsDir(proxy.inst.dir))["web-l.json"]!);
    expect(entry).toMatchObject({ name: "web-l", address: "127.0.0.5", source: "launched", instance_id: "i-web-l" });
    const stateText = await fs.readFile(path.join(proxy.inst.dir, "state", "state.json"), "utf8");
    for (const text of [JSON.stringify(await hostsDir(proxy.inst.dir)), stateText, await fs.readFile(proxy.inst.haproxyConfig, "utf8")]) {
      expect(text).not.toMatch(/touch|reboot|evil|6\.6\.6\.6|backup|aaaaaaaaaa/);
    }

    // The node's instance id is only its own word (the launch printed none it could match), so
    // the scale-down drains and removes it but never runs the terminate command with that id.
    expect(entry.instance_id_from).toBeUndefined();
    const down = await proxy.inst.cli("scale-down", "1");
    expect(down.code, down.stderr).toBe(0);
    await waitFor("web-l out of hosts.d", async () => !("web-l.json" in (await hostsDir(proxy.inst.dir))), 10_000, 50);
    await proxy.master.waitForLog(
      /web-l is out of service and removed, but not terminated[^\n]*only the node's own word[^\n]*autoscaler trust web-l[^\n]*"event":"terminate_skipped"/,
      5_000,
    );
    expect(await fs.readFile(out, "utf8").catch(() => "")).toBe("");

    // No route from outside gives an instance id shell syntax (hello, hosts.d and run-instances
    // all refuse it, above), so plant one in the master's own state.json: a scale-down left
    // draining whose instance id and address are shell code that would run if they were spliced.
    proxy.master.child.kill("SIGTERM");
    await new Promise((r) => proxy.master.child.once("exit", r));
    const stateFile = path.join(proxy.inst.dir, "state", "state.json");
    const state = JSON.parse(await fs.readFile(stateFile, "utf8")) as { drains: unknown[] };
    const hostileId = "$(touch pwned) `touch pwned`; touch pwned | touch pwned && touch pwned";
    const hostileAddress = "10.0.0.9; touch pwned";
    state.drains.push({
      id: "drain-planted-1",
      node: "ghost-1",
      instanceId: hostileId,
      address: hostileAddress,
      decidedAt: Date.now() - 1000,
      drainUntil: Date.now() - 1000,
      status: "draining",
      reason: "planted by the test",
      manual: true,
    });
    await fs.writeFile(stateFile, JSON.stringify(state, null, 2), { mode: 0o600 });
    proxy.master = await proxy.startMaster();
    await waitFor("the planted terminate to run", async () => (await fs.readFile(out, "utf8").catch(() => "")).includes("--"), 10_000, 50);
    expect(await fs.readFile(out, "utf8")).toBe(`${hostileId}\nghost-1\n${hostileAddress}\n--\n`);
    await expect(fs.access(marker)).rejects.toThrow();
    // The script has written its lines; the master marks the drain done once the script exits.
    const planted = await waitFor(
      "the planted drain to be done",
      async () => (await status(proxy)).drains.find((d) => d.node === "ghost-1" && d.status === "done"),
      10_000,
      50,
    );
    expect(planted).toMatchObject({ status: "done", instance_id: hostileId });
  });
});

describe("an ini readable by group or others", () => {
  const warning = (file: string, mode: string) =>
    `warning: ${file}: is readable by group or others (mode ${mode}) and may hold credentials; fix: chmod 600 ${file}`;

  test("autoscaler master warns at every start and every reload, naming the file and the fix; at 0600 it does not", async () => {
    const proxy = await startProxy(scope);
    const restart = async () => {
      proxy.master.child.kill("SIGTERM");
      await new Promise((r) => proxy.master.child.once("exit", r));
      proxy.master = await proxy.startMaster();
      return proxy.master.log();
    };
    expect(proxy.master.log()).not.toContain("readable by group or others");

    await fs.chmod(proxy.inst.ini, 0o644);
    expect(await restart()).toContain(warning(proxy.inst.ini, "0644"));
    // A reload reads the file again, so it warns again (as a log line).
    process.kill(proxy.master.child.pid!, "SIGHUP");
    const reloadWarning = JSON.parse(await proxy.master.waitForLog(/"msg":"[^"]*is readable by group or others/)) as { level: string; msg: string };
    expect(reloadWarning).toMatchObject({
      level: "warn",
      msg: `${proxy.inst.ini}: is readable by group or others (mode 0644) and may hold credentials; fix: chmod 600 ${proxy.inst.ini}`,
    });
    await proxy.master.waitForLog(/"msg":"config reloaded"/);
    expect(await restart()).toContain(warning(proxy.inst.ini, "0644"));
    await fs.chmod(proxy.inst.ini, 0o640);
    expect(await restart()).toContain(warning(proxy.inst.ini, "0640"));
    await fs.chmod(proxy.inst.ini, 0o600);
    expect(await restart()).not.toContain("readable by group or others");
  });

  test("autoscaler agent warns at every start, naming the file and the fix; at 0600 it does not", async () => {
    const proxy = await startProxy(scope);
    const node = await startNode(scope, [proxy], { name: "web-perm", address: "127.0.0.2", startAgent: false });
    await fs.chmod(node.ini, 0o644);
    for (let start = 0; start < 2; start++) {
      const agent = node.startAgent();
      await agent.waitForLog(/readable by group or others/);
      expect(agent.log()).toContain(warning(node.ini, "0644"));
      agent.child.kill("SIGTERM");
      await new Promise((r) => agent.child.once("exit", r));
    }
    await fs.chmod(node.ini, 0o600);
    const agent = node.startAgent();
    await agent.waitForLog(/connected to the master/, 20_000);
    expect(agent.log()).not.toContain("readable by group or others");
  });
});

describe("the suite's secrets check (test/helpers/secrets.ts)", () => {
  test("fails a cleanup when an output shows a known secret or a registered token, naming where and masking the value; a scope may opt out", async () => {
    const own = new Scope();
    await runProcess("/bin/echo", [`the key is ${KNOWN_AWS_SECRET_KEY}`]);
    const leak = await own.cleanup().then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(leak).toMatch(/the known AWS secret key appears in the output of echo the key is <the known AWS secret key>/);
    expect(leak).not.toContain(KNOWN_AWS_SECRET_KEY);

    const token = `tok-${randomBytes(16).toString("hex")}`;
    registerSecret(token, "a test's token");
    const daemonScope = new Scope();
    const d = startDaemon(daemonScope, ["status", "--config", `/nonexistent/${token}/autoscaler.ini`]);
    await new Promise((r) => d.child.once("exit", r));
    const daemonLeak = await daemonScope.cleanup().then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(daemonLeak).toMatch(/a test's token appears in the log of autoscaler status --config/);

    const optedOut = new Scope();
    optedOut.allowSecretsInOutput();
    await runProcess("/bin/echo", [KNOWN_AWS_SECRET_KEY]);
    await expect(optedOut.cleanup()).resolves.toBeUndefined();
  });
});

describe("a sample flood from one node", () => {
  test("100,000 samples in one burst are counted and dropped past one per 250 ms: the node's readings stay bounded and the master keeps deciding every tick", async () => {
    const proxy = await startProxy(scope, { settings: ["master.interval=0.2", "scaling.min_nodes=0"] });
    const decisionAt = async () => Date.parse((await status(proxy)).last_decision?.at ?? "0");
    await waitFor("a first decision", async () => (await decisionAt()) > 0, 10_000, 50);
    const samples = Array.from({ length: 100_000 }, (_, i) => JSON.stringify({ type: "sample", time: i, cpu: 99 }) + "\n").join("");
    const flooding = probeMaster(proxy.masterPort, hello({ name: "flooder", token: proxy.token }) + samples, { timeoutMs: 10_000, until: /never/ });
    // While the lines are handled, decisions go on: each status shows a newer one.
    const seen = new Set<number>();
    const until = Date.now() + 4000;
    while (Date.now() < until) {
      seen.add(await decisionAt());
      await sleep(300);
    }
    await flooding;
    expect(seen.size, "decisions made while the flood was handled").toBeGreaterThanOrEqual(5);
    const counts = async () => {
      const text = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
      const metric = (name: string) => Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? NaN);
      return { kept: metric("autoscaler_samples_received_total"), dropped: metric("autoscaler_samples_dropped_total") };
    };
    const { kept, dropped } = await waitFor(
      "every line handled",
      async () => {
        const c = await counts();
        return c.kept + c.dropped === 100_000 ? c : undefined;
      },
      20_000,
      200,
    );
    expect(kept).toBeLessThan(100);
    expect(dropped).toBeGreaterThan(99_900);
    const node = (await status(proxy)).nodes.find((n) => n.name === "flooder");
    expect(node?.samples_in_window ?? 0).toBeLessThanOrEqual(60_000 / 250 + 1);
  });
});

describe("addresses a node may register", () => {
  test("with the default node_networks, hellos for the metadata service, the proxy's loopback ports, the unspecified address and a DNS name are refused (reason address): nothing in hosts.d or haproxy.cfg", async () => {
    // An empty node_networks: the default rule that a real installation has.
    const proxy = await startProxy(scope, { settings: ["master.node_networks="] });
    const hostsBefore = await hostsDir(proxy.inst.dir);
    const cfgBefore = await fs.readFile(proxy.inst.haproxyConfig, "utf8");
    const forged: [string, number][] = [
      ["169.254.169.254", 80],
      ["127.0.0.1", proxy.metricsPort],
      ["127.0.0.1", 22],
      ["0.0.0.0", 6379],
      ["metadata.internal", 80],
    ];
    for (const [i, [address, port]] of forged.entries()) {
      const probe = await probeMaster(proxy.masterPort, hello({ name: `forged-${i}`, address, port, token: proxy.token }), {
        waitForClose: true,
        timeoutMs: 5000,
      });
      expect(probe.closedByMaster, address).toBe(true);
      expect(probe.received, address).toMatch(/^\{"type":"error","code":"ADDRESS"/);
      expect(probe.received, "the refusal does not echo the address").not.toContain(address);
    }
    expect((await refusedByReason(proxy.metricsPort)).address).toBe(forged.length);
    expect(await hostsDir(proxy.inst.dir)).toEqual(hostsBefore);
    expect(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).toBe(cfgBefore);
  });

  test("node_ports: a port outside the list is refused", async () => {
    const proxy = await startProxy(scope, { settings: ["master.node_ports=80,8080"] });
    const probe = await probeMaster(proxy.masterPort, hello({ name: "forged-port", address: "127.0.0.9", port: 22, token: proxy.token }), {
      waitForClose: true,
    });
    expect(probe.received).toMatch(/"code":"ADDRESS".*node_ports/);
    expect((await refusedByReason(proxy.metricsPort)).address).toBe(1);
  });
});
