/**
 * Reload confirmation against a real HAProxy in master-worker mode: the pipeline asks the master
 * CLI (`show proc`) whether a new worker took over, restores the previous file when it did not,
 * leaves HAProxy alone when nothing changed, and serialises concurrent writers.
 */
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { freePort, Scope, startBackend } from "./helpers/process.js";
import { makeInstallation, parentPid, serverLines, showProc, startHaproxy, type Installation } from "./helpers/haproxy.js";
import { getOnce } from "./helpers/load.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** An installation serving backend A through a running HAProxy. */
async function servingA(extraSettings: string[] = []) {
  const inst = await makeInstallation(scope, extraSettings);
  const a = await startBackend(scope, "A");
  const add = await inst.cli("add-host", "127.0.0.1", String(a.port), "--name", "a", "--no-reload");
  expect(add.code, add.stderr).toBe(0);
  const haproxy = await startHaproxy(scope, inst);
  expect((await getOnce(inst.frontendPort)).body).toBe("A");
  return { inst, a, haproxy };
}

/** Hold a loopback port with a plain TCP server, so a HAProxy bind on it fails. */
async function holdPort(): Promise<number> {
  const server = scope.trackServer(net.createServer((s) => s.destroy()));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return (server.address() as net.AddressInfo).port;
}

async function writeHostFile(inst: Installation, name: string, port: number): Promise<void> {
  await fs.writeFile(path.join(inst.dir, "hosts.d", `${name}.json`), JSON.stringify({ address: "127.0.0.1", port }) + "\n");
}

describe("reload confirmation on the master CLI", () => {
  test("a template that passes haproxy -c but cannot bind makes generate --reload exit 1, restores haproxy.cfg, and HAProxy keeps serving", async () => {
    const { inst } = await servingA();
    const before = await fs.readFile(inst.haproxyConfig);
    const taken = await holdPort();
    const tmpl = path.join(inst.dir, "haproxy.cfg.tmpl");
    await fs.appendFile(tmpl, `\nfrontend clash\n    bind 127.0.0.1:${taken}\n    default_backend autoscaler\n`);

    const r = await inst.cli("generate", "--reload");

    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stderr).toMatch(/did not start a worker with the new configuration/);
    expect(r.stderr).toMatch(/reload/);
    expect(r.stderr).toMatch(/put back/);
    expect(await fs.readFile(inst.haproxyConfig)).toEqual(before);
    expect((await getOnce(inst.frontendPort)).body).toBe("A");
  });

  test("a reload_command that does nothing makes generate --reload exit 1 with 'did not confirm' and restores haproxy.cfg", async () => {
    const { inst } = await servingA(["haproxy.reload_command=true", "haproxy.reload_timeout=1"]);
    const b = await startBackend(scope, "B");
    await writeHostFile(inst, "b", b.port);
    const before = await fs.readFile(inst.haproxyConfig);
    const reloadsBefore = (await showProc(inst)).master.reloads;

    const r = await inst.cli("generate", "--reload");

    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stderr).toMatch(/did not confirm the reload within 1000 ms/);
    expect(await fs.readFile(inst.haproxyConfig)).toEqual(before);
    expect((await showProc(inst)).master.reloads).toBe(reloadsBefore);
  });

  test("a good reload prints the new worker pid as confirmed, and that pid is a live worker of the HAProxy master", async () => {
    const { inst, haproxy } = await servingA();
    const b = await startBackend(scope, "B");

    const r = await inst.cli("add-host", "127.0.0.1", String(b.port), "--name", "b");

    expect(r.code, r.stderr).toBe(0);
    const pid = Number(/new worker pid (\d+) confirmed/.exec(r.stdout)?.[1]);
    expect(pid, r.stdout).toBeGreaterThan(0);
    expect(await parentPid(pid)).toBe(haproxy.pid);
    const proc = await showProc(inst);
    expect(proc.master.pid).toBe(haproxy.pid);
    expect(proc.workers.find((w) => w.pid === pid)?.reloads).toBe(0);
  });

  test("a second generate --reload with nothing changed says unchanged and does not reload HAProxy", async () => {
    const { inst } = await servingA();
    const b = await startBackend(scope, "B");
    await writeHostFile(inst, "b", b.port);
    const first = await inst.cli("generate", "--reload");
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/confirmed/);
    const reloads = (await showProc(inst)).master.reloads;
    const cfg = await fs.readFile(inst.haproxyConfig);

    const second = await inst.cli("generate", "--reload");

    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/unchanged/);
    expect(second.stdout).not.toMatch(/reloaded \(/);
    expect((await showProc(inst)).master.reloads).toBe(reloads);
    expect(await fs.readFile(inst.haproxyConfig)).toEqual(cfg);
  });
});

describe("a file written without a reload", () => {
  test("add-host --no-reload, then generate --reload reloads the unchanged file once, then says unchanged", async () => {
    const { inst } = await servingA();
    const b = await startBackend(scope, "B");
    const add = await inst.cli("add-host", "127.0.0.1", String(b.port), "--name", "b", "--no-reload");
    expect(add.code, add.stderr).toBe(0);
    const before = (await showProc(inst)).master.reloads;
    const cfg = await fs.readFile(inst.haproxyConfig);

    const first = await inst.cli("generate", "--reload");

    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/had not reloaded it yet/);
    expect(first.stdout).toMatch(/confirmed/);
    expect((await showProc(inst)).master.reloads).toBeGreaterThan(before);
    expect(await fs.readFile(inst.haproxyConfig)).toEqual(cfg);
    const bodies = new Set<string>();
    for (let i = 0; i < 6; i++) bodies.add((await getOnce(inst.frontendPort, "/hit")).body ?? "");
    expect([...bodies].sort()).toEqual(["A", "B"]);

    const reloads = (await showProc(inst)).master.reloads;
    const second = await inst.cli("generate", "--reload");
    expect(second.stdout).toMatch(/unchanged/);
    expect((await showProc(inst)).master.reloads).toBe(reloads);
  });
});

describe("concurrent writers", () => {
  test("eight add-host runs at once, each reloading a running HAProxy, lose no host", async () => {
    const { inst } = await servingA();
    const names = Array.from({ length: 8 }, (_, i) => `n${i}`);
    const ports = await Promise.all(names.map(() => freePort()));

    const results = await Promise.all(names.map((n, i) => inst.cli("add-host", "127.0.0.1", String(ports[i]), "--name", n)));

    for (const r of results) expect(r.code, r.stdout + r.stderr).toBe(0);
    const files = (await fs.readdir(path.join(inst.dir, "hosts.d"))).sort();
    expect(files).toEqual(["a.json", ...names.map((n) => `${n}.json`)].sort());
    const live = serverLines(await fs.readFile(inst.haproxyConfig, "utf8"));
    for (const [i, n] of names.entries()) expect(live).toContain(`server ${n} 127.0.0.1:${ports[i]} check`);
    expect(live).toHaveLength(9);
  });
});
