/**
 * HTTP clients for tests: one request on a fresh connection, and a bounded keep-alive load loop
 * that counts every failed request (error, timeout or non-2xx answer) with its reason.
 */
import http from "node:http";
import { sleep } from "./process.js";

/** One answer: status code and body text. */
export interface Answer {
  status: number;
  body: string;
}

/** One GET to 127.0.0.1:port on its own connection (no keep-alive), so it reaches whatever listens now. */
export function getOnce(port: number, urlPath = "/hit", timeoutMs = 5000): Promise<Answer> {
  return get(port, urlPath, false, timeoutMs);
}

function get(port: number, urlPath: string, agent: http.Agent | false, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}

/** How a load run is bounded: it stops at `maxRequests`, at `deadlineMs`, or when `stop()` turns true, whichever comes first. */
export interface LoadOptions {
  port: number;
  concurrency: number;
  maxRequests: number;
  deadlineMs: number;
  stop?: () => boolean;
  path?: string;
  /** Pause between one loop's requests (default none). */
  gapMs?: number;
  /** Called with each 2xx answer's body and the time it arrived. */
  onAnswer?: (body: string, at: number) => void;
}

/** What a load run saw. `endedBy` says which bound stopped it. */
export interface LoadResult {
  ok: number;
  failed: number;
  failures: string[];
  bodies: Record<string, number>;
  endedBy: "stop" | "count" | "deadline";
}

/**
 * Run `concurrency` loops of sequential GETs over one keep-alive agent until a bound is reached.
 * Every request is either ok (2xx) or a failure with its reason; nothing is retried.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const deadline = Date.now() + options.deadlineMs;
  const result: LoadResult = { ok: 0, failed: 0, failures: [], bodies: {}, endedBy: "stop" };
  let started = 0;
  const loop = async (): Promise<void> => {
    for (;;) {
      if (options.stop?.()) return;
      if (started >= options.maxRequests) {
        result.endedBy = "count";
        return;
      }
      if (Date.now() >= deadline) {
        result.endedBy = "deadline";
        return;
      }
      started++;
      try {
        const a = await get(options.port, options.path ?? "/hit", agent, 5000);
        if (a.status >= 200 && a.status < 300) {
          result.ok++;
          result.bodies[a.body] = (result.bodies[a.body] ?? 0) + 1;
          options.onAnswer?.(a.body, Date.now());
        } else {
          result.failed++;
          if (result.failures.length < 20) result.failures.push(`HTTP ${a.status}: ${a.body.slice(0, 100)}`);
        }
      } catch (err) {
        result.failed++;
        if (result.failures.length < 20) result.failures.push((err as Error).message);
      }
      if (options.gapMs) await sleep(options.gapMs);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, loop));
  } finally {
    agent.destroy();
  }
  return result;
}
