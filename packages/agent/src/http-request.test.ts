import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { checkHealth } from "./health.js";
import { httpRequest } from "./http-request.js";
import { fetchInstanceId } from "./identity.js";

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A loopback HTTP server answering with `handler`; resolves to its base URL. */
async function serve(handler: Handler): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

describe("httpRequest", () => {
  test("status and body, method and headers as given", async () => {
    const base = await serve((req, res) => res.end(`${req.method} ${req.url} ${req.headers["x-a"]}`));
    expect(await httpRequest(`${base}/p?q=1`, { method: "PUT", headers: { "x-a": "b" }, timeoutMs: 2000, body: true })).toEqual({
      status: 200,
      body: "PUT /p?q=1 b",
    });
    expect(await httpRequest(base, { timeoutMs: 2000 })).toEqual({ status: 200, body: "" });
  });

  test("no answer, or a body that never ends, within the time: undefined, on time", async () => {
    const silent = await serve(() => undefined);
    const stalled = await serve((_req, res) => {
      res.writeHead(200, { "content-length": "100" });
      res.write("x");
    });
    for (const url of [silent, stalled]) {
      const t0 = Date.now();
      expect(await httpRequest(url, { timeoutMs: 200, body: true })).toBeUndefined();
      expect(Date.now() - t0).toBeLessThan(1500);
    }
    // Without the body, the status line is the answer (as fetch's status was).
    expect(await httpRequest(stalled, { timeoutMs: 200 })).toEqual({ status: 200, body: "" });
    expect(await httpRequest(silent, { timeoutMs: 200 })).toBeUndefined();
  });

  test("refused, not http(s), not a URL, TLS to a plain HTTP port: undefined", async () => {
    const base = await serve((_req, res) => res.end("ok"));
    expect(await httpRequest(`http://127.0.0.1:${await closedPort()}/`, { timeoutMs: 2000 })).toBeUndefined();
    expect(await httpRequest("ftp://127.0.0.1/", { timeoutMs: 2000 })).toBeUndefined();
    expect(await httpRequest("not a url", { timeoutMs: 2000 })).toBeUndefined();
    expect(await httpRequest(base.replace("http:", "https:"), { timeoutMs: 2000 })).toBeUndefined();
  });

  test("a long body is cut at 64 KiB", async () => {
    const base = await serve((_req, res) => res.end("y".repeat(200_000)));
    expect((await httpRequest(base, { timeoutMs: 5000, body: true }))?.body).toHaveLength(64 * 1024);
  });
});

describe("checkHealth", () => {
  test("2xx passes; 3xx (not followed), 4xx, 5xx, no answer and refusal fail; no URL passes", async () => {
    const base = await serve((req, res) => {
      const status = Number(req.url!.slice(1));
      if (status === 0) return; // never answers
      res.writeHead(status, status === 302 ? { location: "/200" } : {});
      res.end("body");
    });
    expect(await checkHealth(`${base}/200`)).toBe(true);
    expect(await checkHealth(`${base}/204`)).toBe(true);
    for (const status of [302, 404, 503]) expect(await checkHealth(`${base}/${status}`), String(status)).toBe(false);
    expect(await checkHealth(`${base}/0`, 200)).toBe(false);
    expect(await checkHealth(`http://127.0.0.1:${await closedPort()}/`)).toBe(false);
    expect(await checkHealth("")).toBe(true);
  });
});

describe("fetchInstanceId (IMDSv2)", () => {
  const imds = (id: string, tokenStatus = 200): Handler => {
    return (req, res) => {
      if (req.method === "PUT" && req.url === "/latest/api/token" && req.headers["x-aws-ec2-metadata-token-ttl-seconds"] === "60") {
        res.writeHead(tokenStatus);
        return res.end("the-token");
      }
      if (req.method === "GET" && req.url === "/latest/meta-data/instance-id" && req.headers["x-aws-ec2-metadata-token"] === "the-token") return res.end(id);
      res.writeHead(401);
      res.end();
    };
  };

  test("a token, then the id with it", async () => {
    expect(await fetchInstanceId(await serve(imds("i-0123456789abcdef0\n")))).toEqual({ id: "i-0123456789abcdef0" });
  });

  test("a service that is off or not there (a refused token, another 4xx, an answer that is no id, a refused connection): no id at once, never asked twice", async () => {
    const cases: [string, Handler | "closed", RegExp][] = [
      ["a token refused (IMDSv2 off)", imds("i-1", 403), /^token: HTTP 403$/],
      ["an id that is not one", imds("not an id"), /^instance-id: the answer is not an instance id$/],
      [
        "an id path that is not found",
        (req, res) => (req.method === "PUT" ? res.end("the-token") : (res.writeHead(404), res.end())),
        /^instance-id: HTTP 404$/,
      ],
      ["nothing listening", "closed", /^token: ECONNREFUSED$/],
    ];
    for (const [what, handler, why] of cases) {
      let asked = 0;
      const base =
        handler === "closed"
          ? `http://127.0.0.1:${await closedPort()}`
          : await serve((req, res) => {
              if (req.method === "PUT") asked++;
              handler(req, res);
            });
      const retries: string[] = [];
      const found = await fetchInstanceId(base, { waitMs: 10_000, onRetry: (w) => retries.push(w) });
      expect(found, what).toEqual({ none: expect.stringMatching(why) });
      expect(retries, what).toEqual([]);
      if (handler !== "closed") expect(asked, what).toBe(1);
    }
  });

  test("a service that is slow, throttles or fails at first (as at boot) is asked again with backoff, and its id is used once it answers", async () => {
    let tokens = 0;
    // The first token request hangs past the timeout, the second is throttled, the third a 503; then IMDSv2 as usual.
    const base = await serve((req, res) => {
      if (req.method === "PUT") {
        tokens++;
        if (tokens === 1) return; // no answer
        if (tokens === 2) return (res.writeHead(429), res.end());
        if (tokens === 3) return (res.writeHead(503), res.end());
      }
      imds("i-0fedcba9876543210")(req, res);
    });
    const retries: string[] = [];
    const pauses: number[] = [];
    const found = await fetchInstanceId(base, {
      timeoutMs: 200,
      waitMs: 10_000,
      onRetry: (why) => retries.push(why),
      sleep: async (ms) => void pauses.push(ms),
    });
    expect(found).toEqual({ id: "i-0fedcba9876543210" });
    expect(retries).toEqual(["token: no answer in time", "token: HTTP 429", "token: HTTP 503"]);
    expect(pauses).toEqual([250, 500, 1000]);
  });

  test("a service that never answers is given up after the wait, saying how many tries; the pauses double up to 4 s", async () => {
    let clock = 0;
    const pauses: number[] = [];
    const base = await serve((req, res) => (res.writeHead(500), res.end()));
    const found = await fetchInstanceId(base, {
      waitMs: 20_000,
      now: () => clock,
      sleep: async (ms) => {
        pauses.push(ms);
        clock += ms;
      },
    });
    expect(pauses).toEqual([250, 500, 1000, 2000, 4000, 4000, 4000, 4000]);
    expect(found).toEqual({ none: "token: HTTP 500 (9 tries in 20 s)" });
  });
});
