import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { parseConfig, type ApplyResult, type Logger } from "@autoscaler/shared";
import { createApplier } from "./applier.js";
import { createRegistry } from "./registry.js";
import { resolveRole, resolveRoleResolving } from "./role.js";
import { buildStatus, windowAverage } from "./status.js";

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

describe("resolveRole", () => {
  const config = (servers: string, role = "auto") =>
    parseConfig(`[master]\ntoken = ${"t".repeat(32)}\nrole = ${role}\n[haproxy]\nservers = ${servers}\n`, "/x/a.ini", { home: "/root" }).config!;
  test.each([
    ["the first of servers is this machine's address", "10.0.0.10, 10.0.0.11", "auto", "decider"],
    ["the first of servers is another machine", "10.0.0.11, 10.0.0.10", "auto", "follower"],
    ["the first of servers is this machine's host name, in another case", "Proxy-A:2222", "auto", "decider"],
    ["servers is empty", "", "auto", "decider"],
    ["role is set to follower on the first proxy", "10.0.0.10", "follower", "follower"],
    ["role is set to decider on another proxy", "10.0.0.11", "decider", "decider"],
  ])("%s → %s", (_what, servers, role, expected) => {
    const r = resolveRole(config(servers, role), new Set(["10.0.0.10", "proxy-a", "127.0.0.1"]));
    expect(r.role).toBe(expected);
    expect(r.why.length).toBeGreaterThan(10);
  });
});

describe("resolveRoleResolving", () => {
  const config = (servers: string, role = "auto") =>
    parseConfig(`[master]\ntoken = ${"t".repeat(32)}\nrole = ${role}\n[haproxy]\nservers = ${servers}\n`, "/x/a.ini", { home: "/root" }).config!;
  const me = new Set(["10.0.0.10", "proxy-a", "127.0.0.1"]);
  const lookup = async (host: string) => ({ "proxy.internal": ["10.0.0.10"], "other.internal": ["10.0.0.11"] })[host] ?? [];
  test.each([
    [
      "a DNS name that resolves to this machine decides, and says why",
      "proxy.internal, 10.0.0.11",
      "auto",
      "decider",
      /proxy\.internal.*resolves to 10\.0\.0\.10/,
    ],
    ["a DNS name that resolves elsewhere follows", "other.internal, 10.0.0.10", "auto", "follower", /not this machine/],
    ["a name that does not resolve follows", "nowhere.internal", "auto", "follower", /not this machine/],
    ["an explicit role is never second-guessed by DNS", "proxy.internal", "follower", "follower", /role = follower/],
  ])("%s", async (_what, servers, role, expected, why) => {
    const r = await resolveRoleResolving(config(servers, role), me, lookup);
    expect(r.role).toBe(expected);
    expect(r.why).toMatch(why);
  });
});

describe("the applier (fake timers)", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());
  const result: ApplyResult = {
    changed: true,
    checked: true,
    reloaded: true,
    confirmed: true,
    timings: { renderMs: 0, checkMs: 0, reloadMs: 0, confirmMs: 0, totalMs: 1 },
  };

  test("a burst of changes closer than the quiet period becomes one apply", async () => {
    const apply = vi.fn(async () => result);
    const a = createApplier({ quietMs: 100, ceilingMs: 800, retryMs: 5000, apply, logger: silent, now: () => 0 });
    for (let i = 0; i < 5; i++) {
      a.schedule(`change ${i}`);
      await vi.advanceTimersByTimeAsync(50);
    }
    expect(apply).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(100);
    expect(apply).toHaveBeenCalledTimes(1);
    expect(a.state.reloads).toBe(1);
  });

  test("changes that never pause still apply by the ceiling", async () => {
    const apply = vi.fn(async () => result);
    const a = createApplier({ quietMs: 100, ceilingMs: 800, retryMs: 5000, apply, logger: silent, now: () => 0 });
    for (let t = 0; t < 790; t += 50) {
      a.schedule("busy");
      await vi.advanceTimersByTimeAsync(50);
    }
    expect(apply).toHaveBeenCalledTimes(1);
  });

  test("a change during an apply triggers exactly one more apply after it", async () => {
    let release!: () => void;
    const apply = vi.fn(() => new Promise<ApplyResult>((r) => (release = () => r(result))));
    const a = createApplier({ quietMs: 10, ceilingMs: 100, retryMs: 5000, apply, logger: silent, now: () => 0 });
    a.schedule("first");
    await vi.advanceTimersByTimeAsync(10);
    expect(apply).toHaveBeenCalledTimes(1);
    a.schedule("during");
    a.schedule("during again");
    await vi.advanceTimersByTimeAsync(200);
    expect(apply).toHaveBeenCalledTimes(1); // never two at once
    release();
    await vi.advanceTimersByTimeAsync(0);
    expect(apply).toHaveBeenCalledTimes(2);
    release();
    await vi.advanceTimersByTimeAsync(500);
    expect(apply).toHaveBeenCalledTimes(2);
  });

  test("a failed apply is recorded and retried after retryMs", async () => {
    const err = Object.assign(new Error("HAProxy refused"), { code: "AUTOSCALER_HAPROXY_CHECK_FAILED", details: ["[ALERT] x"] });
    const apply = vi.fn().mockRejectedValueOnce(err).mockResolvedValue(result);
    const a = createApplier({ quietMs: 10, ceilingMs: 100, retryMs: 5000, apply, logger: silent, now: () => 42 });
    a.schedule("x");
    await vi.advanceTimersByTimeAsync(10);
    expect(a.state.checkFailures).toBe(1);
    expect(a.state.lastError).toMatchObject({ at: 42, code: "AUTOSCALER_HAPROXY_CHECK_FAILED", details: ["[ALERT] x"] });
    await vi.advanceTimersByTimeAsync(5010);
    expect(apply).toHaveBeenCalledTimes(2);
    expect(a.state.lastError).toBeUndefined();
  });
});

describe("status", () => {
  const hello = (name: string) => ({
    type: "hello" as const,
    version: 1,
    token: "t",
    name,
    address: "10.0.0.5",
    port: 80,
    agent_version: "0.1.0",
    facts: { cores: 2, memory_bytes: 1 },
  });

  test("windowAverage is the mean of the readings inside the window only", () => {
    const reg = createRegistry({ nodeTimeoutMs: 30_000, forgetAfterMs: 600_000, keepMs: 120_000, isManual: () => false });
    reg.register(hello("a"), 0, "node");
    reg.recordSample("a", { type: "sample", time: 0, cpu: 100 }, 1000);
    reg.recordSample("a", { type: "sample", time: 0, cpu: 20 }, 50_000);
    reg.recordSample("a", { type: "sample", time: 0, cpu: 40 }, 60_000);
    expect(windowAverage(reg.get("a")!, 61_000, 60_000)).toEqual({ mean: 30, count: 2 });
    expect(windowAverage(reg.get("a")!, 200_000, 60_000)).toEqual({ mean: null, count: 0 });
  });

  test("buildStatus lists live nodes and hand-added hosts, counts only live nodes as active, and never holds the token", () => {
    const reg = createRegistry({ nodeTimeoutMs: 30_000, forgetAfterMs: 600_000, keepMs: 120_000, isManual: () => false });
    reg.register({ ...hello("web-1"), token: "SECRET-TOKEN-VALUE" }, 0, "node");
    reg.recordSample("web-1", { type: "sample", time: 0, cpu: 55 }, 1000);
    reg.register(hello("web-2"), 0, "node");
    const s = buildStatus({
      version: "0.1.0",
      role: { role: "decider", why: "test" },
      listen: "127.0.0.1:7300",
      haproxyConfig: "/x/haproxy.cfg",
      scaling: undefined,
      sharedToken: "refuse",
      registry: reg,
      hosts: [
        { name: "web-1", address: "10.0.0.5", port: 80, source: "agent", addedAt: "2026-01-01T00:00:00.000Z" },
        { name: "db", address: "10.0.0.9", port: 5432, source: "manual", addedAt: "2026-01-01T00:00:00.000Z" },
      ],
      applier: {
        applies: 1,
        reloads: 1,
        runtimeApplies: 0,
        runtimeFallbacks: 0,
        reloadBecause: undefined,
        reloadPathsInARow: 0,
        reloadFailures: 0,
        checkFailures: 0,
        lastResult: undefined,
        lastError: undefined,
        lastAppliedAt: 500,
      },
      events: [],
      windowMs: 60_000,
      now: 31_000,
    });
    expect(s.nodes.map((n) => [n.name, n.state, n.source, n.cpu_now])).toEqual([
      ["db", "configured", "manual", null],
      ["web-1", "live", "agent", 55],
      ["web-2", "unreachable", "unknown", null],
    ]);
    // Active counts what serves: the live node and the hand-added backend, not the silent one.
    expect(s.capacity).toMatchObject({ active: 2, pending: 0, desired: 2 });
    expect(JSON.stringify(s)).not.toContain("SECRET-TOKEN-VALUE");
  });
});
