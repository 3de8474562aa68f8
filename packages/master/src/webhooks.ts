/**
 * Webhooks of named policies: capability URLs `POST /hooks/<secret>` on `[master]
 * webhook_listen`, which may face a network (a monitoring system calls it). Only the SHA-256 of
 * each secret is stored; a call's secret is hashed and compared with every stored hash with
 * timingSafeEqual, so the lookup takes the same time whichever hash (if any) matches. Calls are
 * rate-limited per hook, for all hooks together, and for wrong secrets; the body is ignored and
 * capped; a follower answers 503 so that a hook never runs twice (and `GET /leader` says which
 * master leads, for HAProxy's health check). Logs and events name the hook, never the secret.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { Logger } from "@autoscaler/shared";
import type { EventLog } from "./events.js";
import type { MasterMetrics } from "./metrics.js";
import { HTTP_LIMITS, listenWithLimits } from "./metrics.js";
import type { PolicyTrigger } from "./machine.js";
import type { WebhookRecord } from "./state-store.js";

/** A new secret: 32 random bytes (256 bits), base64url (43 characters). */
export function newWebhookSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** The SHA-256 of a secret, hex: all that is stored. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/** The hook whose secret this is: every stored hash is compared (timingSafeEqual), none skipped. */
export function findWebhook(hooks: readonly WebhookRecord[], secret: string): WebhookRecord | undefined {
  const candidate = createHash("sha256").update(secret, "utf8").digest();
  let found: WebhookRecord | undefined;
  for (const hook of hooks) {
    const match = timingSafeEqual(candidate, Buffer.from(hook.sha256, "hex"));
    if (match && found === undefined) found = hook;
  }
  return found;
}

/** A token bucket: `burst` calls at once, then one per `everyMs`. */
export interface RateLimit {
  burst: number;
  everyMs: number;
}

/** The webhook limits: per hook, for all hooks together, and for calls with a wrong secret. */
export const WEBHOOK_LIMITS = {
  perHook: { burst: 5, everyMs: 10_000 },
  total: { burst: 20, everyMs: 2_000 },
  wrong: { burst: 20, everyMs: 1_000 },
  /** The body is ignored; a longer one is refused (413). */
  maxBodyBytes: 64 * 1024,
} as const;

/** Token buckets by key, on an injected clock. */
export function createBuckets(limit: RateLimit, now: () => number, maxKeys = 2000) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    /** Take one token; false when the bucket is empty. */
    take(key: string): boolean {
      const t = now();
      const b = buckets.get(key) ?? { tokens: limit.burst, at: t };
      b.tokens = Math.min(limit.burst, b.tokens + (t - b.at) / limit.everyMs);
      b.at = t;
      if (!buckets.has(key)) {
        if (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value!);
        buckets.set(key, b);
      }
      if (b.tokens < 1) return false;
      b.tokens -= 1;
      return true;
    },
  };
}

/** What the webhook server needs. */
export interface WebhookDeps {
  logger: Logger;
  events: EventLog;
  metrics: Pick<MasterMetrics, "webhookCalls">;
  now: () => number;
  /** Whether this master decides now (the leader, or the decider): a follower answers 503. */
  leading: () => boolean;
  find: (secret: string) => { found: false } | { found: true; name: string; policy: string };
  execute: (policy: string, trigger: PolicyTrigger) => Promise<unknown>;
}

type Result = "executed" | "not_executed" | "wrong_secret" | "rate_limited" | "follower" | "bad_method" | "too_large" | "not_found";

/** Serve `POST /hooks/<secret>` on host:port. */
export async function startWebhookServer(host: string, port: number, deps: WebhookDeps): Promise<http.Server> {
  const perHook = createBuckets(WEBHOOK_LIMITS.perHook, deps.now);
  const total = createBuckets(WEBHOOK_LIMITS.total, deps.now);
  const wrong = createBuckets(WEBHOOK_LIMITS.wrong, deps.now);
  const wrongEvents = createBuckets({ burst: 1, everyMs: 10_000 }, deps.now);
  let wrongSinceLogged = 0;
  let wrongSinceEvent = 0;

  const answer = (res: http.ServerResponse, code: number, body: Record<string, unknown>, extra: Record<string, string> = {}) => {
    const text = JSON.stringify(body) + "\n";
    res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...extra }).end(text);
  };
  /** Count a call; one that reaches no hook is also logged, at debug level (a scan or a flood must not fill the log). */
  const count = (hook: string, result: Result, remote?: string) => {
    deps.metrics.webhookCalls.inc({ hook, result });
    if (remote !== undefined) deps.logger.debug(`webhook call from ${remote}: ${result}`, { event: "webhook_refused", remote, result });
  };
  /** The secret is the path's last segment: never logged, never echoed. */
  const secretOf = (url: string | undefined): string | undefined => {
    const m = /^\/hooks\/([A-Za-z0-9_-]{1,128})\/?(?:\?.*)?$/.exec(url ?? "");
    return m?.[1];
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, remote: string) => {
    // For a load balancer's health check: only the master that runs webhooks answers 200.
    if (req.url === "/leader" && (req.method === "GET" || req.method === "HEAD"))
      return deps.leading() ? answer(res, 200, { leading: true }) : answer(res, 503, { leading: false });
    const secret = secretOf(req.url);
    if (secret === undefined) {
      count("none", "not_found", remote);
      return answer(res, 404, { error: "not found" });
    }
    if (req.method !== "POST") {
      count("none", "bad_method", remote);
      return answer(res, 405, { error: "POST only" }, { allow: "POST" });
    }
    if (!deps.leading()) {
      count("none", "follower", remote);
      return answer(res, 503, { error: "this master is a follower; only the leader runs webhooks (so a hook never runs twice)" }, { "retry-after": "5" });
    }
    const hook = deps.find(secret);
    if (!hook.found) {
      if (!wrong.take("wrong")) {
        count("unknown", "rate_limited", remote);
        wrongSinceLogged++;
        return answer(res, 429, { error: "too many calls" }, { "retry-after": "1" });
      }
      count("unknown", "wrong_secret");
      wrongSinceEvent++;
      deps.logger.warn(`webhook call from ${remote} with a wrong secret: 404`, { event: "webhook_unknown", remote });
      // The event log keeps 200 events: wrong calls go in at most once per 10 s, with a count, so a flood cannot push the rest out.
      if (wrongEvents.take("wrong")) {
        const also =
          wrongSinceEvent + wrongSinceLogged > 1
            ? ` (${wrongSinceEvent} with a wrong secret and ${wrongSinceLogged} rate-limited since the last such event)`
            : "";
        deps.events.add("webhook_unknown", `webhook call from ${remote} with a wrong secret: 404${also}`);
        wrongSinceEvent = 0;
        wrongSinceLogged = 0;
      }
      return answer(res, 404, { error: "not found" });
    }
    if (!perHook.take(hook.name) || !total.take("total")) {
      count(hook.name, "rate_limited");
      deps.logger.warn(`webhook ${hook.name} (policy ${hook.policy}) from ${remote}: rate-limited, 429`, { event: "webhook_rate_limited", webhook: hook.name });
      deps.events.add("webhook", `webhook ${hook.name} (policy ${hook.policy}) from ${remote}: rate-limited (429)`);
      return answer(res, 429, { error: "too many calls" }, { "retry-after": "10" });
    }
    let outcome: Record<string, unknown>;
    let result: Result = "executed";
    try {
      outcome = (await deps.execute(hook.policy, { via: `webhook ${hook.name}`, manual: false })) as Record<string, unknown>;
    } catch (err) {
      // A cooldown, a pause, a limit: the policy did not run; the call itself was accepted.
      result = "not_executed";
      outcome = { outcome: "not_executed", result: (err as Error).message };
    }
    count(hook.name, result);
    const said = typeof outcome.result === "string" ? outcome.result : String(outcome.outcome ?? "");
    deps.logger.info(`webhook ${hook.name} (policy ${hook.policy}) from ${remote}: ${said}`, {
      event: "webhook",
      webhook: hook.name,
      policy: hook.policy,
      result,
    });
    deps.events.add("webhook", `webhook ${hook.name} (policy ${hook.policy}) from ${remote}: ${said}`);
    answer(res, 202, { webhook: hook.name, policy: hook.policy, outcome: outcome.outcome ?? result, result: said });
  };

  const server = http.createServer((req, res) => {
    res.setTimeout(HTTP_LIMITS.idleTimeoutMs, () => res.destroy());
    const remote = req.socket.remoteAddress ?? "?";
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > WEBHOOK_LIMITS.maxBodyBytes) {
      count("none", "too_large", remote);
      answer(res, 413, { error: `the body is ignored; at most ${WEBHOOK_LIMITS.maxBodyBytes} bytes` }, { connection: "close" });
      req.destroy();
      return;
    }
    let size = 0;
    let refused = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > WEBHOOK_LIMITS.maxBodyBytes && !refused) {
        refused = true;
        count("none", "too_large", remote);
        answer(res, 413, { error: `the body is ignored; at most ${WEBHOOK_LIMITS.maxBodyBytes} bytes` }, { connection: "close" });
        req.destroy();
      }
    });
    req.on("end", () => {
      if (refused) return;
      handle(req, res, remote).catch((err: Error) => {
        deps.logger.error("webhook call failed", { error: err.message });
        if (!res.headersSent) answer(res, 500, { error: "internal error" });
        else res.destroy();
      });
    });
    req.on("error", () => undefined);
  });
  return listenWithLimits(server, host, port);
}
