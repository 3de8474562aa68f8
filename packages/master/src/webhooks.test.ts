/**
 * The webhook server alone, on loopback, with a fake clock for its rate limits and a recorded
 * `execute` in place of the scaler: methods, paths, secrets, limits, the body cap and the
 * follower's 503. The whole path through a real master is test/policies.test.ts.
 */
import type http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { createLogger } from "@autoscaler/shared";
import { createEventLog } from "./events.js";
import { createMetrics } from "./metrics.js";
import type { MasterStatus } from "./status.js";
import { createBuckets, findWebhook, hashSecret, newWebhookSecret, startWebhookServer, WEBHOOK_LIMITS } from "./webhooks.js";

describe("secrets and lookup", () => {
  test("a secret has 256 random bits (43 base64url characters) and only its SHA-256 is stored", () => {
    const a = newWebhookSecret();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(newWebhookSecret()).not.toBe(a);
    expect(hashSecret(a)).toMatch(/^[0-9a-f]{64}$/);
  });

  test("the lookup finds the hook by its secret; a near miss (one character off) finds nothing", () => {
    const secrets = [newWebhookSecret(), newWebhookSecret()];
    const hooks = secrets.map((s, i) => ({ name: `h${i}`, policy: "p", sha256: hashSecret(s), createdAt: 0 }));
    expect(findWebhook(hooks, secrets[1]!)?.name).toBe("h1");
    const near = secrets[1]!.slice(0, -1) + (secrets[1]!.endsWith("A") ? "B" : "A");
    expect(findWebhook(hooks, near)).toBeUndefined();
    expect(findWebhook([], secrets[0]!)).toBeUndefined();
  });

  test("a token bucket: the burst, then one per interval", () => {
    let now = 0;
    const b = createBuckets({ burst: 2, everyMs: 1000 }, () => now);
    expect([b.take("k"), b.take("k"), b.take("k")]).toEqual([true, true, false]);
    expect(b.take("other")).toBe(true);
    now = 999;
    expect(b.take("k")).toBe(false);
    now = 2000;
    expect(b.take("k")).toBe(true);
  });
});

describe("the server", () => {
  const servers: http.Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  });

  async function start(leading = true) {
    const secret = newWebhookSecret();
    const hooks = [{ name: "alarm", policy: "out", sha256: hashSecret(secret), createdAt: 0 }];
    let now = 1_000_000;
    const logged: string[] = [];
    const calls: string[] = [];
    const logger = createLogger({ write: (s: string) => logged.push(s) }, { level: "debug", json: true });
    const events = createEventLog(() => now);
    const metrics = createMetrics(() => ({ nodes: [] }) as unknown as MasterStatus);
    const server = await startWebhookServer("127.0.0.1", 0, {
      logger,
      events,
      metrics,
      now: () => now,
      leading: () => leading,
      find: (s) => {
        const h = findWebhook(hooks, s);
        return h ? { found: true, name: h.name, policy: h.policy } : { found: false };
      },
      execute: async (policy, trigger) => {
        calls.push(`${policy} ${trigger.via}`);
        return { policy, outcome: "executed", result: "+1 from 1 to 2" };
      },
    });
    servers.push(server);
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const post = (path: string, body?: string) => fetch(base + path, { method: "POST", ...(body !== undefined ? { body } : {}) });
    return { secret, base, post, calls, logged, events, metrics, advance: (ms: number) => (now += ms) };
  }

  test("POST with the secret runs the policy once and answers 202; the log and events name the hook, never the secret", async () => {
    const s = await start();
    const r = await s.post(`/hooks/${s.secret}`, "{}");
    expect(r.status).toBe(202);
    expect(await r.json()).toEqual({ webhook: "alarm", policy: "out", outcome: "executed", result: "+1 from 1 to 2" });
    expect(s.calls).toEqual(["out webhook alarm"]);
    expect(s.events.latest().map((e) => e.message)).toEqual([expect.stringMatching(/^webhook alarm \(policy out\) from 127\.0\.0\.1: \+1 from 1 to 2$/)]);
    expect(s.logged.join("")).not.toContain(s.secret);
    expect(await s.metrics.registry.getSingleMetricAsString("autoscaler_webhook_calls_total")).toMatch(/hook="alarm",result="executed"} 1/);
  });

  test("GET is 405; a wrong or near-miss secret is 404; another path is 404; nothing runs", async () => {
    const s = await start();
    expect((await fetch(`${s.base}/hooks/${s.secret}`)).status).toBe(405);
    const near = s.secret.slice(0, -1) + (s.secret.endsWith("A") ? "B" : "A");
    expect((await s.post(`/hooks/${near}`)).status).toBe(404);
    expect((await s.post(`/hooks/${newWebhookSecret()}`)).status).toBe(404);
    expect((await s.post("/other")).status).toBe(404);
    expect(s.calls).toEqual([]);
    expect(s.logged.join("")).not.toContain(near);
  });

  test("a body over 64 KiB is refused with 413 and runs nothing", async () => {
    const s = await start();
    const r = await s.post(`/hooks/${s.secret}`, "x".repeat(WEBHOOK_LIMITS.maxBodyBytes + 1));
    expect(r.status).toBe(413);
    expect(s.calls).toEqual([]);
  });

  test("per hook: the burst, then 429 until the bucket refills", async () => {
    const s = await start();
    const codes: number[] = [];
    for (let i = 0; i < WEBHOOK_LIMITS.perHook.burst + 2; i++) codes.push((await s.post(`/hooks/${s.secret}`)).status);
    expect(codes).toEqual([...Array<number>(WEBHOOK_LIMITS.perHook.burst).fill(202), 429, 429]);
    s.advance(WEBHOOK_LIMITS.perHook.everyMs);
    expect((await s.post(`/hooks/${s.secret}`)).status).toBe(202);
    expect(s.calls).toHaveLength(WEBHOOK_LIMITS.perHook.burst + 1);
  });

  test("a follower answers 503 and runs nothing; GET /leader is 200 on the leader only (HAProxy's health check)", async () => {
    const s = await start(false);
    const r = await s.post(`/hooks/${s.secret}`);
    expect(r.status).toBe(503);
    expect(s.calls).toEqual([]);
    expect((await fetch(`${s.base}/leader`)).status).toBe(503);
    const leader = await start(true);
    expect((await fetch(`${leader.base}/leader`)).status).toBe(200);
  });
});
