/**
 * The shipped systemd units (`etc/systemd/`): `systemd-analyze verify` accepts both, and
 * `autoscaler install-service` prints or writes exactly their bytes. Units are written only
 * into temp folders (`--unit-dir`); nothing here touches /etc.
 */
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { REPO_ROOT, runCli, runProcess, Scope } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

const ROLES = ["agent", "master"] as const;
const shippedPath = (role: string) => path.join(REPO_ROOT, "etc", "systemd", `autoscaler-${role}.service`);
const shipped = (role: string) => fs.readFile(shippedPath(role));

/**
 * `systemd-analyze verify` on a copy of `text` named like the shipped unit. With
 * `--recursive-errors=no` any problem of this unit fails it (exit 1: an unknown key, a bad value,
 * a program that does not exist), while other units of this machine that it pulls in
 * (network-online.target …) cannot. It needs no running systemd.
 */
async function verify(role: string, text: string | Buffer) {
  const dir = await scope.tempDir("autoscaler-units-");
  const unit = path.join(dir, `autoscaler-${role}.service`);
  await fs.writeFile(unit, text);
  const r = await runProcess("systemd-analyze", ["verify", "--recursive-errors=no", unit], { cwd: dir });
  // Everything it said about this unit, by file path or unit name.
  const aboutUnit = `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => l.includes(`autoscaler-${role}.service`));
  return { ...r, aboutUnit };
}

describe("the shipped units", () => {
  test.each(ROLES)("systemd-analyze verify accepts autoscaler-%s.service and says nothing about it", async (role) => {
    const r = await verify(role, await shipped(role));
    expect(r.aboutUnit).toEqual([]);
    expect(r.code, r.stderr).toBe(0);
  });

  test("the check can fail: verify refuses a unit with a bad value or a program that does not exist", async () => {
    const text = (await shipped("master")).toString("utf8");
    const badValue = await verify("master", text.replace("ProtectSystem=strict", "ProtectSystem=stricter"));
    expect(badValue.code).not.toBe(0);
    expect(badValue.aboutUnit.join("\n")).toMatch(/protect system value.*stricter/i);
    const noProgram = await verify("master", text.replace(/^ExecStart=.*$/m, "ExecStart=/nonexistent/autoscaler master"));
    expect(noProgram.code).not.toBe(0);
    expect(noProgram.aboutUnit.join("\n")).toMatch(/\/nonexistent\/autoscaler is not executable/);
  });

  test.each(ROLES)("autoscaler-%s.service restarts on failure, starts after the network, runs in the foreground and is hardened", async (role) => {
    const text = (await shipped(role)).toString("utf8");
    const lines = text.split("\n");
    for (const line of [
      /^After=(.* )?network-online\.target( |$)/,
      /^Wants=network-online\.target$/,
      /^Restart=on-failure$/,
      /^Environment=AUTOSCALER_CONFIG=\/etc\/autoscaler\/autoscaler\.ini$/,
      new RegExp(`^ExecStart=/usr/bin/env autoscaler ${role}$`),
      /^NoNewPrivileges=yes$/,
      /^ProtectSystem=strict$/,
      /^PrivateTmp=yes$/,
      /^ProtectHome=yes$/,
      /^RestrictSUIDSGID=yes$/,
      /^UMask=0077$/,
    ]) {
      expect(
        lines.some((l) => line.test(l)),
        `${role}: ${line}`,
      ).toBe(true);
    }
    expect(lines.some((l) => l.startsWith("MemoryDenyWriteExecute="))).toBe(false); // V8's JIT needs W+X memory
    const writable = lines.filter((l) => l.startsWith("ReadWritePaths="));
    expect(writable).toEqual(role === "master" ? ["ReadWritePaths=-/etc/autoscaler/hosts.d -/etc/haproxy"] : []);
    // Both keep state in /var/lib/autoscaler: the master its state_dir, the agent its node credential.
    expect(lines).toContain("StateDirectory=autoscaler");
    expect(lines).toContain("StateDirectoryMode=0700");
  });
});

describe("autoscaler install-service", () => {
  test("master --dry-run prints exactly the shipped unit and writes nothing", async () => {
    const dir = await scope.tempDir("autoscaler-unitdir-");
    const system = "/etc/systemd/system/autoscaler-master.service";
    const before = existsSync(system) ? await fs.readFile(system) : undefined;
    const r = await runCli(["install-service", "master", "--dry-run", "--unit-dir", dir], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(Buffer.from(r.stdout, "utf8").equals(await shipped("master"))).toBe(true);
    expect(r.stderr).toBe("");
    expect(await fs.readdir(dir)).toEqual([]);
    expect(existsSync(system) ? await fs.readFile(system) : undefined).toEqual(before);
  });

  test("agent --unit-dir writes the shipped bytes with mode 0644 and prints the next steps; a changed file is refused unless --force", async () => {
    const dir = await scope.tempDir("autoscaler-unitdir-");
    const unit = path.join(dir, "autoscaler-agent.service");
    const first = await runCli(["install-service", "agent", "--unit-dir", dir]);
    expect(first.code, first.stderr).toBe(0);
    expect((await fs.readFile(unit)).equals(await shipped("agent"))).toBe(true);
    expect((await fs.stat(unit)).mode & 0o777).toBe(0o644);
    expect(await fs.readdir(dir)).toEqual(["autoscaler-agent.service"]); // no temp file left behind
    expect(first.stdout).toContain(`wrote ${unit} (mode 0644)`);
    expect(first.stdout).toContain("systemctl daemon-reload");
    expect(first.stdout).toContain("systemctl enable --now autoscaler-agent");
    expect(first.stdout).toContain("useradd --system");
    expect(first.stdout).toContain("/etc/autoscaler/node_key");
    expect(first.stdout).toContain("known_hosts");

    // The same file again: nothing to do.
    const again = await runCli(["install-service", "agent", "--unit-dir", dir]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("already this unit; nothing was written");

    // A file changed by hand is kept, byte for byte.
    const edited = (await fs.readFile(unit, "utf8")).replace("RestartSec=5s", "RestartSec=1s");
    await fs.writeFile(unit, edited);
    const refused = await runCli(["install-service", "agent", "--unit-dir", dir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/exists and differs from the unit this would write; it was left as it was.*--force/);
    expect(refused.stdout).toBe("");
    expect(await fs.readFile(unit, "utf8")).toBe(edited);

    const forced = await runCli(["install-service", "agent", "--unit-dir", dir, "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain("replacing a different file");
    expect((await fs.readFile(unit)).equals(await shipped("agent"))).toBe(true);
    expect((await fs.stat(unit)).mode & 0o777).toBe(0o644);
  });

  test("with --config, the unit reads that ini (and the master may write its hosts.d); the rest is the shipped unit; a path systemd would misread, or one ProtectHome hides, is refused", async () => {
    const dir = await scope.tempDir("autoscaler-unitdir-");
    const ini = path.join(dir, "site", "autoscaler.ini");
    const r = await runCli(["install-service", "master", "--unit-dir", dir, "--config", ini]);
    expect(r.code, r.stderr).toBe(0);
    const written = await fs.readFile(path.join(dir, "autoscaler-master.service"), "utf8");
    const differs = (a: string, b: string) => a.split("\n").filter((l, i) => l !== b.split("\n")[i]);
    expect(differs(written, (await shipped("master")).toString("utf8"))).toEqual([
      `Environment=AUTOSCALER_CONFIG=${ini}`,
      `ReadWritePaths=-${path.join(dir, "site", "hosts.d")} -/etc/haproxy`,
    ]);
    expect(r.stdout).toContain("systemctl enable --now autoscaler-master");
    expect(r.stdout).toContain(`The unit reads ${ini}`);
    // The same for the agent, through AUTOSCALER_CONFIG, in --dry-run; and its next steps name that ini.
    const agent = await runCli(["install-service", "agent", "--dry-run"], { env: { AUTOSCALER_CONFIG: ini } });
    expect(agent.code, agent.stderr).toBe(0);
    expect(differs(agent.stdout, (await shipped("agent")).toString("utf8"))).toEqual([`Environment=AUTOSCALER_CONFIG=${ini}`]);
    for (const [bad, why] of [
      [path.join(dir, "my site.ini"), /cannot go into a systemd unit as it is; expected an absolute path of letters, digits/],
      [path.join(dir, "100%.ini"), /cannot go into a systemd unit as it is/],
      ["/root/autoscaler.ini", /is under \/root\/, which the unit hides from the service \(ProtectHome=yes\)/],
    ] as const) {
      const refused = await runCli(["install-service", "agent", "--unit-dir", dir, "--config", bad]);
      expect(refused.code, bad).toBe(2);
      expect(refused.stderr).toMatch(why);
    }
    expect(await fs.readdir(dir)).toEqual(["autoscaler-master.service"]); // the refusals wrote nothing
  });

  test("a bad or missing role is a usage error (exit 2), a missing unit folder a failure (exit 1); nothing is written", async () => {
    const dir = await scope.tempDir("autoscaler-unitdir-");
    const bad = await runCli(["install-service", "proxy", "--unit-dir", dir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Choices: "agent", "master"/);
    const missing = await runCli(["install-service", "--unit-dir", dir]);
    expect(missing.code).toBe(2);
    const noDir = await runCli(["install-service", "master", "--unit-dir", path.join(dir, "nope")]);
    expect(noDir.code).toBe(1);
    expect(noDir.stderr).toMatch(/does not exist.*nothing was written/);
    expect(await fs.readdir(dir)).toEqual([]);
  });
});
