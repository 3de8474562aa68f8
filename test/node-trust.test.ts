/**
 * Node trust (issue "a compromised web node cannot steer the cluster"): each test replays one
 * attack of the review as a node holding one credential would, against a real proxy (sshd,
 * HAProxy, `autoscaler master`) with real agents, and shows what now stops it.
 *
 * - case 2: a node's own credential never speaks for another name, live, silent past
 *   node_timeout, forgotten after forget_after, or after a master restart;
 * - a launch's join credential: new names only, at most the launch's count, its node gets its
 *   own credential in welcome (kept 0600) and the instance id from the launch's own output;
 * - case 3: with the cluster secret (the weaker mode), forged names stop at max_nodes + 2;
 * - case 5: a hello whose unknown key holds a newline, a fake log line and escapes is refused
 *   with a fixed code: neither the log nor `autoscaler status` carries its bytes;
 * - case 6: 4,096 idle connections: the real agents stay connected and a new one registers;
 * - cases 7 and 8: a FIFO and a symlink to a secret in hosts.d, and a hello named `.hidden`.
 */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { nodeCredential } from "@autoscaler/shared";
import { startNode, startProxy, type Proxy } from "./helpers/cluster.js";
import { serverLines } from "./helpers/haproxy.js";
import { forgedHello as hello, hostsDir, probeMaster, refusedByReason } from "./helpers/hostile.js";
import { runCli, Scope, sleep, waitFor } from "./helpers/process.js";
import { registerSecret } from "./helpers/secrets.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** `autoscaler node-credential <name>` on the proxy, as its operator would run it (the one output allowed to show it). */
async function credentialFor(proxy: Proxy, name: string): Promise<string> {
  const expected = nodeCredential(proxy.token, name);
  registerSecret(expected, `${name}'s node credential`);
  const r = await runCli(["node-credential", name, "--config", proxy.inst.ini], { shows: expected });
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toBe(expected + "\n");
  expect(expected).toMatch(new RegExp(`^asc1\\.node\\.${name}\\.[A-Za-z0-9_-]{43}$`));
  return expected;
}

/** Send one hello and return the master's one-line answer. */
async function answer(proxy: Proxy, line: string): Promise<string> {
  const probe = await probeMaster(proxy.masterPort, line, { until: /\n/, timeoutMs: 5000 });
  return probe.received;
}

const liveNodes = async (proxy: Proxy, names: string[]) =>
  waitFor(
    `${names.join(", ")} live`,
    async () => {
      const s = await status(proxy);
      return names.every((n) => s.nodes.some((x) => x.name === n && x.state === "live" && x.connections >= 1)) ? s : undefined;
    },
    20_000,
    100,
  );

describe("case 2: a node's own credential speaks for its name only", () => {
  test("web-1's credential cannot register web-2 (live, silent past node_timeout, forgotten, after a master restart) nor a new name; web-2's entry never changes and web-2 comes back as itself", async () => {
    const proxy = await startProxy(scope, { settings: ["master.shared_token=refuse", "scaling.forget_after=5", "scaling.min_nodes=0"] });
    const [c1, c2] = [await credentialFor(proxy, "web-1"), await credentialFor(proxy, "web-2")];
    await startNode(scope, [proxy], { name: "web-1", address: "127.0.0.2", settings: [`agent.credential=${c1}`] });
    const web2 = await startNode(scope, [proxy], { name: "web-2", address: "127.0.0.3", settings: [`agent.credential=${c2}`] });
    const s = await liveNodes(proxy, ["web-1", "web-2"]);
    expect(s.nodes.filter((n) => n.name.startsWith("web-")).map((n) => [n.name, n.credential])).toEqual([
      ["web-1", "node"],
      ["web-2", "node"],
    ]);
    expect(s.credentials).toEqual({ shared_token: "refuse", note: null });
    await waitFor("web-2 in hosts.d", async () => "web-2.json" in (await hostsDir(proxy.inst.dir)), 5_000, 50);
    const web2Entry = (await hostsDir(proxy.inst.dir))["web-2.json"];

    /** Every way web-1's holder may try; each is refused with a fixed code. */
    const attack = async (when: string) => {
      const tries: [string, string, RegExp][] = [
        ["web-2's name from another address", hello({ token: c1, name: "web-2", address: "127.0.0.66" }), /"code":"CREDENTIAL_NAME"/],
        ["web-2's name from web-2's address", hello({ token: c1, name: "web-2", address: "127.0.0.3" }), /"code":"CREDENTIAL_NAME"/],
        ["a new name", hello({ token: c1, name: "forged-9", address: "127.0.0.67" }), /"code":"CREDENTIAL_NAME"/],
        ["the cluster secret", hello({ token: proxy.token, name: "web-2", address: "127.0.0.66" }), /"code":"SHARED_TOKEN"/],
        ["web-2's credential with one character changed", hello({ token: c2.slice(0, -1) + (c2.endsWith("A") ? "B" : "A"), name: "web-2" }), /"code":"TOKEN"/],
      ];
      for (const [what, line, code] of tries) {
        const got = await answer(proxy, line);
        expect(got, `${when}: ${what}`).toMatch(code);
        expect(got, `${when}: ${what}`).not.toContain("welcome");
      }
    };
    await attack("web-2 live");

    web2.agent.child.kill("SIGTERM");
    await waitFor("web-2 unreachable", async () => (await status(proxy)).nodes.some((n) => n.name === "web-2" && n.state === "unreachable"), 10_000, 100);
    await attack("web-2 silent past node_timeout");
    expect((await hostsDir(proxy.inst.dir))["web-2.json"]).toBe(web2Entry);

    await waitFor("web-2 forgotten", async () => !("web-2.json" in (await hostsDir(proxy.inst.dir))), 15_000, 100);
    await attack("web-2 forgotten");

    proxy.master.child.kill("SIGTERM");
    await new Promise((r) => proxy.master.child.once("exit", r));
    proxy.master = await proxy.startMaster();
    await attack("after a master restart");
    expect(Object.keys(await hostsDir(proxy.inst.dir)).sort()).toEqual(["web-1.json"]);

    // The real web-2 comes back as itself, at its own address.
    web2.startAgent();
    await liveNodes(proxy, ["web-2"]);
    const back = JSON.parse((await waitFor("web-2's entry", async () => (await hostsDir(proxy.inst.dir))["web-2.json"], 5_000, 50))!);
    expect(back).toMatchObject({ name: "web-2", address: "127.0.0.3" });
    // The metric counts since this master's start: the last round's refusals.
    expect(await refusedByReason(proxy.metricsPort)).toMatchObject({ credential_name: 3, shared_token: 1, token: 1 });
    expect(proxy.master.log()).not.toContain(c1);
  }, 90_000);
});

describe("a launch's join credential", () => {
  test("registers new names only, at most COUNT (also after a restart); its node gets its own credential in welcome, kept 0600, reconnects with it, and gets the instance id from run-instances, not its own word", async () => {
    const dir = await scope.tempDir("autoscaler-join-");
    const seen = path.join(dir, "join-credential");
    // One instance, as run-instances prints it; the script keeps the credential it was given.
    const out = { Instances: [{ InstanceId: "i-0000000000000a11", PrivateIpAddress: "127.0.0.5" }] };
    await fs.writeFile(path.join(dir, "launch.sh"), `printf '%s' "$AUTOSCALER_JOIN_CREDENTIAL" > '${seen}'\necho '${JSON.stringify(out)}'\n`);
    const proxy = await startProxy(scope, {
      settings: [
        "master.shared_token=refuse",
        "scaling.min_nodes=0",
        "scaling.mode=instance",
        `machine.scale_up_command=sh '${path.join(dir, "launch.sh")}'`,
        "machine.launch_timeout=120",
      ],
    });
    const c1 = await credentialFor(proxy, "web-1");
    await startNode(scope, [proxy], { name: "web-1", address: "127.0.0.2", settings: [`agent.credential=${c1}`] });
    await liveNodes(proxy, ["web-1"]);
    const up = await proxy.inst.cli("scale-up", "1");
    expect(up.code, up.stderr).toBe(0);
    const join = await waitFor("the launch command to run", async () => (await fs.readFile(seen, "utf8").catch(() => "")) || undefined, 10_000, 50);
    registerSecret(join, "a launch's join credential");
    expect(join).toMatch(/^asc1\.launch\.launch-[a-z0-9-]+\.1\.\d+\.[A-Za-z0-9_-]{43}$/);
    await waitFor("the launch pending", async () => (await status(proxy)).launches[0]?.status === "pending", 10_000, 50);

    // A join credential never takes a name the master knows.
    expect(await answer(proxy, hello({ token: join, name: "web-1", address: "127.0.0.2" }))).toMatch(/"code":"NAME_OWNED"/);

    // The launched node: a real agent with the join credential, reporting another instance id.
    const node = await startNode(scope, [proxy], {
      name: "new-1",
      address: "127.0.0.5",
      settings: [`agent.credential=${join}`, "agent.instance_id=i-0000000000000bad"],
    });
    await liveNodes(proxy, ["new-1"]);
    // Live once its hello is accepted; its claim and hosts.d entry follow the durable write of its name (names.json).
    const s = await waitFor(
      "new-1's claim of the launch",
      async () => {
        const st = await status(proxy);
        return st.launches[0]?.nodes.length && st.nodes.some((n) => n.name === "new-1" && n.instance_id_trusted) ? st : undefined;
      },
      10_000,
      100,
    );
    expect(s.launches[0]).toMatchObject({ status: "done", nodes: ["new-1"] });
    expect(s.nodes.find((n) => n.name === "new-1")).toMatchObject({ credential: "launch", instance_id: "i-0000000000000a11", instance_id_trusted: true });
    // The entry's file is written beside the apply (HAProxy's runtime API), so it may land a moment after status shows it.
    const entry = await waitFor(
      "new-1's hosts.d entry",
      async () => {
        const text = (await hostsDir(proxy.inst.dir))["new-1.json"];
        return text === undefined ? undefined : (JSON.parse(text) as Record<string, unknown>);
      },
      5_000,
      50,
    );
    expect(entry).toMatchObject({ source: "launched", instance_id: "i-0000000000000a11", instance_id_from: "launch" });
    const kept = path.join(node.dir, "state", "node-credential");
    const keptText = await waitFor("the agent to keep its credential", async () => (await fs.readFile(kept, "utf8").catch(() => "")) || undefined, 5_000, 50);
    expect(keptText.trim()).toMatch(/^asc1\.node\.new-1\./);
    registerSecret(keptText.trim(), "new-1's issued credential");
    expect((await fs.stat(kept)).mode & 0o777).toBe(0o600);

    // The count is spent: a second name is refused, here and after a restart.
    expect(await answer(proxy, hello({ token: join, name: "new-2", address: "127.0.0.6" }))).toMatch(/"code":"LAUNCH_FULL"/);
    proxy.master.child.kill("SIGTERM");
    await new Promise((r) => proxy.master.child.once("exit", r));
    proxy.master = await proxy.startMaster();
    expect(await answer(proxy, hello({ token: join, name: "new-3", address: "127.0.0.7" }))).toMatch(/"code":"LAUNCH_FULL"/);

    // new-1 reconnects with the credential it kept (its own, not the join credential).
    await waitFor(
      "new-1 back with its own credential",
      async () => (await status(proxy)).nodes.some((n) => n.name === "new-1" && n.state === "live" && n.credential === "node"),
      20_000,
      100,
    );
    // And its re-hello with another instance id does not move the vouched one.
    expect(JSON.parse((await hostsDir(proxy.inst.dir))["new-1.json"]!)).toMatchObject({ instance_id: "i-0000000000000a11", instance_id_from: "launch" });
  }, 90_000);
});

describe("case 3: fake capacity in the weaker mode (the cluster secret)", () => {
  test("38 forged names stop at max_nodes + pending + 2 agent entries (too_many_nodes), so scale-up is never blocked by more than that; status names the weaker mode", async () => {
    const proxy = await startProxy(scope, { settings: ["scaling.max_nodes=3", "scaling.min_nodes=0"] });
    await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.2" });
    await liveNodes(proxy, ["web-a"]);
    const answers: string[] = [];
    for (let i = 0; i < 38; i++) answers.push(await answer(proxy, hello({ token: proxy.token, name: `forged-${i}`, address: `127.0.3.${i + 1}` })));
    const welcomed = answers.filter((a) => a.includes('"welcome"')).length;
    expect(welcomed).toBe(3 + 2 - 1);
    expect(answers.filter((a) => a.includes('"code":"TOO_MANY_NODES"'))).toHaveLength(38 - welcomed);
    // A welcome to the cluster secret hands out the node's own credential.
    expect(answers.find((a) => a.includes('"welcome"'))).toMatch(/"credential":"asc1\.node\.forged-0\./);
    const s = await status(proxy);
    expect(s.nodes.filter((n) => n.name.startsWith("forged-"))).toHaveLength(welcomed);
    expect(s.credentials.note).toMatch(/weaker mode/);
    const human = await proxy.inst.cli("status");
    expect(human.stdout).toMatch(/^note: agents may register with the cluster secret itself/m);
    // The real node presents its own credential; its id is only its own word.
    expect(human.stdout).toMatch(/web-a\s+127\.0\.0\.2\s+\d+\s+agent\s+node\s+i-web-a \(own word\)/);
    expect(human.stdout).toMatch(/forged-0\s+127\.0\.3\.1\s+8080\s+agent\s+shared\s+i-forged/);
  }, 60_000);
});

describe("case 5: no attacker byte unescaped", () => {
  test("an unknown key holding a newline, a fake 'registered web-1' line and ANSI/OSC escapes is refused with a fixed code; the log, status and its events carry none of it", async () => {
    const proxy = await startProxy(scope);
    const evilKey = 'x\n{"level":"info","msg":"agent registered","node":"web-1"}\u001b[31mINJ3CTED\u001b]0;0wned-title\u0007';
    const line = hello({ token: proxy.token, name: "web-9", [evilKey]: 1 });
    const got = await probeMaster(proxy.masterPort, line, { waitForClose: true, timeoutMs: 5000 });
    expect(got.closedByMaster).toBe(true);
    await proxy.master.waitForLog(/agent connection closed: wrong shape: message: unknown key/);
    const human = await proxy.inst.cli("status");
    expect(human.code, human.stderr).toBe(0);
    for (const text of [proxy.master.log(), human.stdout, JSON.stringify(await status(proxy))]) {
      expect(text).not.toContain("\u001b");
      expect(text).not.toContain("INJ3CTED");
      expect(text).not.toContain("0wned-title");
    }
    expect(human.stdout).toMatch(/refused\s+agent connection refused \(wrong_shape\): wrong shape: message: unknown key/);
  }, 30_000);
});

describe("case 6: lock-out by idle connections", () => {
  test("4,096 idle connections without a hello: both real agents stay connected, a new real agent registers meanwhile, and the idle ones are closed as hello_budget or hello_timeout", async () => {
    const proxy = await startProxy(scope, { settings: ["scaling.node_timeout=30"] });
    const a = await startNode(scope, [proxy], { name: "web-a", address: "127.0.0.2" });
    const b = await startNode(scope, [proxy], { name: "web-b", address: "127.0.0.3" });
    await liveNodes(proxy, ["web-a", "web-b"]);
    const logFrom = { a: a.agent.log().length, b: b.agent.log().length };

    // The idle connections, opened in waves of 256 and held (bounded: all closed within 30 s).
    const sockets: net.Socket[] = [];
    const closedByMaster = { count: 0 };
    try {
      for (let w = 0; w < 16; w++) {
        await Promise.all(
          Array.from(
            { length: 256 },
            () =>
              new Promise<void>((resolve) => {
                const s = net.createConnection({ host: "127.0.0.1", port: proxy.masterPort });
                sockets.push(s);
                const t = setTimeout(resolve, 5000);
                s.on("connect", () => (clearTimeout(t), resolve()));
                s.on("error", () => (clearTimeout(t), resolve()));
                s.on("end", () => closedByMaster.count++);
                s.resume();
              }),
          ),
        );
      }
      // While the master sheds them, a new node starts and registers.
      await startNode(scope, [proxy], { name: "web-c", address: "127.0.0.4" });
      await liveNodes(proxy, ["web-c"]);
      await waitFor("HAProxy to have three servers", async () => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8")).length === 3, 10_000, 50);
      await waitFor("every idle connection closed by the master", async () => closedByMaster.count >= 4096, 30_000, 200);
    } finally {
      for (const s of sockets) s.destroy();
    }
    await sleep(200);
    const s = await status(proxy);
    expect(s.nodes.filter((n) => n.name === "web-a" || n.name === "web-b").map((n) => [n.name, n.state, n.connections])).toEqual([
      ["web-a", "live", 1],
      ["web-b", "live", 1],
    ]);
    expect(a.agent.log().slice(logFrom.a)).not.toMatch(/tunnel closed|cannot reach the master|refused/);
    expect(b.agent.log().slice(logFrom.b)).not.toMatch(/tunnel closed|cannot reach the master|refused/);
    const refused = await refusedByReason(proxy.metricsPort);
    expect((refused.hello_budget ?? 0) + (refused.hello_timeout ?? 0)).toBeGreaterThanOrEqual(4096);
    expect(refused.hello_budget).toBeGreaterThan(3000);
    expect(refused.too_many_connections).toBeUndefined();
  }, 90_000);
});

describe("cases 7 and 8: special files in hosts.d, and dot-names", () => {
  test("a FIFO and a symlink to a secret file in hosts.d are refused by name while the master keeps answering, the secret's bytes appear nowhere, and removing them recovers; a hello named .hidden is refused", async () => {
    const proxy = await startProxy(scope);
    const dir = await scope.tempDir("autoscaler-secret-");
    const secret = path.join(dir, "shadow");
    await fs.writeFile(secret, "root:TOP-SECRET-HASH:19000:0:99999:7:::\n");
    const hostsD = path.join(proxy.inst.dir, "hosts.d");
    execFileSync("mkfifo", [path.join(hostsD, "x.json")]);
    await fs.symlink(secret, path.join(hostsD, "y.json"));
    // The master notices both (its watcher resyncs) and still answers at once, with fixed reasons.
    const refused = await waitFor(
      "both files named in status",
      async () => {
        const s = await status(proxy);
        const details = s.haproxy.last_error?.details ?? [];
        return details.some((d) => d.startsWith("x.json:")) && details.some((d) => d.startsWith("y.json:")) ? s : undefined;
      },
      10_000,
      100,
    );
    expect(refused.haproxy.last_error!.details).toEqual(
      expect.arrayContaining(["x.json: is a FIFO (named pipe); expected a regular file", "y.json: is a symbolic link; expected a regular file"]),
    );
    const human = await proxy.inst.cli("status");
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/status`)).text();
    for (const text of [human.stdout, human.stderr, metrics, proxy.master.log()]) expect(text).not.toContain("TOP-SECRET");
    // A dot-name never registers (hosts.d's listing would skip its file).
    expect(await answer(proxy, hello({ token: proxy.token, name: ".hidden", address: "127.0.0.5" }))).toBe("");
    await proxy.master.waitForLog(/agent connection closed: wrong shape: name: [^"]*not starting with '\.'/);
    // Removing them recovers: the next apply succeeds.
    await fs.rm(path.join(hostsD, "x.json"));
    await fs.rm(path.join(hostsD, "y.json"));
    await waitFor("an apply without errors", async () => (await status(proxy)).haproxy.last_error === null, 10_000, 100);
    expect(Object.keys(await hostsDir(proxy.inst.dir))).toEqual([]);
  }, 30_000);
});
