/**
 * A real HAProxy on the generated config, real HTTP backends on loopback added with the real CLI:
 * traffic is balanced, a removed backend stops getting requests, and reloads under keep-alive
 * load lose no request.
 */
import { afterEach, expect, test } from "vitest";
import { Scope, startBackend } from "./helpers/process.js";
import { makeInstallation, startHaproxy } from "./helpers/haproxy.js";
import { getOnce, runLoad } from "./helpers/load.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** Send `n` requests, each on its own connection, and count the answers by body. */
async function spread(port: number, n: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const a = await getOnce(port);
    expect(a.status).toBe(200);
    seen[a.body] = (seen[a.body] ?? 0) + 1;
  }
  return seen;
}

test("HAProxy balances across two backends added with add-host; after remove-host and generate --reload only the other gets requests", async () => {
  const inst = await makeInstallation(scope);
  const a = await startBackend(scope, "A");
  const b = await startBackend(scope, "B");
  for (const [name, backend] of [
    ["a", a],
    ["b", b],
  ] as const) {
    const r = await inst.cli("add-host", "127.0.0.1", String(backend.port), "--name", name, "--no-reload");
    expect(r.code, r.stderr).toBe(0);
  }
  await startHaproxy(scope, inst);

  expect(await spread(inst.frontendPort, 10)).toEqual({ A: 5, B: 5 });

  const removed = await inst.cli("remove-host", "b");
  expect(removed.code, removed.stderr).toBe(0);
  expect(removed.stdout).toMatch(/new worker pid \d+ confirmed/);
  // remove-host already reloaded; generate --reload finds nothing left to do.
  const generate = await inst.cli("generate", "--reload");
  expect(generate.code, generate.stderr).toBe(0);
  expect(generate.stdout).toMatch(/unchanged/);

  const hitsA = a.hits();
  const hitsB = b.hits();
  expect(await spread(inst.frontendPort, 10)).toEqual({ A: 10 });
  expect(a.hits() - hitsA).toBe(10);
  expect(b.hits() - hitsB).toBe(0);
});

test("ten reloads (add-host / remove-host in turn) under keep-alive load lose no request", async () => {
  const inst = await makeInstallation(scope);
  const a = await startBackend(scope, "A");
  const b = await startBackend(scope, "B");
  const add = await inst.cli("add-host", "127.0.0.1", String(a.port), "--name", "a", "--no-reload");
  expect(add.code, add.stderr).toBe(0);
  await startHaproxy(scope, inst);

  let reloadsDone = false;
  const load = runLoad({ port: inst.frontendPort, concurrency: 4, maxRequests: 200_000, deadlineMs: 45_000, stop: () => reloadsDone });
  const outputs: string[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      const r = i % 2 === 0 ? await inst.cli("add-host", "127.0.0.1", String(b.port), "--name", "b") : await inst.cli("remove-host", "b");
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/new worker pid \d+ confirmed/);
      outputs.push(r.stdout);
    }
  } finally {
    reloadsDone = true;
  }
  const result = await load;
  const summary = `${result.ok} ok, ${result.failed} failed, answers by backend ${JSON.stringify(result.bodies)}`;

  expect(result.failures, summary).toEqual([]);
  expect(result.failed, summary).toBe(0);
  expect(result.ok).toBeGreaterThan(0);
  // The load ran for the whole sequence of reloads, not just the start of it.
  expect(result.endedBy).toBe("stop");
  expect(result.bodies.B ?? 0).toBeGreaterThan(0);
  expect(outputs).toHaveLength(10);
});
