/**
 * SIGHUP: the master reads its ini again. A good ini applies live ([scaling], [machine], [aws],
 * most of [haproxy]: a new server_line is rendered, checked and reloaded into the real HAProxy);
 * keys only a restart can change ([master] listen, token, …) are named and keep their running
 * value; a bad ini is refused with one line per problem and the running config stays, with
 * nothing written. A real proxy (sshd, HAProxy, `autoscaler master`), a real HTTP backend, and a
 * launch script that logs each run.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { setIniValue } from "@autoscaler/shared";
import { startProxy, type Proxy } from "./helpers/cluster.js";
import { canConnect, serverLines } from "./helpers/haproxy.js";
import { forgedHello, hostsDir, jsonLogLines, probeMaster } from "./helpers/hostile.js";
import { getOnce } from "./helpers/load.js";
import { freePort, Scope, sleep, startBackend, waitFor } from "./helpers/process.js";
import { KNOWN_AWS_SECRET_KEY, registerSecret } from "./helpers/secrets.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** Send one command to HAProxy's admin socket (the template's `stats socket`) and return the answer. */
function adminCli(proxy: Proxy, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = "";
    const s = net.createConnection({ path: path.join(proxy.inst.dir, "admin.sock") });
    s.setTimeout(3000, () => s.destroy(new Error(`no answer to ${command}`)));
    s.on("connect", () => s.end(command + "\n"));
    s.on("data", (b: Buffer) => (answer += b.toString()));
    s.on("error", reject);
    s.on("close", (hadError) => !hadError && resolve(answer.trim()));
  });
}

/** Edit the ini in place (its mode kept): `section.key` → value. */
async function editIni(proxy: Proxy, edits: [string, string][]): Promise<void> {
  let text = await fs.readFile(proxy.inst.ini, "utf8");
  for (const [name, value] of edits) {
    const [section, key] = name.split(".") as [string, string];
    text = setIniValue(text, section, key, value);
  }
  await fs.writeFile(proxy.inst.ini, text);
}

/** Send SIGHUP to the master and wait for the log line that ends this reload (the n-th of its kind). */
async function hup(proxy: Proxy, ends: RegExp): Promise<Record<string, unknown>> {
  const before = jsonLogLines(proxy.master.log()).filter((l) => ends.test(String(l.msg))).length;
  process.kill(proxy.master.child.pid!, "SIGHUP");
  return waitFor(
    `the master's log to end the reload with ${ends} (log: ${proxy.master.log().slice(-1500)})`,
    () => jsonLogLines(proxy.master.log()).filter((l) => ends.test(String(l.msg)))[before],
    10_000,
    20,
  );
}

const hello = (token: string, name: string, port: number) => forgedHello({ token, name, port, instance_id: `i-${name}` });

test("SIGHUP applies a new server_line and max_nodes live, refuses a bad ini with every problem and keeps running unchanged, and names [master] keys that need a restart", async () => {
  const cloud = await scope.tempDir("autoscaler-hup-launch-");
  await fs.writeFile(path.join(cloud, "launch.sh"), `echo "COUNT=$COUNT" >> "${cloud}/runs.log"\n`);
  const runs = async () => (await fs.readFile(path.join(cloud, "runs.log"), "utf8").catch(() => "")).split("\n").filter(Boolean);
  const proxy = await startProxy(scope, {
    settings: [`machine.scale_up_command=sh '${cloud}/launch.sh'`, "machine.launch_timeout=300", "scaling.max_nodes=10"],
  });
  const backend = await startBackend(scope, "web-1");
  const add = await proxy.inst.cli("add-host", "127.0.0.1", String(backend.port), "--name", "web-1");
  expect(add.code, add.stderr).toBe(0);
  const oldLine = `server web-1 127.0.0.1:${backend.port} check`;
  await waitFor("web-1 in haproxy.cfg", async () => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8"))[0] === oldLine);
  expect(await adminCli(proxy, "get weight autoscaler/web-1")).toBe("1 (initial 1)");
  expect((await status(proxy)).capacity.max).toBe(10);

  // (1) A good ini: max_nodes 10 → 2, and the server line gets `weight 50`.
  await editIni(proxy, [
    ["scaling.max_nodes", "2"],
    ["haproxy.server_line", "server $NAME $IP:$PORT check weight 50"],
  ]);
  const hupAt = Date.now();
  const reloaded = await hup(proxy, /^config reloaded$/);
  expect(reloaded).toMatchObject({ level: "info", applied: ["haproxy.server_line", "scaling.max_nodes"], needs_restart: [], ignored: [] });
  const newLine = `${oldLine} weight 50`;
  await waitFor("the new server line in haproxy.cfg", async () => serverLines(await fs.readFile(proxy.inst.haproxyConfig, "utf8"))[0] === newLine, 5_000, 20);
  // HAProxy itself runs it: the reloaded worker has the new weight, and serves.
  await waitFor("HAProxy's worker to have weight 50", async () => (await adminCli(proxy, "get weight autoscaler/web-1")) === "50 (initial 50)", 5_000, 50);
  const appliedMs = Date.now() - hupAt;
  expect(appliedMs).toBeLessThan(5_000);
  console.info(`sighup: the new server line ran in HAProxy's worker ${appliedMs} ms after SIGHUP`);
  expect((await getOnce(proxy.inst.frontendPort)).body).toBe("web-1");
  const afterGood = await status(proxy);
  expect(afterGood.capacity.max).toBe(2);
  expect(afterGood.events.find((e) => e.kind === "config_reloaded")?.message).toBe("config reloaded: applied haproxy.server_line, scaling.max_nodes");
  // A manual scale-up is capped by the new max_nodes (web-1 counts: 1 of 2).
  const up = await proxy.inst.cli("scale-up", "5");
  expect(up.code, up.stderr).toBe(0);
  expect(up.stdout).toMatch(/capped 5 → 1 by max_nodes \(1 of 2 backends or pending\)/);
  await waitFor("the launch script to run", async () => (await runs()).length === 1);
  expect(await runs()).toEqual(["COUNT=1"]);

  // (2) A bad ini: min_nodes > max_nodes, a listen address that is not loopback, a secret key on
  // two lines (its value must show as [redacted]), and a server_line change that must not apply.
  const goodIni = await fs.readFile(proxy.inst.ini, "utf8");
  const newSecret = `NEWSECRET-${randomBytes(12).toString("hex")}`;
  registerSecret(newSecret, "the bad ini's new AWS secret key");
  await editIni(proxy, [
    ["scaling.min_nodes", "5"],
    ["master.listen", `0.0.0.0:${proxy.masterPort}`],
    ["haproxy.server_line", "server $NAME $IP:$PORT check weight 7"],
  ]);
  const badIni = (await fs.readFile(proxy.inst.ini, "utf8")).replace(`aws_secret_key = ${KNOWN_AWS_SECRET_KEY}`, `aws_secret_key = ${newSecret}\n  continued`);
  expect(badIni).toContain(newSecret);
  await fs.writeFile(proxy.inst.ini, badIni);
  const cfgBefore = await fs.readFile(proxy.inst.haproxyConfig);
  const cfgMtime = (await fs.stat(proxy.inst.haproxyConfig)).mtimeMs;
  const hostsBefore = await hostsDir(proxy.inst.dir);
  const reloadsBefore = (await status(proxy)).haproxy.reloads;
  const logFrom = proxy.master.log().length;

  const refused = await hup(proxy, /keeping the running config$/);
  expect(refused).toMatchObject({ level: "error", problems: 3 });
  expect(String(refused.msg)).toBe(`config ${proxy.inst.ini} has 3 problems; keeping the running config`);
  const problems = jsonLogLines(proxy.master.log().slice(logFrom)).filter((l) => l.event === "config_reload_refused" && l.problems === undefined);
  expect(problems.map((l) => l.level)).toEqual(["error", "error", "error"]);
  const messages = problems.map((l) => String(l.msg));
  expect(messages).toContainEqual(expect.stringMatching(/^aws\.aws_secret_key: \[redacted\] is not valid; expected a single line/));
  expect(messages).toContainEqual(
    expect.stringMatching(new RegExp(`^master\\.listen: "0\\.0\\.0\\.0:${proxy.masterPort}" is not valid; expected a loopback address`)),
  );
  expect(messages).toContainEqual("scaling.min_nodes: 5 is greater than scaling.max_nodes (2); expected min_nodes <= max_nodes");
  expect(proxy.master.log()).not.toContain(newSecret);
  // Past the apply ceiling (800 ms): nothing was applied, written or reloaded.
  await sleep(1500);
  expect(proxy.master.child.exitCode).toBeNull();
  expect(jsonLogLines(proxy.master.log().slice(logFrom)).filter((l) => l.msg === "config reloaded")).toEqual([]);
  expect(await fs.readFile(proxy.inst.haproxyConfig)).toEqual(cfgBefore);
  expect((await fs.stat(proxy.inst.haproxyConfig)).mtimeMs).toBe(cfgMtime);
  expect(await hostsDir(proxy.inst.dir)).toEqual(hostsBefore);
  const afterBad = await status(proxy);
  expect(afterBad.haproxy.reloads).toBe(reloadsBefore);
  expect(afterBad.capacity).toMatchObject({ max: 2, min: 0 });
  expect(await adminCli(proxy, "get weight autoscaler/web-1")).toBe("50 (initial 50)");
  const still = await probeMaster(proxy.masterPort, "not json\n", { waitForClose: true });
  expect(still.closedByMaster).toBe(true);

  // (3) A good ini that moves [master] listen and changes the token, with max_nodes 2 → 3: the
  // max applies, listen and token are named as needing a restart, and the old port and token still work.
  const newPort = await freePort();
  const newToken = randomBytes(24).toString("base64url");
  registerSecret(newToken, "the reloaded ini's new master.token");
  await fs.writeFile(proxy.inst.ini, goodIni);
  await editIni(proxy, [
    ["master.listen", `127.0.0.1:${newPort}`],
    ["master.token", newToken],
    ["scaling.max_nodes", "3"],
  ]);
  const logFrom3 = proxy.master.log().length;
  const partial = await hup(proxy, /^config reloaded$/);
  expect(partial).toMatchObject({ applied: ["scaling.max_nodes"], needs_restart: ["master.listen", "master.token"] });
  const warnings = jsonLogLines(proxy.master.log().slice(logFrom3)).filter((l) => l.event === "config_needs_restart");
  expect(warnings.map((l) => [l.level, l.key])).toEqual([
    ["warn", "master.listen"],
    ["warn", "master.token"],
  ]);
  expect(String(warnings[0]!.msg)).toBe(
    `master.listen changed in ${proxy.inst.ini}, but only a restart applies it (the agent listener is bound once, at start); the running master keeps its current value`,
  );
  expect(proxy.master.log()).not.toContain(newToken);
  expect((await status(proxy)).capacity.max).toBe(3);
  expect(await canConnect(newPort)).toBe(false);
  const withNewToken = await probeMaster(proxy.masterPort, hello(newToken, "probe-new", backend.port), { waitForClose: true });
  expect(withNewToken.received).toMatch(/^\{"type":"error","code":"TOKEN"/);
  const withOldToken = await probeMaster(proxy.masterPort, hello(proxy.token, "probe-old", backend.port), { until: /welcome/ });
  expect(withOldToken.received).toMatch(/^\{"type":"welcome"/);

  // A restart applies them: the master listens on the new port only.
  proxy.master.child.kill("SIGTERM");
  await new Promise((r) => proxy.master.child.once("exit", r));
  proxy.master = await proxy.startMaster();
  expect(await canConnect(newPort)).toBe(true);
  expect(await canConnect(proxy.masterPort)).toBe(false);
});

test("SIGHUP during a burst (five in a row) leaves one running master that applied the last ini; SIGTERM still stops it cleanly", async () => {
  const proxy = await startProxy(scope);
  await editIni(proxy, [["scaling.max_nodes", "4"]]);
  for (let i = 0; i < 5; i++) process.kill(proxy.master.child.pid!, "SIGHUP");
  await waitFor("a config reloaded line", () => /"msg":"config reloaded"/.test(proxy.master.log()), 10_000, 20);
  await waitFor("max 4 in status", async () => (await status(proxy)).capacity.max === 4, 5_000, 50);
  expect(proxy.master.child.exitCode).toBeNull();
  expect(proxy.master.log()).not.toMatch(/"level":"error"/);
  proxy.master.child.kill("SIGTERM");
  const code = await new Promise((r) => proxy.master.child.once("exit", r));
  expect(code).toBe(0);
  expect(proxy.master.log()).toMatch(/"msg":"master stopped"/);
});
