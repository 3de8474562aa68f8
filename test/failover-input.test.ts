/**
 * Failover on etcd, the input it must refuse or live with (issue 12, "Bad input"): a malformed
 * endpoint or TLS file exits 78 naming the key; unreachable endpoints at start are not fatal
 * (the master serves HAProxy and says it waits); another cluster on the same prefix is refused;
 * a shared state that does not parse is refused, kept, and named in status; the password never
 * reaches a log or status. Real etcd, real masters and HAProxy on loopback.
 */
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { emptyState, serialiseState, type DurableState } from "../packages/master/src/state-store.js";
import { startDaemon } from "./helpers/cluster.js";
import { startEtcd } from "./helpers/etcd.js";
import { makeInstallation, startHaproxy } from "./helpers/haproxy.js";
import { forgedHello, probeMaster } from "./helpers/hostile.js";
import { registerSecret } from "./helpers/secrets.js";
import { freePort, runCli, Scope, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** Free ports for the master's listeners: other files' masters run meanwhile. */
const ownPorts = async () => [`master.listen=127.0.0.1:${await freePort()}`, `master.metrics_listen=127.0.0.1:${await freePort()}`];

test("a malformed endpoint or a missing TLS file exits 78 naming the key; check-config names a bad prefix and a half pair", async () => {
  const dir = await scope.tempDir();
  /** check-config on an ini whose [cluster] section holds `key = value`. */
  const check = async (...lines: string[]) => {
    const ini = path.join(dir, "autoscaler.ini");
    await fs.writeFile(ini, `[master]\nstate_dir = state\n\n[cluster]\n${lines.join("\n")}\n`);
    return runCli(["check-config", "--config", ini]);
  };
  for (const [setting, expected] of [
    ["cluster.etcd=10.0.0.1:2379", /cluster\.etcd: "10\.0\.0\.1:2379" is not valid; expected a comma-separated list of etcd client URLs/],
    ["cluster.etcd=http://10.0.0.1", /cluster\.etcd: .*is not one \(scheme, host and port only\)/],
    ["cluster.prefix=autoscaler", /cluster\.prefix: "autoscaler" is not valid; expected a key prefix that starts and ends with '\/'/],
    ["cluster.lease_ttl=0", /cluster\.lease_ttl: "0" is not valid; expected a whole number from 1 to 600/],
  ] as const) {
    const [key, value] = setting.slice("cluster.".length).split(/=(.*)/s) as [string, string];
    const r = await check(`${key} = ${value}`);
    expect(r.code, setting).toBe(78);
    expect(r.stderr).toMatch(expected);
  }
  const half = await check("etcd = http://10.0.0.1:2379", "user = autoscaler");
  expect(half.code).toBe(78);
  expect(half.stderr).toMatch(/cluster\.password: is set without its pair; expected both cluster\.user and cluster\.password, or neither/);
  const mixed = await check("etcd = http://10.0.0.1:2379", "ca = ca.pem");
  expect(mixed.code).toBe(78);
  expect(mixed.stderr).toMatch(/cluster\.etcd: mixes TLS settings .* with http:\/\/ endpoints/);

  const port = await freePort();
  const inst = await makeInstallation(scope, [`cluster.etcd=https://127.0.0.1:${port}`, "cluster.ca=no-such-ca.pem"]);
  const r = await runCli(["master", "--config", inst.ini], { timeoutMs: 20_000 });
  expect(r.code).toBe(78);
  expect(r.stderr).toMatch(/cluster\.ca: cannot read .*no-such-ca\.pem \(ENOENT\); expected a readable PEM file/);
});

test("etcd unreachable at start is not fatal: the master serves HAProxy, says it waits, and decides nothing; the etcd password shows nowhere", async () => {
  const port = await freePort();
  const password = "etcd-pass-" + Math.random().toString(36).slice(2);
  registerSecret(password, "the etcd password");
  const inst = await makeInstallation(scope, [
    ...(await ownPorts()),
    `cluster.etcd=http://127.0.0.1:${port}`,
    "cluster.lease_ttl=2",
    "cluster.user=autoscaler",
    `cluster.password=${password}`,
    "master.interval=0.2",
  ]);
  expect((await inst.cli("add-host", "127.0.0.1", "8080", "--name", "web-1", "--no-reload")).code).toBe(0);
  await startHaproxy(scope, inst);
  const master = startDaemon(scope, ["master", "--config", inst.ini]);
  await master.waitForLog(/etcd does not answer yet: this master keeps HAProxy in step and waits for it/, 15_000);
  await master.waitForLog(/master started/, 15_000);
  const s = await status(inst);
  expect(s.role).toBe("follower");
  expect(s.cluster?.etcd.up).toBe(false);
  expect(s.nodes.map((n) => n.name)).toEqual(["web-1"]);
  // HAProxy is kept in step: a host added now is in its config.
  const added = await inst.cli("add-host", "127.0.0.1", "8081", "--name", "web-2", "--no-reload");
  expect(added.code, added.stderr).toBe(0);
  await waitFor("the master to apply web-2", async () => (await status(inst)).haproxy.applies >= 1, 10_000, 100);
  const refused = await inst.cli("scale-up", "1");
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/no master leads now \(is etcd reachable\?\)/);
  // Every output of this test (the master's log, each CLI run) is checked for the password at cleanup (helpers/secrets.ts).
  const json = await inst.cli("status", "--json");
  expect(json.stdout).not.toContain(password);
  expect(master.log()).not.toContain(password);
});

test("a master that starts while etcd is down starts from its last copy of the shared state: a node the cluster scaled down is refused and stays out of HAProxy, another node registers", async () => {
  const masterPort = await freePort();
  const token = "kills-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  const inst = await makeInstallation(scope, [
    `master.listen=127.0.0.1:${masterPort}`,
    `master.metrics_listen=127.0.0.1:${await freePort()}`,
    `master.token=${token}`,
    `cluster.etcd=http://127.0.0.1:${await freePort()}`,
    "cluster.lease_ttl=2",
    "master.interval=0.2",
  ]);
  // What a previous run of this master kept: the cluster drained web-9 (its instance id only the
  // node's own word, so it was not terminated and may still knock) 30 s ago.
  const now = Date.now();
  const copy: DurableState = {
    ...emptyState(),
    drains: [
      {
        id: "drain-earlier-1",
        node: "web-9",
        instanceId: "",
        reportedInstanceId: "i-0000000000000009",
        address: "127.0.0.1",
        decidedAt: now - 31_000,
        drainUntil: now - 30_500,
        status: "done",
        reason: "scale-down: every node < 20 % for 60 s",
        manual: false,
        finishedAt: now - 30_000,
      },
    ],
  };
  await fs.mkdir(inst.stateDir, { recursive: true });
  await fs.writeFile(path.join(inst.stateDir, "cluster-state.cache.json"), serialiseState(copy), { mode: 0o600 });
  expect((await inst.cli("generate")).code).toBe(0);
  await startHaproxy(scope, inst);
  const master = startDaemon(scope, ["master", "--config", inst.ini]);
  await master.waitForLog(/master started/, 15_000);
  const refused = await probeMaster(masterPort, forgedHello({ token, name: "web-9", port: 8089, instance_id: "i-0000000000000009" }), {
    waitForClose: true,
    timeoutMs: 5000,
  });
  expect(refused.closedByMaster, refused.received).toBe(true);
  await master.waitForLog(/web-9 at 127\.0\.0\.1 was taken out of service by this master \(scale-down drain-earlier-1\)/, 5000);
  const other = probeMaster(masterPort, forgedHello({ token, name: "web-8", port: 8088, instance_id: "i-0000000000000008" }), {
    until: /never/,
    timeoutMs: 4000,
  });
  await waitFor("web-8 in hosts.d", async () => (await fs.readdir(path.join(inst.dir, "hosts.d"))).includes("web-8.json"), 5000, 50);
  await other;
  expect(await fs.readdir(path.join(inst.dir, "hosts.d"))).toEqual(["web-8.json"]);
  expect(await fs.readFile(inst.haproxyConfig, "utf8")).not.toMatch(/server web-9 /);
});

test("another cluster on the same prefix is refused at start (exit 78); a shared state that does not parse is refused, kept as it is, and named in status", async () => {
  const etcd = await startEtcd(scope, 1);
  await etcd.ctl("put", "/autoscaler/other/cluster-id", "not-this-cluster");
  const inst = await makeInstallation(scope, [...(await ownPorts()), `cluster.etcd=${etcd.endpoints}`, "cluster.name=other", "cluster.lease_ttl=2"]);
  const r = await runCli(["master", "--config", inst.ini], { timeoutMs: 20_000 });
  expect(r.code).toBe(78);
  expect(r.stderr).toMatch(/cluster\.prefix: another cluster uses the prefix \/autoscaler\/other\/ in etcd/);

  await etcd.ctl("put", "/autoscaler/web/state", "{ not a state");
  const good = await makeInstallation(scope, [
    ...(await ownPorts()),
    `cluster.etcd=${etcd.endpoints}`,
    "cluster.name=web",
    "cluster.lease_ttl=2",
    "master.interval=0.2",
  ]);
  expect((await good.cli("generate", "--no-reload")).code).toBe(0);
  await startHaproxy(scope, good);
  const master = startDaemon(scope, ["master", "--config", good.ini]);
  await master.waitForLog(/master started/, 15_000);
  const s = await waitFor("the problem in status", async () => ((await status(good)).cluster?.problem ? await status(good) : undefined), 10_000, 100);
  expect(s.cluster?.problem).toMatch(
    /in etcd at \/autoscaler\/web\/state is not valid JSON; refusing to act rather than forget launches\. Inspect it with: etcdctl get/,
  );
  expect(s.role).toBe("follower");
  const text = await good.cli("status");
  expect(text.stdout).toMatch(/problem: the master's state in etcd at \/autoscaler\/web\/state is not valid JSON/);
  expect((await etcd.ctl("get", "--print-value-only", "/autoscaler/web/state")).trim()).toBe("{ not a state");
});

test("password auth: a master with [cluster] user and password leads on an etcd whose role allows only its prefix; a wrong password leads nowhere, and neither password shows", async () => {
  const etcd = await startEtcd(scope, 1);
  const password = "etcd-" + Math.random().toString(36).slice(2);
  const wrong = "wrong-" + Math.random().toString(36).slice(2);
  registerSecret(password, "the etcd password");
  registerSecret(wrong, "a wrong etcd password");
  await etcd.ctl("user", "add", "root", "--new-user-password", "root-" + password);
  await etcd.ctl("user", "grant-role", "root", "root");
  await etcd.ctl("user", "add", "autoscaler", "--new-user-password", password);
  await etcd.ctl("role", "add", "autoscaler");
  await etcd.ctl("role", "grant-permission", "autoscaler", "--prefix=true", "readwrite", "/autoscaler/default/");
  await etcd.ctl("user", "grant-role", "autoscaler", "autoscaler");
  await etcd.ctl("auth", "enable");
  const start = async (pw: string) => {
    const inst = await makeInstallation(scope, [
      ...(await ownPorts()),
      `cluster.etcd=${etcd.endpoints}`,
      "cluster.lease_ttl=2",
      "cluster.user=autoscaler",
      `cluster.password=${pw}`,
      "master.interval=0.2",
    ]);
    expect((await inst.cli("generate", "--no-reload")).code).toBe(0);
    await startHaproxy(scope, inst);
    const master = startDaemon(scope, ["master", "--config", inst.ini]);
    await master.waitForLog(/master started/, 15_000);
    return { inst, master };
  };
  const good = await start(password);
  await waitFor("the master to lead", async () => (await status(good.inst)).role === "decider", 10_000, 100);
  const bad = await start(wrong);
  await new Promise((r) => setTimeout(r, 2000));
  const s = await status(bad.inst);
  expect(s.role).toBe("follower");
  expect(s.cluster?.etcd.up).toBe(false);
  for (const m of [good, bad]) {
    const text = (await m.inst.cli("status", "--json")).stdout + m.master.log();
    expect(text).not.toContain(password);
    expect(text).not.toContain(wrong);
  }
});

test("a master whose port is taken exits 1 with the error, also with etcd configured (nothing keeps it alive half-started)", async () => {
  const holder = scope.trackServer(net.createServer());
  const port = await new Promise<number>((r) => holder.listen(0, "127.0.0.1", () => r((holder.address() as net.AddressInfo).port)));
  const inst = await makeInstallation(scope, [`master.listen=127.0.0.1:${port}`, `cluster.etcd=http://127.0.0.1:${await freePort()}`]);
  const r = await runCli(["master", "--config", inst.ini], { timeoutMs: 20_000 });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/EADDRINUSE/);
});
