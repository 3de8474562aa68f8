/**
 * Packaging: the tarball `npm pack` makes installs globally on its own (every workspace package
 * is bundled), and the installed command finds its shipped ini, template and systemd units.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { REPO_ROOT, runProcess, Scope } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

const npmQuiet = ["--no-audit", "--no-fund", "--loglevel=error"];

test("npm pack, npm install -g --prefix, then the installed autoscaler runs --help, init and install-service --dry-run", { timeout: 180_000 }, async () => {
  const packDir = await scope.tempDir("autoscaler-pack-");
  const prefix = await scope.tempDir("autoscaler-prefix-");
  const work = await scope.tempDir("autoscaler-work-");

  const pack = await runProcess("npm", ["pack", "--pack-destination", packDir, ...npmQuiet], { cwd: REPO_ROOT, timeoutMs: 120_000 });
  expect(pack.code, pack.stderr).toBe(0);
  const tarballs = (await fs.readdir(packDir)).filter((f) => f.endsWith(".tgz"));
  expect(tarballs).toHaveLength(1);

  // --offline: the tarball bundles every package it needs, so installing it needs no registry.
  const install = await runProcess("npm", ["install", "-g", "--offline", "--prefix", prefix, path.join(packDir, tarballs[0]!), ...npmQuiet], {
    cwd: work,
    timeoutMs: 120_000,
  });
  expect(install.code, install.stderr).toBe(0);
  const bin = path.join(prefix, "bin", "autoscaler");

  const help = await runProcess(bin, ["--help"], { cwd: work });
  expect(help.code, help.stderr).toBe(0);
  expect(help.stdout).toMatch(/autoscaler <command>/);
  expect(help.stdout).toMatch(/add-host/);

  const ini = path.join(work, "a.ini");
  const init = await runProcess(bin, ["init", "--config", ini], { cwd: work });
  expect(init.code, init.stderr).toBe(0);
  expect((await fs.stat(ini)).mode & 0o777).toBe(0o600);
  expect(await fs.readFile(path.join(work, "haproxy.cfg.tmpl"), "utf8")).toBe(await fs.readFile(path.join(REPO_ROOT, "etc", "haproxy.cfg.tmpl"), "utf8"));
  const shippedIni = await fs.readFile(path.join(REPO_ROOT, "etc", "autoscaler.ini"), "utf8");
  expect((await fs.readFile(ini, "utf8")).replace(/^token = .*$/m, "token =")).toBe(shippedIni);
  expect((await fs.stat(path.join(work, "hosts.d"))).isDirectory()).toBe(true);

  for (const role of ["agent", "master"]) {
    const unit = await runProcess(bin, ["install-service", role, "--dry-run"], { cwd: work });
    expect(unit.code, unit.stderr).toBe(0);
    expect(unit.stdout).toBe(await fs.readFile(path.join(REPO_ROOT, "etc", "systemd", `autoscaler-${role}.service`), "utf8"));
  }
});
