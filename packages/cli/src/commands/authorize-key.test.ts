import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { parsePublicKey } from "./authorize-key.js";

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
    /holds 3 lines|does not start with a public key type/,
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
