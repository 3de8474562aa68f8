/**
 * README "Setting up a proxy's sshd for nodes": a node key, authorised with the line
 * `autoscaler authorize-key` prints and behind the README's `Match User` block, can open a
 * channel to 127.0.0.1:<master port> and nothing else: no other port, not `localhost`, no
 * command, no remote or local forward elsewhere. Checked with the real OpenSSH client against
 * a real sshd; the positive control says hello through the same key and reads `welcome`.
 */
import { existsSync, promises as fs } from "node:fs";
import { randomBytes } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { startProxy, type Proxy } from "./helpers/cluster.js";
import { canConnect } from "./helpers/haproxy.js";
import { forgedHello, runSsh, sshBaseArgs, sshDestination, startCountingServer } from "./helpers/hostile.js";
import { freePort, runCli, runProcess, Scope, waitFor } from "./helpers/process.js";
import { makeKeyPair, startSshd, TEST_SSH_USER, type KeyPair } from "./helpers/sshd.js";

// One proxy for the whole file (its startup dominates); each test's own processes and servers go in `scope`.
const shared = new Scope();
const scope = new Scope();
const strayFiles: string[] = [];
afterEach(async () => {
  await scope.cleanup();
  await Promise.all(strayFiles.splice(0).map((f) => fs.rm(f, { force: true })));
});
afterAll(() => shared.cleanup());

interface Setup {
  proxy: Proxy;
  key: KeyPair;
  knownHosts: string;
  base: string[];
}

/** A proxy, a node key authorised on it with `authorize-key`, and a known_hosts file holding the sshd's key. */
async function setup(): Promise<Setup> {
  const proxy = await startProxy(shared);
  const dir = await shared.tempDir("autoscaler-sshclient-");
  const key = makeKeyPair(dir, "node_key");
  const line = await runCli(["authorize-key", "--line-only", key.publicFile, "--config", proxy.inst.ini]);
  expect(line.code, line.stderr).toBe(0);
  expect(line.stdout).toContain(`permitopen="127.0.0.1:${proxy.masterPort}"`);
  await fs.appendFile(proxy.sshd.authorizedKeysFile, line.stdout);
  const knownHosts = path.join(dir, "known_hosts");
  await fs.writeFile(knownHosts, proxy.sshd.knownHostsLine + "\n");
  return { proxy, key, knownHosts, base: sshBaseArgs(proxy.sshd, key.privateFile, knownHosts) };
}

/** A hello as a real agent sends it. */
const hello = (token: string, name: string, port: number) => forgedHello({ token, name, port, instance_id: `i-${name}` });

describe("a node key on the proxy's sshd", () => {
  let s: Setup;
  let sshdLogBefore = 0;
  beforeAll(async () => {
    s = await setup();
  });
  beforeEach(() => {
    sshdLogBefore = s.proxy.sshd.log().length;
  });
  /** The key really logged in during this test, so a refusal is the restriction, not a failed login. */
  const expectLoggedIn = () =>
    waitFor("sshd to log this test's key login", () => /Accepted publickey for autoscaler-test/.test(s.proxy.sshd.log().slice(sshdLogBefore)), 5_000);

  test("can open 127.0.0.1:<master port> (positive control): says hello with the token and reads welcome", async () => {
    const r = await runSsh(scope, [...s.base, "-W", `127.0.0.1:${s.proxy.masterPort}`, sshDestination(s.proxy.sshd)], {
      input: hello(s.proxy.token, "ssh-probe", 8080),
      closeInputWhen: /"type":"welcome"/,
      timeoutMs: 20_000,
    });
    expect(r.timedOut, r.stderr).toBe(false);
    expect(r.stdout).toMatch(/^\{"type":"welcome","version":1,"role":"decider"/m);
    await s.proxy.master.waitForLog(/"msg":"agent registered".*"node":"ssh-probe"/);
    await expectLoggedIn();
  });

  test("the Match block authorize-key prints, appended to this sshd's config, passes sshd -t and takes effect for the node user", async () => {
    const dir = await scope.tempDir("autoscaler-matchblock-");
    const ini = path.join(dir, "autoscaler.ini");
    const iniText = `[master]\nlisten = 127.0.0.1:${s.proxy.masterPort}\n[haproxy]\nssh_command = ssh -i node_key ${TEST_SSH_USER}@$HOST\n`;
    await fs.writeFile(ini, iniText, { mode: 0o600 });
    const out = await runCli(["authorize-key", s.key.publicFile, "--config", ini]);
    expect(out.code, out.stderr).toBe(0);
    const [, block] = out.stdout.split(/^# sshd_config .*\n/m);
    expect(block).toMatch(new RegExp(`^Match User ${TEST_SSH_USER}\n`));
    // The helper's sshd_config sits next to its authorized_keys.
    const base = await fs.readFile(path.join(path.dirname(s.proxy.sshd.authorizedKeysFile), "sshd_config"), "utf8");
    const config = path.join(dir, "sshd_config");
    await fs.writeFile(config, `${base}\n${block}`);
    const check = await runProcess("/usr/sbin/sshd", ["-t", "-f", config]);
    expect(check.code, check.stderr).toBe(0);
    // The settings the helper's block does not set come from the printed one.
    const effective = await runProcess("/usr/sbin/sshd", ["-T", "-f", config, "-C", `user=${TEST_SSH_USER},host=node,addr=127.0.0.1`]);
    expect(effective.code, effective.stderr).toBe(0);
    expect(effective.stdout).toMatch(/^permitlisten none$/m);
    expect(effective.stdout).toMatch(/^allowstreamlocalforwarding no$/m);
    expect(effective.stdout).toMatch(new RegExp(`^permitopen 127\\.0\\.0\\.1:${s.proxy.masterPort}$`, "m"));
  });

  test("cannot open another listening port on 127.0.0.1; that port's server sees no connection", async () => {
    const other = await startCountingServer(scope);
    const r = await runSsh(scope, [...s.base, "-W", `127.0.0.1:${other.port}`, sshDestination(s.proxy.sshd)], { timeoutMs: 20_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/administratively prohibited|open failed/);
    await expectLoggedIn();
    expect(other.connections()).toBe(0);
  });

  test("cannot open the master's port by the name localhost instead of 127.0.0.1", async () => {
    const before = s.proxy.master.log();
    const r = await runSsh(scope, [...s.base, "-W", `localhost:${s.proxy.masterPort}`, sshDestination(s.proxy.sshd)], {
      input: hello(s.proxy.token, "via-localhost", 8080),
      timeoutMs: 20_000,
    });
    expect(r.timedOut).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/administratively prohibited|open failed/);
    expect(r.stdout).toBe("");
    await expectLoggedIn();
    expect(s.proxy.master.log().slice(before.length)).not.toContain("via-localhost");
    expect((await s.proxy.status()).nodes.map((n) => n.name)).not.toContain("via-localhost");
  });

  test("cannot run a command: it exits non-zero and the command's file is never made", async () => {
    const file = `/tmp/autoscaler-ssh-restrict-${process.pid}-${randomBytes(6).toString("hex")}`;
    strayFiles.push(file);
    const r = await runSsh(scope, [...s.base, sshDestination(s.proxy.sshd), `touch ${file}`], { timeoutMs: 20_000 });
    expect(r.timedOut).toBe(false);
    // 1: the login worked and the forced command (/bin/false, run by the nologin shell) answered; 255 would be a failed login.
    expect(r.code, r.stderr).toBe(1);
    await expectLoggedIn();
    expect(existsSync(file)).toBe(false);
    // No terminal either (PermitTTY no), and still no command.
    const t = await runSsh(scope, [...s.base, "-tt", sshDestination(s.proxy.sshd), `touch ${file}`], { timeoutMs: 20_000 });
    expect(t.timedOut).toBe(false);
    expect(t.code).not.toBe(0);
    expect(t.stderr).toMatch(/PTY allocation request failed/);
    expect(existsSync(file)).toBe(false);
  });

  test("cannot set up a remote forward (-R): ssh reports the refusal and nothing listens on the asked port", async () => {
    const other = await startCountingServer(scope);
    const remotePort = await freePort();
    const r = await runSsh(
      scope,
      [...s.base, "-N", "-o", "ExitOnForwardFailure=yes", "-R", `127.0.0.1:${remotePort}:127.0.0.1:${other.port}`, sshDestination(s.proxy.sshd)],
      { timeoutMs: 20_000 },
    );
    expect(r.timedOut).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/remote port forwarding failed/i);
    await expectLoggedIn();
    expect(await canConnect(remotePort)).toBe(false);
    expect(other.connections()).toBe(0);
  });

  test("a local forward (-L) to another port is refused when used: the connection through it closes and the port sees nothing", async () => {
    const other = await startCountingServer(scope);
    const localPort = await freePort();
    // A long-running ssh -N -L; stopped by its pid once it reports the refused channel (or by the kill timer / cleanup).
    const run = runSsh(scope, [...s.base, "-N", "-L", `127.0.0.1:${localPort}:127.0.0.1:${other.port}`, sshDestination(s.proxy.sshd)], {
      stopWhenStderr: /open failed/,
      timeoutMs: 30_000,
    });
    await waitFor("ssh -L to listen locally", () => canConnect(localPort), 15_000, 50);
    const through = await new Promise<{ data: string; closed: boolean }>((resolve) => {
      let data = "";
      const c = net.createConnection({ host: "127.0.0.1", port: localPort });
      const t = setTimeout(() => {
        c.destroy();
        resolve({ data, closed: false });
      }, 10_000);
      c.on("data", (b: Buffer) => (data += b.toString()));
      c.on("error", () => undefined);
      c.on("close", () => {
        clearTimeout(t);
        resolve({ data, closed: true });
      });
    });
    expect(through).toEqual({ data: "", closed: true });
    const r = await run;
    expect(r.timedOut, r.stderr).toBe(false);
    expect(r.stderr).toMatch(/administratively prohibited/);
    expect(other.connections()).toBe(0);
  });
});

describe("check-config --sshd: what sshd -T applies to the node user, against the block authorize-key prints", () => {
  const SETTINGS = [
    "allowtcpforwarding",
    "permitopen",
    "permitlisten",
    "allowstreamlocalforwarding",
    "x11forwarding",
    "allowagentforwarding",
    "permittty",
    "forcecommand",
  ];
  let dir: string;
  let ini: string;
  let masterPort: number;
  /** The helper's sshd_config: the README's settings for nodes but PermitListen and AllowStreamLocalForwarding. */
  let base: string;
  /** The Match block `authorize-key` prints for this ini. */
  let block: string;
  beforeAll(async () => {
    masterPort = await freePort();
    const sshd = await startSshd(shared, { masterPort });
    // The helper's sshd_config sits next to its authorized_keys.
    base = await fs.readFile(path.join(path.dirname(sshd.authorizedKeysFile), "sshd_config"), "utf8");
    dir = await shared.tempDir("autoscaler-checksshd-");
    ini = path.join(dir, "autoscaler.ini");
    await fs.writeFile(ini, `[master]\nlisten = 127.0.0.1:${masterPort}\n[haproxy]\nssh_command = ssh -i node_key ${TEST_SSH_USER}@$HOST\n`, { mode: 0o600 });
    const key = makeKeyPair(dir, "node_key");
    const out = await runCli(["authorize-key", key.publicFile, "--config", ini]);
    expect(out.code, out.stderr).toBe(0);
    block = out.stdout.split(/^# sshd_config .*\n/m)[1]!;
    expect(block).toMatch(new RegExp(`^Match User ${TEST_SSH_USER}\n[^]*PermitListen none\n`));
  });

  /** An sshd_config with this text, checked by sshd -t first so a failure below is the check's, not a broken file. */
  async function sshdConfig(text: string): Promise<string> {
    const file = path.join(await scope.tempDir("autoscaler-checksshd-conf-"), "sshd_config");
    await fs.writeFile(file, text);
    const t = await runProcess("/usr/sbin/sshd", ["-t", "-f", file]);
    expect(t.code, t.stderr).toBe(0);
    return file;
  }
  const checkSshd = (file: string, extra: string[] = []) => runCli(["check-config", "--sshd", "--sshd-config", file, "--config", ini, ...extra]);
  /** The settings a text output marks WRONG, in its order. */
  const wrongIn = (stdout: string) => [...stdout.matchAll(/^WRONG +(\S+) /gm)].map((m) => m[1]);

  test("the base config plus the printed block: exit 0, every setting ok with sshd's value", async () => {
    const file = await sshdConfig(`${base}\n${block}`);
    const r = await checkSshd(file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`-T -f ${file} -C user=${TEST_SSH_USER},host=node,addr=127.0.0.1`);
    for (const setting of SETTINGS) expect(r.stdout).toMatch(new RegExp(`^ok +${setting} +expected \\S+ +sshd: \\S+$`, "m"));
    expect(r.stdout).toMatch(new RegExp(`^ok +permitopen +expected 127\\.0\\.0\\.1:${masterPort} +sshd: 127\\.0\\.0\\.1:${masterPort}$`, "m"));
    expect(wrongIn(r.stdout)).toEqual([]);
    expect(r.stdout).toMatch(/all 8 settings .* in effect/);

    const j = await checkSshd(file, ["--json"]);
    expect(j.code, j.stderr).toBe(0);
    const result = JSON.parse(j.stdout) as { ok: boolean; sshd: { user: string; settings: { setting: string; ok: boolean }[]; wrong: string[] } };
    expect(result.ok).toBe(true);
    expect(result.sshd.user).toBe(TEST_SSH_USER);
    expect(result.sshd.settings.map((c) => [c.setting, c.ok])).toEqual(SETTINGS.map((x) => [x, true]));
    expect(result.sshd.wrong).toEqual([]);
  });

  test("the base config alone (no printed block): exit 1 naming permitlisten and allowstreamlocalforwarding, and the fix", async () => {
    const file = await sshdConfig(base);
    const r = await checkSshd(file);
    expect(r.code, r.stderr).toBe(1);
    expect(wrongIn(r.stdout)).toEqual(["permitlisten", "allowstreamlocalforwarding"]);
    expect(r.stdout).toMatch(/^WRONG +permitlisten +expected none +sshd: any$/m);
    expect(r.stdout).toMatch(/^WRONG +allowstreamlocalforwarding +expected no +sshd: yes$/m);
    expect(r.stderr).toMatch(/permitlisten \(expected none, sshd: any\), allowstreamlocalforwarding \(expected no, sshd: yes\)/);
    expect(r.stderr).toContain("autoscaler authorize-key");
    expect(r.stderr).toContain("sshd -t && systemctl reload ssh");

    const j = await checkSshd(file, ["--json"]);
    expect(j.code).toBe(1);
    expect((JSON.parse(j.stdout) as { ok: boolean; sshd: { wrong: string[] } }).sshd.wrong).toEqual(["permitlisten", "allowstreamlocalforwarding"]);
  });

  test("the printed block without its PermitListen line: exit 1 naming exactly permitlisten", async () => {
    const partial = block.replace(/^ *PermitListen none\n/m, "");
    expect(partial).not.toBe(block);
    const r = await checkSshd(await sshdConfig(`${base}\n${partial}`));
    expect(r.code, r.stderr).toBe(1);
    expect(wrongIn(r.stdout)).toEqual(["permitlisten"]);
    expect(r.stdout.match(/^ok /gm)).toHaveLength(7);
    expect(r.stderr).toMatch(/does not apply 1 of the 8 settings .*: permitlisten \(expected none, sshd: any\)$/m);
  });

  test("an --sshd-config that does not exist: exit 2 naming the file and sshd's own message, no stack trace", async () => {
    const missing = path.join(dir, "no-such-sshd_config");
    const r = await checkSshd(missing);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`sshd -T -f ${missing} -C`);
    expect(r.stderr).toContain(`${missing}: No such file or directory`);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
