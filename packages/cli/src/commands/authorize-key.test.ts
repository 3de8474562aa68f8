import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Io } from "../io.js";
import { run } from "../run.js";
import { parsePublicKey, SSHD_CONFIG_HEADER } from "./authorize-key.js";

let dir: string;
let pub: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "authorize-key-test-"));
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "node@web-1", "-f", path.join(dir, "k")]);
  pub = await fs.readFile(path.join(dir, "k.pub"), "utf8");
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

test("a real ssh-keygen public key is read with its type, key and comment", () => {
  const k = parsePublicKey(pub, "k.pub");
  expect(k.type).toBe("ssh-ed25519");
  expect(pub).toContain(k.base64);
  expect(k.comment).toBe("node@web-1");
});

test("a comment with characters that could become authorized_keys options is cleaned", () => {
  const [type, b64] = pub.trim().split(" ");
  const k = parsePublicKey(`${type} ${b64} x",command="/bin/sh`, "k.pub");
  expect(k.comment).not.toMatch(/["=,/ ]/);
});

test.each([
  ["an empty file", "", /holds no key/],
  [
    "a private key",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    /k\.pub is a private key; expected the node's public key .* The private key stays on the node/,
  ],
  ["two keys", "ssh-ed25519 AAAA a\nssh-ed25519 AAAA b\n", /holds 2 lines/],
  ["an authorized_keys line with options", 'command="/bin/sh" ssh-ed25519 AAAAC3Nza', /does not start with a public key type/],
  ["a type whose blob is another type", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIBcq", /not a ssh-rsa key/],
  ["no base64 after the type", "ssh-ed25519 !!!", /no base64/],
])("refuses %s with a message and exit 2", (_what, text, reason) => {
  try {
    parsePublicKey(text, "k.pub");
    expect.unreachable();
  } catch (err) {
    expect((err as Error).message).toMatch(reason);
    expect((err as { exitCode: number }).exitCode).toBe(2);
  }
});

describe("authorize-key's output", () => {
  /** Run `autoscaler authorize-key k.pub --config <ini with these lines> ...extra` and collect its output. */
  async function authorize(iniLines: string[], extra: string[] = []) {
    const sub = await fs.mkdtemp(path.join(dir, "run-"));
    const ini = path.join(sub, "autoscaler.ini");
    await fs.writeFile(ini, iniLines.join("\n") + "\n", { mode: 0o600 });
    let stdout = "";
    let stderr = "";
    const io: Io = {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env: { HOME: sub, PATH: process.env.PATH },
      cwd: sub,
    };
    const code = await run(["authorize-key", path.join(dir, "k.pub"), "--config", ini, ...extra], io);
    return { code, stdout, stderr };
  }
  const keyLine = (port: number) => `restrict,port-forwarding,permitopen="127.0.0.1:${port}",command="/bin/false" ${pub.trim()}`;
  const block = (user: string, port: number) =>
    [
      `Match User ${user}`,
      "    AllowTcpForwarding local",
      `    PermitOpen 127.0.0.1:${port}`,
      "    PermitListen none",
      "    AllowStreamLocalForwarding no",
      "    X11Forwarding no",
      "    AllowAgentForwarding no",
      "    PermitTTY no",
      "    ForceCommand /bin/false",
    ].join("\n");

  test.each([
    [
      "the user of ssh_command's USER@$HOST",
      ["[master]", "listen = 127.0.0.1:7300", "[haproxy]", "ssh_command = ssh -i node_key autoscaler@$HOST"],
      "autoscaler",
      7300,
    ],
    [
      "the user of ssh_command's -l and another port",
      ["[master]", "listen = 127.0.0.1:7411", "[haproxy]", "ssh_command = ssh -i node_key -l web_node $HOST"],
      "web_node",
      7411,
    ],
    ["ssh_user (the older form)", ["[master]", "listen = 127.0.0.1:9000", "[haproxy]", "ssh_user = node-1"], "node-1", 9000],
  ])("prints the key line, a blank line, the header and the whole Match block for %s", async (_what, ini, user, port) => {
    const out = await authorize(ini);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe(`${keyLine(port)}\n\n${SSHD_CONFIG_HEADER}\n${block(user, port)}\n`);
  });

  test.each([
    ["with a user", ["[master]", "listen = 127.0.0.1:7300", "[haproxy]", "ssh_command = ssh -i node_key autoscaler@$HOST"]],
    ["without any user", ["[master]", "listen = 127.0.0.1:7300"]],
    ["with a user unsafe for sshd_config", ["[master]", "listen = 127.0.0.1:7300", "[haproxy]", "ssh_user = Web*"]],
  ])("--line-only prints the key line alone, as before (%s)", async (_what, ini) => {
    const out = await authorize(ini, ["--line-only"]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe(`${keyLine(7300)}\n`);
  });

  test.each([
    ["an upper-case name", "ssh_user = Autoscaler", /"Autoscaler".*not safe to print into sshd_config.*\[a-z_\]\[a-z0-9_-\]\{0,31\}/],
    ["a Match pattern", "ssh_user = node*", /"node\*".*not safe/],
    ["a list that would match two users", "ssh_command = ssh -l 'a,root' $HOST", /"a,root".*not safe/],
    ["a space that would add a Match criterion", 'ssh_command = ssh -i k "a Address 0.0.0.0/0"@$HOST', /not safe/],
    ["a name of 33 characters", `ssh_user = ${"a".repeat(33)}`, /not safe/],
    ["no user at all", "", /no node user.*ssh_command.*--line-only/],
  ])("refuses %s with exit 2 and prints nothing on stdout", async (_what, setting, reason) => {
    const out = await authorize(["[master]", "listen = 127.0.0.1:7300", "[haproxy]", setting]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(reason);
    expect(out.stdout).toBe("");
  });
});
