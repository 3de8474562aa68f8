import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { fingerprint, hostKeyAlgorithms, keyTypeOf, knownHostsName, parseKnownHosts, patternsMatch, verifyHostKey } from "./known-hosts.js";

let dir: string;
let keyA: { blob: Buffer; line: string; fp: string };
let keyB: { blob: Buffer; line: string };

/** A real ed25519 key pair made by ssh-keygen; returns the public blob, its .pub line, and ssh-keygen's fingerprint. */
function makeKey(name: string): { blob: Buffer; line: string; fp: string } {
  const file = path.join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file]);
  const pub = execFileSync("cat", [`${file}.pub`])
    .toString()
    .trim();
  const fp = execFileSync("ssh-keygen", ["-lf", `${file}.pub`])
    .toString()
    .split(" ")[1]!;
  return { blob: Buffer.from(pub.split(" ")[1]!, "base64"), line: pub.split(" ").slice(0, 2).join(" "), fp };
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "known-hosts-test-"));
  keyA = makeKey("a");
  keyB = makeKey("b");
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

test("fingerprint equals ssh-keygen's and the key type comes from the blob", () => {
  expect(fingerprint(keyA.blob)).toBe(keyA.fp);
  expect(keyTypeOf(keyA.blob)).toBe("ssh-ed25519");
});

test.each([
  ["proxy1", 22, "proxy1"],
  ["proxy1", 2222, "[proxy1]:2222"],
  ["127.0.0.1", 40022, "[127.0.0.1]:40022"],
])("knownHostsName(%s, %i) is %s", (host, port, name) => {
  expect(knownHostsName(host, port)).toBe(name);
});

describe("patternsMatch", () => {
  test.each([
    ["proxy1,proxy2", "proxy2", true],
    ["proxy*", "proxy9.example.com", true],
    ["proxy?", "proxy12", false],
    ["*.example.com,!bad.example.com", "bad.example.com", false],
    ["*.example.com,!bad.example.com", "good.example.com", true],
    ["[127.0.0.1]:2222", "[127.0.0.1]:2222", true],
    ["[127.0.0.1]:2222", "127.0.0.1", false],
  ])("%s against %s is %s", (patterns, name, expected) => {
    expect(patternsMatch(patterns, name)).toBe(expected);
  });
});

describe("verifyHostKey", () => {
  test("a plain [host]:port line with the same key is trusted", () => {
    const lines = parseKnownHosts(`# comment\n[127.0.0.1]:2222 ${keyA.line}\n`);
    expect(verifyHostKey(lines, "kh", "127.0.0.1", 2222, keyA.blob)).toEqual({ ok: true });
  });

  test("a line hashed by ssh-keygen -H is trusted", async () => {
    const file = path.join(dir, "hashed");
    await fs.writeFile(file, `[127.0.0.1]:2222 ${keyA.line}\n`);
    execFileSync("ssh-keygen", ["-q", "-H", "-f", file]);
    const text = await fs.readFile(file, "utf8");
    expect(text).toMatch(/^\|1\|/);
    expect(verifyHostKey(parseKnownHosts(text), file, "127.0.0.1", 2222, keyA.blob)).toEqual({ ok: true });
    expect(verifyHostKey(parseKnownHosts(text), file, "127.0.0.1", 2223, keyA.blob).ok).toBe(false);
  });

  test("a changed key is refused with the fingerprint, the line number and the fix", () => {
    const lines = parseKnownHosts(`\n[proxy]:2222 ${keyA.line}\n`);
    const v = verifyHostKey(lines, "/x/known_hosts", "proxy", 2222, keyB.blob);
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.reason).toBe("changed");
    expect(v.message).toContain(fingerprint(keyB.blob));
    expect(v.message).toContain("line 2");
    expect(v.message).toContain(`[proxy]:2222 ${keyB.line}`);
  });

  test("a key of another type than the one trusted is 'not in' the file, not 'CHANGED', and the client asks for the trusted type first", () => {
    const file = path.join(dir, "ecdsa_key");
    execFileSync("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", file]);
    const ecdsaLine = execFileSync("cat", [`${file}.pub`])
      .toString()
      .trim()
      .split(" ")
      .slice(0, 2)
      .join(" ");
    const lines = parseKnownHosts(`[proxy]:2222 ${ecdsaLine}\n`);
    const v = verifyHostKey(lines, "kh", "proxy", 2222, keyA.blob);
    expect(v).toMatchObject({ ok: false, reason: "unknown" });
    if (!v.ok) expect(v.message).toMatch(/trusts only a key of another type \(ecdsa-sha2-nistp256\)/);
    expect(hostKeyAlgorithms(lines, "proxy", 2222)[0]).toBe("ecdsa-sha2-nistp256");
    expect(hostKeyAlgorithms(lines, "proxy", 2222)).toHaveLength(7);
    expect(hostKeyAlgorithms(parseKnownHosts(`[proxy]:2222 ${keyA.line}\n`), "proxy", 2222)[0]).toBe("ssh-ed25519");
    expect(hostKeyAlgorithms([], "proxy", 2222)[0]).toBe("ssh-ed25519");
  });

  test("an unknown host is refused with the line that would trust it", () => {
    const v = verifyHostKey(parseKnownHosts(`other ${keyA.line}\n`), "kh", "proxy", 22, keyA.blob);
    expect(v).toMatchObject({ ok: false, reason: "unknown" });
    if (!v.ok) expect(v.message).toContain(`add this line to kh: proxy ${keyA.line}`);
  });

  test("a key marked @revoked is refused even when also listed as trusted", () => {
    const lines = parseKnownHosts(`proxy ${keyA.line}\n@revoked * ${keyA.line}\n`);
    expect(verifyHostKey(lines, "kh", "proxy", 22, keyA.blob)).toMatchObject({ ok: false, reason: "revoked" });
  });
});
