import { describe, expect, test } from "vitest";
import { launchCredential, nodeCredential } from "@autoscaler/shared";
import { admit, createNameRate, type AdmissionContext } from "./admission.js";

const SECRET = "s3cret-cluster-token-0123456789abcdef";
const NOW = 1_800_000_000_000;
const join = launchCredential(SECRET, { launchId: "launch-x-1", count: 2, expiresAt: NOW + 600_000 });

/** A hello for a new name with room to spare, overridden per case. */
const ctx = (over: Partial<AdmissionContext>): AdmissionContext => ({
  secret: SECRET,
  allowShared: true,
  now: NOW,
  name: "web-9",
  token: nodeCredential(SECRET, "web-9"),
  addressProblem: undefined,
  terminated: undefined,
  known: undefined,
  exists: false,
  launchNamesUsed: () => 0,
  registered: 3,
  limit: 12,
  takeNewName: () => true,
  ...over,
});

describe("admit", () => {
  test.each<[string, string, Partial<AdmissionContext>]>([
    ["a wrong token", "token", { token: "wrong" }],
    ["another node's credential", "credential_name", { token: nodeCredential(SECRET, "web-1") }],
    ["an expired join credential", "credential_expired", { token: join, now: NOW + 700_000 }],
    ["the cluster secret with shared_token = refuse", "shared_token", { token: SECRET, allowShared: false }],
    ["an address outside node_networks", "address", { addressProblem: "is loopback" }],
    ["a node this master terminated", "terminated", { terminated: "instance i-1 was terminated" }],
    ["a join credential for a name in the book", "name_owned", { token: join, known: { kind: "node", at: 1 } }],
    ["a join credential for a name in hosts.d or the registry", "name_owned", { token: join, exists: true }],
    ["a join credential past its count", "launch_full", { token: join, launchNamesUsed: () => 2 }],
    ["a new name with no room", "too_many_nodes", { registered: 12 }],
    ["a new name over the rate", "rate_limited", { takeNewName: () => false }],
  ])("%s is refused (%s)", (_what, reason, over) => {
    const verdict = admit(ctx(over));
    expect(verdict).toMatchObject({ ok: false, reason });
    // Fixed messages: nothing the node sent comes back.
    if (!verdict.ok) expect(verdict.message).not.toContain("web-9");
  });

  test.each<[string, Partial<AdmissionContext>, object]>([
    ["its own node credential, for a name never seen", {}, { kind: "node", issueCredential: false, fresh: true }],
    [
      "its own node credential, after forget_after or a restart (known, and not in hosts.d)",
      { known: { kind: "launch", launch: "l", at: 1 } },
      { kind: "node", fresh: false },
    ],
    ["the cluster secret (weaker mode): a node credential is issued", { token: SECRET }, { kind: "shared", issueCredential: true }],
    ["a join credential for a new name", { token: join, launchNamesUsed: () => 1 }, { kind: "launch", launchId: "launch-x-1", issueCredential: true }],
    [
      "a join credential again for the name it registered",
      { token: join, known: { kind: "launch", launch: "launch-x-1", at: 1 }, exists: true, launchNamesUsed: () => 2 },
      { kind: "launch" },
    ],
    ["a known name with no room left (a reconnect is never refused for room)", { exists: true, registered: 12, takeNewName: () => false }, { kind: "node" }],
  ])("%s is admitted", (_what, over, expected) => {
    expect(admit(ctx(over))).toMatchObject({ ok: true, ...expected });
  });
});

describe("createNameRate", () => {
  test("a burst of perMinute, then one more per 60/perMinute s", () => {
    const take = createNameRate(() => 10);
    const burst = Array.from({ length: 12 }, () => take(NOW));
    expect(burst.filter(Boolean)).toHaveLength(10);
    expect(take(NOW + 5_000)).toBe(false);
    expect(take(NOW + 7_000)).toBe(true);
    expect(take(NOW + 7_001)).toBe(false);
  });
});
