import { afterEach, expect, test } from "vitest";
import { Scope, startBackend } from "./helpers/process.js";
import { makeInstallation, startHaproxy } from "./helpers/haproxy.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

test("smoke: a backend added with add-host is served by a real HAProxy", async () => {
  const inst = await makeInstallation(scope);
  const a = await startBackend(scope, "A");
  expect((await inst.cli("add-host", "127.0.0.1", String(a.port), "--name", "a", "--no-reload")).code).toBe(0);
  await startHaproxy(scope, inst);
  const body = await (await fetch(`http://127.0.0.1:${inst.frontendPort}/`)).text();
  expect(body).toBe("A");
  const b = await startBackend(scope, "B");
  const r = await inst.cli("add-host", "127.0.0.1", String(b.port), "--name", "b");
  expect(r.stderr).toBe("");
  expect(r.stdout).toMatch(/confirmed/);
});
