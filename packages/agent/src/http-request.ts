/**
 * The agent's HTTP client (health_url, the EC2 metadata service): node's http and https
 * modules, not fetch. fetch loads undici, whose parser is compiled WebAssembly: about 12 MiB of
 * RSS for as long as the agent runs, and more CPU per request (BENCHMARKS.md "Agent footprint").
 */
import http from "node:http";

/** What came back: the status, and the body when it was asked for. */
export interface HttpAnswer {
  status: number;
  body: string;
}

/** Why a request got no answer: "timeout", or the socket's error code (ECONNREFUSED, EHOSTUNREACH…). */
export interface HttpFailure {
  failure: string;
}

/** The most body text kept; the rest is read and dropped. */
const MAX_BODY_BYTES = 64 * 1024;

/**
 * One request to an http:// or https:// URL, with redirects not followed. Resolves to undefined
 * when it cannot be made, fails, or has not answered within `timeoutMs`: with `body`, the
 * whole body must have come by then; without, the answer is the status line, and the body is
 * read and dropped (the request is cut at `timeoutMs` if it has not ended).
 */
export async function httpRequest(url: string, options: RequestOptions): Promise<HttpAnswer | undefined> {
  const answer = await httpAttempt(url, options);
  return "failure" in answer ? undefined : answer;
}

interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  timeoutMs: number;
  body?: boolean;
}

/** `httpRequest`, saying why when there is no answer (the metadata service's retry depends on it). */
export async function httpAttempt(url: string, options: RequestOptions): Promise<HttpAnswer | HttpFailure> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return { failure: "EINVALIDURL" };
  }
  if (target.protocol !== "http:" && target.protocol !== "https:") return { failure: "EPROTOCOL" };
  // https (and with it tls) only for an https URL: the metadata service and most health checks are http.
  const request = target.protocol === "https:" ? (await import("node:https")).request : http.request;
  return new Promise((resolve) => {
    let done = false;
    const finish = (answer: HttpAnswer | HttpFailure) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if ("failure" in answer) req.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => {
      req.destroy();
      finish({ failure: "timeout" });
    }, options.timeoutMs);
    const req = request(target, { method: options.method ?? "GET", headers: options.headers }, (res) => {
      const status = res.statusCode ?? 0;
      if (!options.body) {
        // The answer is the status; the body is drained, and the timer still cuts a request that does not end.
        res.on("end", () => clearTimeout(timer));
        res.on("error", () => undefined);
        res.resume();
        done = true;
        return resolve({ status, body: "" });
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        if (size >= MAX_BODY_BYTES) return;
        chunks.push(chunk);
        size += chunk.length;
      });
      res.on("end", () => finish({ status, body: Buffer.concat(chunks).subarray(0, MAX_BODY_BYTES).toString("utf8") }));
      res.on("error", () => finish({ failure: "ECONNRESET" }));
      res.on("aborted", () => finish({ failure: "ECONNRESET" }));
    });
    req.on("error", (err: NodeJS.ErrnoException) => finish({ failure: err.code ?? err.message }));
    req.end();
  });
}
