import { describe, expect, test } from "vitest";
import { checkCredential, launchCredential, nodeCredential, secretsEqual } from "./credentials.js";

const SECRET = "s3cret-cluster-token-0123456789abcdef";
const NOW = 1_800_000_000_000;

describe("secretsEqual", () => {
  test.each([
    ["the same token", "s3cret-token-0123456789", "s3cret-token-0123456789", true],
    ["a different token of the same length", "s3cret-token-0123456780", "s3cret-token-0123456789", false],
    ["a prefix of the token", "s3cret", "s3cret-token-0123456789", false],
    ["an empty token against an empty expected token", "", "", false],
    ["any token when none is configured", "anything", "", false],
  ])("%s", (_what, given, expected, result) => {
    expect(secretsEqual(given, expected)).toBe(result);
  });
});

describe("checkCredential", () => {
  const web1 = nodeCredential(SECRET, "web-1");
  const join = launchCredential(SECRET, { launchId: "launch-abc-1", count: 2, expiresAt: NOW + 600_000 });

  test("a node credential speaks for its own name, and for no other (a fixed code, not the name)", () => {
    expect(web1).toMatch(/^asc1\.node\.web-1\.[A-Za-z0-9_-]{43}$/);
    expect(checkCredential(web1, SECRET, "web-1", NOW, false)).toEqual({ ok: true, kind: "node", name: "web-1" });
    expect(checkCredential(web1, SECRET, "web-2", NOW, false)).toEqual({ ok: false, code: "CREDENTIAL_NAME" });
  });

  test("names with dots keep their whole name", () => {
    const c = nodeCredential(SECRET, "ip-10-0-0-5.ec2.internal");
    expect(checkCredential(c, SECRET, "ip-10-0-0-5.ec2.internal", NOW, false)).toMatchObject({ ok: true, kind: "node" });
    expect(checkCredential(c, SECRET, "ip-10-0-0-5", NOW, false)).toEqual({ ok: false, code: "CREDENTIAL_NAME" });
  });

  test("a credential made under another secret, or edited in any part, is a plain TOKEN refusal", () => {
    expect(checkCredential(nodeCredential("another-secret-0123456789", "web-1"), SECRET, "web-1", NOW, false)).toEqual({ ok: false, code: "TOKEN" });
    expect(checkCredential(web1.replace("web-1", "web-2"), SECRET, "web-2", NOW, false)).toEqual({ ok: false, code: "TOKEN" });
    expect(checkCredential(join.replace(".2.", ".9."), SECRET, "c", NOW, false)).toEqual({ ok: false, code: "TOKEN" });
    const last = web1.at(-1) === "A" ? "B" : "A";
    expect(checkCredential(web1.slice(0, -1) + last, SECRET, "web-1", NOW, false)).toEqual({ ok: false, code: "TOKEN" });
  });

  test("a launch's join credential carries its launch and count, and expires", () => {
    expect(checkCredential(join, SECRET, "any-name", NOW, false)).toEqual({
      ok: true,
      kind: "launch",
      launchId: "launch-abc-1",
      count: 2,
      expiresAt: NOW + 600_000,
    });
    expect(checkCredential(join, SECRET, "any-name", NOW + 601_000, false)).toEqual({ ok: false, code: "CREDENTIAL_EXPIRED" });
  });

  test("the cluster secret itself is the shared kind, or refused when shared_token = refuse", () => {
    expect(checkCredential(SECRET, SECRET, "web-1", NOW, true)).toEqual({ ok: true, kind: "shared" });
    expect(checkCredential(SECRET, SECRET, "web-1", NOW, false)).toEqual({ ok: false, code: "SHARED_REFUSED" });
  });

  test("with no cluster secret nothing is accepted, and nothing can be issued", () => {
    expect(checkCredential("", "", "web-1", NOW, true)).toEqual({ ok: false, code: "TOKEN" });
    expect(checkCredential(web1, "", "web-1", NOW, true)).toEqual({ ok: false, code: "TOKEN" });
    expect(() => nodeCredential("", "web-1")).toThrow(/token is empty/);
  });
});
