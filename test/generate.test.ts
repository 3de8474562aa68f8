/**
 * `generate` and `check-config` with real files and the real `haproxy -c`: what the rendered file
 * holds, what stops a render (the live file stays byte-identical), and the original tool's inis.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { REPO_ROOT, runCli, runProcess, Scope, snapshotDir } from "./helpers/process.js";
import { makeInstallation, serverLines, type Installation } from "./helpers/haproxy.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

const FIXTURES = path.join(REPO_ROOT, "test", "fixtures");

/** An installation with one backend and a generated haproxy.cfg (no HAProxy running). */
async function installationWithOneHost(): Promise<Installation> {
  const inst = await makeInstallation(scope);
  const r = await inst.cli("add-host", "10.0.0.5", "8080", "--no-reload");
  expect(r.code, r.stderr).toBe(0);
  return inst;
}

test("add-host 10.0.0.5 8080 then generate: haproxy -c accepts the file and the backend has a server line for 10.0.0.5:8080", async () => {
  const inst = await makeInstallation(scope);
  const add = await inst.cli("add-host", "10.0.0.5", "8080", "--no-reload");
  expect(add.code, add.stderr).toBe(0);
  await fs.rm(inst.haproxyConfig);

  const r = await inst.cli("generate");

  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/wrote .*haproxy\.cfg; check passed/);
  const check = await runProcess("haproxy", ["-c", "-f", inst.haproxyConfig]);
  expect(check.code, check.stdout + check.stderr).toBe(0);
  expect(serverLines(await fs.readFile(inst.haproxyConfig, "utf8"))).toEqual(["server 10.0.0.5-8080 10.0.0.5:8080 check"]);
});

test("a misspelt keyword in the template's backend: generate exits 1 with HAProxy's [ALERT] line and haproxy.cfg stays byte-identical", async () => {
  const inst = await installationWithOneHost();
  const tmpl = path.join(inst.dir, "haproxy.cfg.tmpl");
  const text = await fs.readFile(tmpl, "utf8");
  await fs.writeFile(tmpl, text.replace("    balance roundrobin\n", "    balance roundrobin\n    balanse leastconn\n"));
  const before = await snapshotDir(inst.dir);

  const r = await inst.cli("generate");

  expect(r.code, r.stdout + r.stderr).toBe(1);
  expect(r.stderr).toMatch(/HAProxy refused the new configuration/);
  expect(r.stderr).toMatch(/\[ALERT\].*unknown keyword 'balanse'/);
  expect(r.stderr).toMatch(/haproxy\.cfg was left as it was/);
  expect(await snapshotDir(inst.dir)).toEqual(before);
});

test("add-host refused by HAProxy's check tells a fault of the new host from one of the template, and leaves hosts.d as it was", async () => {
  const inst = await installationWithOneHost();
  const hosts = path.join(inst.dir, "hosts.d");
  const entries = await fs.readdir(hosts);
  // The new host is at fault: a name that does not resolve (HAProxy's check refuses it).
  const badHost = await inst.cli("add-host", "no-such-host.invalid", "80", "--no-reload");
  expect(badHost.code, badHost.stdout + badHost.stderr).toBe(1);
  expect(badHost.stdout).toMatch(/removed no-such-host\.invalid-80 again: HAProxy refused the config with it and accepts it without/);
  expect(await fs.readdir(hosts)).toEqual(entries);
  // The template is at fault: a misspelt keyword, so the config fails with or without the new host.
  const tmpl = path.join(inst.dir, "haproxy.cfg.tmpl");
  await fs.writeFile(tmpl, (await fs.readFile(tmpl, "utf8")).replace("    balance roundrobin\n", "    balance roundrobin\n    balanse leastconn\n"));
  const badTemplate = await inst.cli("add-host", "10.0.0.6", "8080", "--no-reload");
  expect(badTemplate.code, badTemplate.stdout + badTemplate.stderr).toBe(1);
  expect(badTemplate.stdout).toMatch(
    /removed 10\.0\.0\.6-8080 again; the check fails without it too, so the fault is in the template \(.*haproxy\.cfg\.tmpl\) or another hosts\.d entry, not in 10\.0\.0\.6-8080/,
  );
  expect(badTemplate.stderr).toMatch(/unknown keyword 'balanse'/);
  expect(await fs.readdir(hosts)).toEqual(entries);
});

test("a template without $SERVERS: generate exits 78 and haproxy.cfg stays byte-identical", async () => {
  const inst = await installationWithOneHost();
  const tmpl = path.join(inst.dir, "haproxy.cfg.tmpl");
  await fs.writeFile(tmpl, (await fs.readFile(tmpl, "utf8")).replace(/^\s*\$SERVERS\n/m, ""));
  const before = await snapshotDir(inst.dir);

  const r = await inst.cli("generate");

  expect(r.code, r.stdout + r.stderr).toBe(78);
  expect(r.stderr).toMatch(/haproxy\.template: .*haproxy\.cfg\.tmpl has no \$SERVERS/);
  expect(await snapshotDir(inst.dir)).toEqual(before);
});

test("check-config --json on a bad ini prints the problems as JSON on stdout (exit 78), with an unknown key's hint beside the error", async () => {
  const inst = await installationWithOneHost();
  await fs.appendFile(inst.ini, "\n[scaling]\nmin_nodez = 3\nmin_nodes = 9\nmax_nodes = 2\n");
  const r = await inst.cli("check-config", "--json");
  expect(r.code).toBe(78);
  const out = JSON.parse(r.stdout) as { ok: boolean; code: string; problems: string[] };
  expect(out).toMatchObject({ ok: false, code: "AUTOSCALER_CONFIG_INVALID" });
  expect(out.problems).toContainEqual(expect.stringMatching(/^scaling\.min_nodes: 9 is greater than scaling\.max_nodes \(2\)/));
  expect(out.problems).toContainEqual(expect.stringMatching(/^warning: scaling\.min_nodez: unknown key on line \d+, ignored \(did you mean "min_nodes"\?\)/));
  // The same words for a person, on stderr.
  expect(r.stderr).toMatch(/did you mean "min_nodes"/);
});

test("a hand-edited hosts.d file with bad JSON: generate exits 1 naming the file and haproxy.cfg stays byte-identical", async () => {
  const inst = await installationWithOneHost();
  await fs.writeFile(path.join(inst.dir, "hosts.d", "web-9.json"), '{"address": "10.0.0.9", "port": 80,\n');
  const before = await snapshotDir(inst.dir);

  const r = await inst.cli("generate");

  expect(r.code, r.stdout + r.stderr).toBe(1);
  expect(r.stderr).toMatch(/web-9\.json: is not valid JSON/);
  expect(await snapshotDir(inst.dir)).toEqual(before);
});

describe("the original tool's ini loads unchanged", () => {
  // These inis keep the default [haproxy] config, /etc/haproxy/haproxy.cfg: only commands that
  // never write it run here (check-config, generate --output - or a temp file).
  const systemConfig = "/etc/haproxy/haproxy.cfg";
  const readSystemConfig = () => fs.readFile(systemConfig, "utf8").catch(() => "<absent>");

  test.each([
    ["original-v1.ini", "server web-1 10.0.0.21:80 check"],
    ["original-v2.ini", "server web-1 10.0.0.21:8080 check inter 2000"],
  ])("%s: check-config exits 0 and generate prints the server_line of each backend", async (fixture, expectedLine) => {
    const systemBefore = await readSystemConfig();
    const dir = await scope.tempDir();
    const ini = path.join(dir, "autoscaler.ini");
    await fs.copyFile(path.join(FIXTURES, fixture), ini);
    await fs.copyFile(path.join(FIXTURES, "original.tmpl"), path.join(dir, "haproxy.cfg.tmpl"));
    await fs.mkdir(path.join(dir, "hosts.d"));
    await fs.writeFile(path.join(dir, "hosts.d", "web-1.json"), JSON.stringify({ address: "10.0.0.21", port: 80 }) + "\n");

    const check = await runCli(["check-config", "--config", ini]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/OK; template .* renders 1 backend and passes check_command/);

    const printed = await runCli(["generate", "--output", "-", "--config", ini]);
    expect(printed.code, printed.stderr).toBe(0);
    expect(serverLines(printed.stdout, "servers")).toEqual([expectedLine]);

    const out = path.join(dir, "out.cfg");
    const written = await runCli(["generate", "--output", out, "--config", ini]);
    expect(written.code, written.stderr).toBe(0);
    expect(await fs.readFile(out, "utf8")).toBe(printed.stdout);

    // --reload with another file: HAProxy would reload its own config, not this one. Refused, nothing written.
    const other = path.join(dir, "other.cfg");
    const both = await runCli(["generate", "--output", other, "--reload", "--config", ini]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--reload cannot go with --output .*other\.cfg: HAProxy reads its own config \(haproxy\.config = /);
    await expect(fs.access(other)).rejects.toThrow();

    expect(await readSystemConfig()).toBe(systemBefore);
  });
});

test("a CLI generate or add-host during a master's drain leaves the draining node out; once the drain is over it is rendered again", async () => {
  const inst = await installationWithOneHost();
  // Two agent nodes in hosts.d, and the master's state.json with a drain of web-2 in progress.
  for (const [name, address] of [
    ["web-1", "10.0.0.11"],
    ["web-2", "10.0.0.12"],
  ] as const) {
    await fs.writeFile(
      path.join(inst.dir, "hosts.d", `${name}.json`),
      JSON.stringify({ name, address, port: 80, source: "agent", addedAt: new Date().toISOString() }),
    );
  }
  const stateDir = inst.stateDir;
  await fs.mkdir(stateDir, { recursive: true });
  const drain = {
    id: "drain-1",
    node: "web-2",
    instanceId: "i-2",
    address: "10.0.0.12",
    decidedAt: Date.now(),
    drainUntil: Date.now() + 30_000,
    status: "draining",
    reason: "scale-down",
    manual: false,
  };
  const state = { version: 2, paused: false, launches: [], drains: [drain], backoff: {} };
  await fs.writeFile(path.join(stateDir, "state.json"), JSON.stringify(state));

  const printed = await inst.cli("generate", "--output", "-");
  expect(printed.code, printed.stderr).toBe(0);
  expect(serverLines(printed.stdout)).toEqual(["server 10.0.0.5-8080 10.0.0.5:8080 check", "server web-1 10.0.0.11:80 check"]);
  const added = await inst.cli("add-host", "10.0.0.6", "8080", "--no-reload");
  expect(added.code, added.stderr).toBe(0);
  expect(serverLines(await fs.readFile(inst.haproxyConfig, "utf8"))).not.toContain("server web-2 10.0.0.12:80 check");

  await fs.writeFile(path.join(stateDir, "state.json"), JSON.stringify({ ...state, drains: [{ ...drain, status: "failed" }] }));
  const after = await inst.cli("generate", "--output", "-");
  expect(serverLines(after.stdout)).toContain("server web-2 10.0.0.12:80 check");
});
