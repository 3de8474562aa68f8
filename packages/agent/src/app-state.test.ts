import http from "node:http";
import type { AddressInfo } from "node:net";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { capacityOf, leaveOf, readAppValue, valueAt } from "./app-state.js";
import { requestLeave, startLeaveSocket } from "./leave-socket.js";

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A loopback app answering `status` and `body` on every path; resolves to its base URL. */
async function app(status: number, body: string): Promise<string> {
  const server = http.createServer((_req, res) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(body);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/state`;
}

test.each([
  [{ leave: true }, "leave", true],
  [{ slots: { free: 3 } }, "slots.free", 3],
  [{ slots: { free: 3 } }, "slots.none", undefined],
  [{ slots: [1] }, "slots.0", undefined],
  [null, "leave", undefined],
  [{ ["__proto__"]: 1 }, "constructor", undefined],
])("valueAt(%j, %s)", (doc, key, expected) => {
  expect(valueAt(doc, key)).toEqual(expected);
});

describe("capacity_url: only a finite number of at least 0 is data", () => {
  test.each([
    ["a number", 200, '{"available": 4}', { ok: true, value: 4 }],
    ["zero", 200, '{"available": 0}', { ok: true, value: 0 }],
    ["not JSON", 200, "4 slots", { ok: false, problem: "the answer is not JSON" }],
    ["no key", 200, '{"free": 4}', { ok: false, problem: "the answer has no available" }],
    ["negative", 200, '{"available": -1}', { ok: false, problem: "available is not a number from 0 to 1e9 (-1)" }],
    ["a string", 200, '{"available": "4"}', { ok: false, problem: "available is not a number from 0 to 1e9 (string)" }],
    ["too large to be finite", 200, '{"available": 1e400}', { ok: false, problem: "available is not a number from 0 to 1e9 (Infinity)" }],
    ["an error status", 503, '{"available": 4}', { ok: false, problem: "HTTP 503" }],
  ])("%s", async (_name, status, body, expected) => {
    const url = await app(status, body);
    expect(capacityOf(await readAppValue(url, "available", 2000), "available")).toEqual(expected);
  });

  test("no answer", async () => {
    expect(await readAppValue("http://127.0.0.1:1/state", "available", 500)).toEqual({ ok: false, problem: "no answer" });
  });
});

describe("leave_url: only a JSON true is a leave", () => {
  test.each([
    [200, '{"leave": true}', true],
    [200, '{"leave": "true"}', false],
    [200, '{"leave": 1}', false],
    [200, '{"leave": false}', false],
    [200, "{}", false],
    [200, "not json", false],
    [500, '{"leave": true}', false],
  ])("HTTP %i %s → %s", async (status, body, expected) => {
    expect(leaveOf(await readAppValue(await app(status, body), "leave", 2000))).toBe(expected);
  });
});

test("the leave socket: mode 0600, one request line, the agent's answer, never taken over by a second agent; nothing listening is a clear error", async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-leave-"));
  try {
    const file = path.join(dir, "agent.sock");
    let asked = 0;
    const close = await startLeaveSocket(file, (name) => {
      if (name !== undefined) return { ok: false, error: `asked for ${name}` };
      asked++;
      return { ok: true, node: "web-1", proxies: ["10.0.0.10:22"] };
    });
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect(await requestLeave(file)).toEqual({ ok: true, node: "web-1", proxies: ["10.0.0.10:22"] });
    expect(asked).toBe(1);
    expect(await requestLeave(file, "web-2")).toEqual({ ok: false, error: "asked for web-2" });
    // A second agent on the same state folder never takes the socket over: a leave must reach the node it is for.
    await expect(startLeaveSocket(file, () => ({ ok: false, error: "not me" }))).rejects.toThrow(/another agent answers on/);
    expect(await requestLeave(file)).toMatchObject({ ok: true, node: "web-1" });
    await close();
    await expect(requestLeave(file)).rejects.toThrow(/no agent is running/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
