/**
 * SPEC "Input that must be refused", for hosts and config: each refusal gives a clear message and
 * a non-zero exit, and every file of the installation folder (ini, hosts.d, template,
 * haproxy.cfg) is byte-for-byte what it was.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { Scope, snapshotDir, startBackend } from "./helpers/process.js";
import { makeInstallation, serverLines, startHaproxy, type Installation } from "./helpers/haproxy.js";
import { getOnce } from "./helpers/load.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** An installation with one backend ("existing", 127.0.0.1:8080) and a generated haproxy.cfg. */
async function installationWithOneHost(): Promise<Installation> {
  const inst = await makeInstallation(scope);
  const r = await inst.cli("add-host", "127.0.0.1", "8080", "--name", "existing", "--no-reload");
  expect(r.code, r.stderr).toBe(0);
  expect(serverLines(await fs.readFile(inst.haproxyConfig, "utf8"))).toEqual(["server existing 127.0.0.1:8080 check"]);
  return inst;
}

/** Run the CLI and check it refused: the exit code, the message, and no file changed. */
async function expectRefused(inst: Installation, args: string[], exitCode: number, message: RegExp): Promise<void> {
  const before = await snapshotDir(inst.dir);
  const r = await inst.cli(...args);
  expect(r.code, r.stdout + r.stderr).toBe(exitCode);
  expect(r.stderr).toMatch(message);
  expect(r.stdout).not.toMatch(/^added /m);
  expect(await snapshotDir(inst.dir)).toEqual(before);
}

describe("add-host refuses bad input", () => {
  test.each([
    ["a host with a newline", ["10.0.0.5\nserver evil 10.6.6.6:80", "8080"], /host "10\.0\.0\.5\\nserver evil 10\.6\.6\.6:80" contains white space/],
    ["a host with a space", ["web 1.example.com", "8080"], /host "web 1\.example\.com" contains white space/],
    ["a host with ../", ["../etc/passwd", "8080"], /host "\.\.\/etc\/passwd" contains a path separator/],
    ["port 0", ["10.0.0.5", "0"], /port "0" is outside 1-65535/],
    ["port 65536", ["10.0.0.5", "65536"], /port "65536" is outside 1-65535/],
    ["port abc", ["10.0.0.5", "abc"], /port "abc" is not a port number/],
    ["a name with /", ["10.0.0.5", "8080", "--name", "web/1"], /--name "web\/1" is not a valid name; expected 1-63 characters/],
    ["a name of 64 characters", ["10.0.0.5", "8080", "--name", "w".repeat(64)], /--name "w{64}" is not a valid name; expected 1-63 characters/],
    ["an IPv4 address with a part over 255", ["10.0.0.256", "8080"], /host "10\.0\.0\.256" is not a valid IPv4 address/],
  ])("%s: exit 2, nothing written", async (_what, args, message) => {
    const inst = await installationWithOneHost();
    await expectRefused(inst, ["add-host", ...args], 2, message);
  });

  test("a duplicate name: exit 1, nothing written", async () => {
    const inst = await installationWithOneHost();
    await expectRefused(inst, ["add-host", "10.0.0.5", "9090", "--name", "existing"], 1, /a backend named "existing" is already in .*hosts\.d/);
  });

  test("a duplicate host:port under another name: exit 1, nothing written", async () => {
    const inst = await installationWithOneHost();
    await expectRefused(inst, ["add-host", "127.0.0.1", "8080", "--name", "other"], 1, /127\.0\.0\.1:8080 is already in hosts\.d as "existing"/);
  });
});

test("remove-host of an unknown name exits 1 and changes nothing", async () => {
  const inst = await installationWithOneHost();
  await expectRefused(inst, ["remove-host", "nosuch"], 1, /no backend named or at "nosuch"/);
});

describe("a config that breaks a rule is refused with exit 78", () => {
  /** Replace `key = …` in the installation's ini (keeping the file's mode). */
  async function setIni(inst: Installation, key: string, value: string): Promise<void> {
    const text = await fs.readFile(inst.ini, "utf8");
    const edited = text.replace(new RegExp(`^${key} = .*$`, "m"), `${key} = ${value}`);
    expect(edited).not.toBe(text);
    await fs.writeFile(inst.ini, edited);
  }

  test.each([
    [
      "min_nodes > max_nodes",
      [
        ["min_nodes", "5"],
        ["max_nodes", "2"],
      ],
      /scaling\.min_nodes: 5 is greater than scaling\.max_nodes \(2\)/,
    ],
    [
      "scale_down_threshold = scale_up_threshold",
      [
        ["scale_down_threshold", "70"],
        ["scale_up_threshold", "70"],
      ],
      /scaling\.scale_down_threshold: 70 is not below scaling\.scale_up_threshold \(70\)/,
    ],
    [
      "scale_down_threshold > scale_up_threshold",
      [
        ["scale_down_threshold", "80"],
        ["scale_up_threshold", "60"],
      ],
      /scaling\.scale_down_threshold: 80 is not below scaling\.scale_up_threshold \(60\)/,
    ],
    ["a negative window", [["window", "-5"]], /scaling\.window: "-5" is not valid; expected a duration greater than 0/],
    ["a non-loopback master listen", [["listen", "0.0.0.0:7300"]], /master\.listen.*0\.0\.0\.0:7300.*loopback/],
    ["a master listen on a LAN address", [["listen", "10.0.0.1:7300"]], /master\.listen.*10\.0\.0\.1:7300.*loopback/],
  ] as const)("%s: add-host, generate and master exit 78 and write nothing", async (_what, edits, message) => {
    const inst = await installationWithOneHost();
    for (const [key, value] of edits) await setIni(inst, key, value);
    await expectRefused(inst, ["add-host", "10.0.0.9", "8080", "--name", "new"], 78, message);
    await expectRefused(inst, ["generate"], 78, message);
    await expectRefused(inst, ["master"], 78, message);
  });
});

test("an IPv6 host is accepted: written to hosts.d, rendered, checked and served by HAProxy", async () => {
  const inst = await installationWithOneHost();
  await fs.rm(path.join(inst.dir, "hosts.d", "existing.json"));
  const v6 = await startBackend(scope, "V6", "::1");

  const r = await inst.cli("add-host", "::1", String(v6.port), "--name", "v6", "--no-reload");

  expect(r.code, r.stderr).toBe(0);
  const entry = JSON.parse(await fs.readFile(path.join(inst.dir, "hosts.d", "v6.json"), "utf8"));
  expect(entry).toMatchObject({ name: "v6", address: "::1", port: v6.port, source: "manual" });
  const lines = serverLines(await fs.readFile(inst.haproxyConfig, "utf8"));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^server v6 (\\[::1\\]|::1):${v6.port} check$`));
  await startHaproxy(scope, inst);
  expect((await getOnce(inst.frontendPort)).body).toBe("V6");
  expect(v6.hits()).toBe(1);
});
