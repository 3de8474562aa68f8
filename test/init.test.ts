/** `autoscaler init`: what it writes, what it refuses to overwrite, and settings it refuses before writing anything. */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { startDaemon } from "./helpers/cluster.js";
import { makeInstallation, startHaproxy } from "./helpers/haproxy.js";
import { freePort, runCli, Scope, sleep, snapshotDir, waitFor } from "./helpers/process.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

test("init writes the ini with mode 0600, hosts.d/ and the template", async () => {
  const dir = await scope.tempDir();
  const ini = path.join(dir, "autoscaler.ini");

  const r = await runCli(["init", "--config", ini]);

  expect(r.code, r.stderr).toBe(0);
  expect((await fs.stat(ini)).mode & 0o777).toBe(0o600);
  expect((await fs.stat(path.join(dir, "hosts.d"))).isDirectory()).toBe(true);
  expect(await fs.readFile(path.join(dir, "haproxy.cfg.tmpl"), "utf8")).toMatch(/^\s*\$SERVERS$/m);
  expect(await fs.readFile(ini, "utf8")).toMatch(/^token = \S{16,}$/m);
  expect(r.stdout).toMatch(/Next steps/);
});

test("a second init without --force exits non-zero and leaves the ini byte-identical", async () => {
  const dir = await scope.tempDir();
  const ini = path.join(dir, "autoscaler.ini");
  expect((await runCli(["init", "--config", ini])).code).toBe(0);
  const before = await snapshotDir(dir);

  const r = await runCli(["init", "--config", ini]);

  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(/already exists.*--force/);
  expect(await snapshotDir(dir)).toEqual(before);
});

test("init --force rewrites the ini and leaves hosts.d entries alone", async () => {
  const dir = await scope.tempDir();
  const ini = path.join(dir, "autoscaler.ini");
  const inFolder = ["--set", "haproxy.config=haproxy.cfg"];
  expect((await runCli(["init", "--config", ini, ...inFolder])).code).toBe(0);
  const add = await runCli(["add-host", "10.0.0.5", "8080", "--name", "web-1", "--no-reload", "--config", ini]);
  expect(add.code, add.stderr).toBe(0);
  const entry = path.join(dir, "hosts.d", "web-1.json");
  const entryBefore = await fs.readFile(entry, "utf8");
  const iniBefore = await fs.readFile(ini, "utf8");
  await fs.appendFile(ini, "\n; an operator's note\n");

  const r = await runCli(["init", "--force", "--config", ini, ...inFolder]);

  expect(r.code, r.stderr).toBe(0);
  const iniAfter = await fs.readFile(ini, "utf8");
  expect(iniAfter).not.toMatch(/an operator's note/);
  // A fresh random token: the file was written anew, not kept.
  expect(/^token = (.*)$/m.exec(iniAfter)?.[1]).not.toBe(/^token = (.*)$/m.exec(iniBefore)?.[1]);
  expect((await fs.stat(ini)).mode & 0o777).toBe(0o600);
  expect(await fs.readdir(path.join(dir, "hosts.d"))).toEqual(["web-1.json"]);
  expect(await fs.readFile(entry, "utf8")).toBe(entryBefore);
  // It says what it replaced and what it kept.
  expect(r.stdout).toMatch(new RegExp(`^replaced ${ini} \\(mode 0600`, "m"));
  expect(r.stdout).toMatch(/^kept .*hosts\.d\/ as it was \(1 entry; init never touches it\)$/m);
  expect(r.stdout).toMatch(/^kept the template .*haproxy\.cfg\.tmpl: it is already the shipped one$/m);
});

test("init --force keeps an edited template as a .bak before it replaces it, and says so; without --force the template is kept", async () => {
  const dir = await scope.tempDir();
  const ini = path.join(dir, "autoscaler.ini");
  const template = path.join(dir, "haproxy.cfg.tmpl");
  expect((await runCli(["init", "--config", ini])).code).toBe(0);
  const edited = (await fs.readFile(template, "utf8")) + "\n# an operator's edit\n";
  await fs.writeFile(template, edited);

  const forced = await runCli(["init", "--force", "--config", ini]);
  expect(forced.code, forced.stderr).toBe(0);
  const bak = /your version is kept as (\S+\.bak)$/m.exec(forced.stdout)?.[1];
  expect(bak, forced.stdout).toBeDefined();
  expect(forced.stdout).toMatch(/^replaced the HAProxy template .*haproxy\.cfg\.tmpl; your version is kept as/m);
  expect(await fs.readFile(bak!, "utf8")).toBe(edited);
  expect(await fs.readFile(template, "utf8")).not.toContain("an operator's edit");
});

test("init --set with an unknown key exits 2 and writes nothing", async () => {
  const dir = await scope.tempDir();
  const ini = path.join(dir, "autoscaler.ini");

  const r = await runCli(["init", "--config", ini, "--set", "scaling.max_nodez=4"]);

  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/scaling\.max_nodez: no such setting \(did you mean "max_nodes"\?\)/);
  expect(await snapshotDir(dir)).toEqual({});
  const section = await runCli(["init", "--config", ini, "--set", "scalng.max_nodes=4"]);
  expect(section.code).toBe(2);
  expect(section.stderr).toMatch(/scalng\.max_nodes: no such setting \(did you mean "scaling"\?\)/);
  expect(await snapshotDir(dir)).toEqual({});
});

test("init --set scaling.min_nodes=5 --set scaling.max_nodes=2 exits 78 and writes nothing", async () => {
  const dir = await scope.tempDir();
  const ini = path.join(dir, "autoscaler.ini");

  const r = await runCli(["init", "--config", ini, "--set", "scaling.min_nodes=5", "--set", "scaling.max_nodes=2"]);

  expect(r.code).toBe(78);
  expect(r.stderr).toMatch(/scaling\.min_nodes.*5.*max_nodes/);
  expect(r.stderr).toMatch(/nothing was written/);
  expect(await snapshotDir(dir)).toEqual({});
});

test("a fresh init launches nothing: the shipped scale_up_command is empty, and the master's first line says so and how to start scaling", async () => {
  // The shipped ini, as init writes it: no launch command.
  const dir = await scope.tempDir();
  const fresh = await runCli(["init", "--config", path.join(dir, "autoscaler.ini")]);
  expect(fresh.code, fresh.stderr).toBe(0);
  expect(fresh.stdout).toMatch(/scale_up_command is empty, so nothing is launched until you set it/);
  expect(await fs.readFile(path.join(dir, "autoscaler.ini"), "utf8")).toMatch(/^scale_up_command =\s*$/m);

  // A master on such an installation (folder paths, loopback), with min_nodes = 1 and no backend:
  // it would launch at once if it had a command; it runs nothing and says why, first.
  const inst = await makeInstallation(scope, [
    `master.listen=127.0.0.1:${await freePort()}`,
    `master.metrics_listen=127.0.0.1:${await freePort()}`,
    "master.interval=0.2",
    "scaling.min_nodes=1",
  ]);
  expect((await inst.cli("generate")).code).toBe(0);
  await startHaproxy(scope, inst);
  const master = startDaemon(scope, ["master", "--config", inst.ini]);
  await master.waitForLog(/master started/, 15_000);
  const first = master.log().split("\n")[0]!;
  expect(first).toMatch(/\[machine\] scale_up_command is empty: this master launches nothing \(a hot cluster and min_nodes = 1 are only reported\)/);
  expect(first).toMatch(/then: systemctl reload autoscaler-master/);
  await waitFor("a few decisions", async () => ((await status(inst)).last_decision ? true : undefined), 10_000, 100);
  await sleep(1000);
  const s = await status(inst);
  expect(s.actions.launches).toBe(0);
  expect(s.last_decision?.reason).toMatch(/scale-up is off \(no scale_up_command\)/);
});

test("pause before the master's first start is recorded in state_dir: the master starts paused and launches nothing until resume", async () => {
  const cloud = await scope.tempDir("autoscaler-paused-cloud-");
  const runs = path.join(cloud, "runs.log");
  const inst = await makeInstallation(scope, [
    `master.listen=127.0.0.1:${await freePort()}`,
    `master.metrics_listen=127.0.0.1:${await freePort()}`,
    "master.interval=0.2",
    "scaling.min_nodes=1",
    `machine.scale_up_command=echo "COUNT=$COUNT" >> ${runs}`,
  ]);
  const paused = await inst.cli("pause");
  expect(paused.code, paused.stderr).toBe(0);
  expect(paused.stdout).toMatch(/no master is running: recorded in .*state\.json; the master starts paused/);
  expect(await fs.readdir(inst.stateDir)).toEqual(["state.json"]); // the control socket it held is gone
  expect((await fs.stat(path.join(inst.stateDir, "state.json"))).mode & 0o777).toBe(0o600);

  expect((await inst.cli("generate")).code).toBe(0);
  await startHaproxy(scope, inst);
  const master = startDaemon(scope, ["master", "--config", inst.ini]);
  await master.waitForLog(/master started/, 15_000);
  await waitFor("a few decisions", async () => ((await status(inst)).last_decision ? true : undefined), 10_000, 100);
  await sleep(1000);
  expect((await status(inst)).paused).toBe(true);
  expect(await fs.readFile(runs, "utf8").catch(() => "")).toBe("");

  // With the master running, resume goes through it, and min_nodes is kept at once.
  const resumed = await inst.cli("resume");
  expect(resumed.code, resumed.stderr).toBe(0);
  expect(resumed.stdout).toMatch(/automatic scaling is on again/);
  await waitFor("the min_nodes launch", async () => ((await fs.readFile(runs, "utf8").catch(() => "")).includes("COUNT=1") ? true : undefined), 10_000, 100);
});
