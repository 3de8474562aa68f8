/**
 * The fleet with a real proxy (sshd, HAProxy, master) and the fake cloud (test/helpers/cloud.ts):
 * each launch starts a real node, a web app plus a real agent. `autoscaler instances` (and the
 * pending launches' addresses in `status`), `terminate` by name and by instance id, and
 * `inventory` read by Debian's real `ansible-inventory`.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test, vi } from "vitest";
import type { Instance } from "@autoscaler/master";
import { createCloud } from "./helpers/cloud.js";
import { startProxy } from "./helpers/cluster.js";
import { CLI, REPO_ROOT, runProcess, Scope, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());
vi.setConfig({ testTimeout: 90_000 });

test("instances lists nodes and pending launches; terminate by name and by instance id (min_nodes holds unless --force, hand-added hosts refused, unknown exits 2); ansible-inventory reads the inventory", async () => {
  // The first launch prints its instances (run-instances JSON) but starts nothing: it stays pending
  // with the addresses its output gave, until launch_timeout.
  const cloud = await createCloud(scope, undefined, { startNodes: false });
  const proxy = await startProxy(scope, {
    settings: [...cloud.settings, "master.interval=0.2", "scaling.min_nodes=3", "scaling.max_nodes=6", "scaling.drain_seconds=1", "machine.launch_timeout=4"],
  });
  await cloud.attach(proxy);
  const cli = proxy.inst.cli;
  const instances = async () => {
    const r = await cli("instances", "--json");
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Instance[];
  };

  const pending = await waitFor("the launch to print its instances", async () => {
    const s = await status(proxy);
    return s.launches.find((l) => l.status === "pending" && l.expected.length === 3) ? s : undefined;
  });
  const expected = pending.launches.at(-1)!.expected;
  expect(expected.every((e) => /^i-/.test(e.instance_id) && /^127\.0\.0\.\d+$/.test(e.private_address ?? ""))).toBe(true);
  const text = await cli("status");
  for (const e of expected) expect(text.stdout).toContain(`${e.instance_id} (${e.private_address})`);
  const awaited = (await instances()).filter((i) => i.state === "pending");
  expect(awaited.map((i) => [i.name, i.instance_id, i.address, i.source, i.launch])).toEqual(
    expected.map((e) => [null, e.instance_id, e.private_address, "launch", pending.launches.at(-1)!.id]),
  );

  // It times out; a launch by hand then brings three real nodes, and automatic decisions stop.
  await waitFor("the first launch to time out", async () => (await status(proxy)).launches.some((l) => l.status === "failed"), 15_000);
  // Real nodes take longer than 4 s on a busy machine (their join credential holds until launch_timeout): a SIGHUP applies 60 s.
  await fs.writeFile(proxy.inst.ini, (await fs.readFile(proxy.inst.ini, "utf8")).replace(/^launch_timeout = 4$/m, "launch_timeout = 60"));
  const reloads = () => (proxy.master.log().match(/config reloaded/g) ?? []).length;
  const before = reloads();
  process.kill(proxy.master.child.pid!, "SIGHUP");
  await waitFor("the master to read the ini again", () => reloads() > before);
  expect((await status(proxy)).events.find((e) => e.kind === "config_reloaded")?.message).toMatch(/machine\.launch_timeout/);
  await cloud.setOptions({ startNodes: undefined });
  const up = await cli("scale-up", "3");
  expect(up.code, up.stderr).toBe(0);
  await waitFor("three live nodes", async () => (await status(proxy)).nodes.filter((n) => n.state === "live").length === 3, 30_000);
  expect((await cli("pause")).code).toBe(0);
  const add = await cli("add-host", "127.0.0.5", "8080", "--name", "static-1");
  expect(add.code, add.stderr).toBe(0);
  const launchId = (await status(proxy)).launches.at(-1)!.id;

  // A node may say hello before the launch command has printed its output; the output then vouches for its id.
  const listed = await waitFor("the hand-added host and three launched nodes with vouched ids in the listing", async () => {
    const l = await instances();
    const launched = l.filter((i) => i.source === "launched" && i.state === "active" && i.instance_id_trusted);
    return l.some((i) => i.name === "static-1") && launched.length === 3 ? l : undefined;
  });
  const nodes = (await cloud.nodes()).filter((n) => n.started);
  expect(listed.filter((i) => i.source === "launched").map((i) => [i.name, i.address, i.instance_id, i.instance_id_trusted, i.state])).toEqual(
    nodes.map((n) => [n.name, n.address, n.instanceId, true, "active"]),
  );
  expect(listed.filter((i) => i.source === "launched").every((i) => i.launch === launchId && i.last_sample !== null)).toBe(true);
  expect(listed.find((i) => i.name === "static-1")).toMatchObject({ source: "manual", state: "active", address: "127.0.0.5", port: 8080, launch: null });
  const table = await cli("instances");
  expect(table.stdout).toMatch(/^NAME\s+ADDRESS\s+PORT\s+INSTANCE\s+SOURCE\s+STATE\s+LAUNCH\s+AGE\s+LAST SAMPLE$/m);
  expect(table.stdout).toMatch(
    new RegExp(`^${nodes[0]!.name}\\s+${nodes[0]!.address.replace(/\./g, "\\.")}\\s+\\d+\\s+${nodes[0]!.instanceId}\\s+launched\\s+active\\s+${launchId}`, "m"),
  );

  // Refusals: nothing is recorded.
  const manual = await cli("terminate", "static-1");
  expect(manual.code).toBe(1);
  expect(manual.stderr).toMatch(/static-1 is a hand-added host.*use autoscaler remove-host static-1/);
  for (const unknown of ["nope", "i-00000000deadbeef"]) {
    const r = await cli("terminate", unknown);
    expect(r.code, unknown).toBe(2);
    expect(r.stderr).toMatch(/unknown node or instance id/);
  }
  expect((await cli("terminate", "../etc")).code).toBe(2);
  expect((await status(proxy)).drains).toEqual([]);

  // By name: 4 backends (the hand-added one counts), min_nodes 3: one may go.
  const [n1, n2, n3] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]];
  const byName = await cli("terminate", n1.name);
  expect(byName.code, byName.stderr).toBe(0);
  expect(byName.stdout).toMatch(/draining \S+ out of service for 1 s, then terminating it through scale_down_command \(INSTANCE_ID=i-/);
  // By instance id, now at min_nodes: refused without --force.
  const id2 = n2.instanceId;
  const held = await cli("terminate", id2, "--no-drain");
  expect(held.code).toBe(1);
  expect(held.stderr).toMatch(/already at min_nodes \(3\); --force/);
  const forced = await cli("terminate", id2, "--no-drain", "--force");
  expect(forced.code, forced.stderr).toBe(0);
  expect(forced.stdout).toContain(`taking ${n2.name} out of service now, then terminating`);

  await waitFor(
    "both terminates to run",
    async () => (await cloud.terminations()).filter((t) => t.found).length === 2 && !(await cloud.isRunning(n1.name)) && !(await cloud.isRunning(n2.name)),
    20_000,
  );
  expect((await cloud.terminations()).map((t) => [t.instanceId, t.name]).sort()).toEqual(
    [
      [n1.instanceId, n1.name],
      [id2, n2.name],
    ].sort(),
  );
  const after = await waitFor("the terminated nodes out of the listing", async () => {
    const l = await instances();
    return l.some((i) => i.name === n1.name || i.name === n2.name) ? undefined : l;
  });
  expect(after.map((i) => i.name).sort()).toEqual([n3.name, "static-1"].sort());
  const drains = (await status(proxy)).drains;
  expect(drains.map((d) => [d.node, d.status, d.manual])).toEqual([
    [n1.name, "done", true],
    [n2.name, "done", true],
  ]);

  // The inventory, through Debian's ansible-inventory: a script that calls autoscaler inventory.
  const script = path.join(proxy.inst.dir, "inventory.sh");
  await fs.writeFile(script, `#!/bin/sh\nexec '${process.execPath}' '${CLI}' inventory --config '${proxy.inst.ini}' "$@"\n`, { mode: 0o755 });
  const home = await scope.tempDir("autoscaler-ansible-");
  const ansible = await runProcess("ansible-inventory", ["-i", script, "--list"], {
    cwd: REPO_ROOT,
    env: { HOME: home, ANSIBLE_LOCAL_TEMP: path.join(home, "tmp"), ANSIBLE_INVENTORY_UNPARSED_FAILED: "true", ANSIBLE_NOCOLOR: "1" },
    timeoutMs: 60_000,
  });
  expect(ansible.code, ansible.stderr).toBe(0);
  const inv = JSON.parse(ansible.stdout) as { _meta: { hostvars: Record<string, Record<string, unknown>> }; [group: string]: unknown };
  const c3 = n3;
  expect(inv._meta.hostvars[c3.name]).toMatchObject({
    ansible_host: c3.address,
    autoscaler_address: c3.address,
    autoscaler_port: c3.port,
    autoscaler_instance_id: c3.instanceId,
    autoscaler_source: "launched",
    autoscaler_state: "active",
  });
  expect(inv._meta.hostvars["static-1"]).toMatchObject({ ansible_host: "127.0.0.5", autoscaler_port: 8080, autoscaler_source: "manual" });
  expect(Object.keys(inv._meta.hostvars).sort()).toEqual([c3.name, "static-1"].sort());
  expect(inv.source_launched).toEqual({ hosts: [c3.name] });
  expect(inv.source_manual).toEqual({ hosts: ["static-1"] });
  expect((inv.all as { children: string[] }).children).toEqual(expect.arrayContaining(["autoscaler", "source_launched", "state_active"]));

  const host = await cli("inventory", "--host", c3.name);
  expect(JSON.parse(host.stdout)).toMatchObject({ autoscaler_instance_id: c3.instanceId });
  expect((await cli("inventory", "--host", n1.name)).code).toBe(2);
  const ini = await cli("inventory", "--format", "ini");
  expect(ini.stdout).toMatch(
    new RegExp(`^${c3.name} ansible_host=${c3.address.replace(/\./g, "\\.")} .*autoscaler_source=launched autoscaler_state=active$`, "m"),
  );
  expect(ini.stdout).toMatch(/^\[source_manual\]\nstatic-1$/m);
});
