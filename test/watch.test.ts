/**
 * The running master keeps HAProxy in step with hosts.d and the template on its own: hand
 * edits apply, a burst of changes becomes one reload, a file it cannot use is refused while
 * HAProxy keeps its config, and fixing it recovers.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { startProxy, type Proxy } from "./helpers/cluster.js";
import { serverLines, showProc } from "./helpers/haproxy.js";
import { Scope, sleep, startBackend, waitFor } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

const writeHost = (p: Proxy, name: string, port: number) =>
  fs.writeFile(path.join(p.inst.dir, "hosts.d", `${name}.json`), JSON.stringify({ address: "127.0.0.1", port }) + "\n");
const liveServers = async (p: Proxy) => serverLines(await fs.readFile(p.inst.haproxyConfig, "utf8"));
/** Wait until haproxy.cfg holds exactly `count` server lines. */
const waitServers = (p: Proxy, count: number) =>
  waitFor(`${count} server lines in haproxy.cfg`, async () => (await liveServers(p)).length === count, 10_000, 20);

test("a hand-written hosts.d file is applied by the running master and served by HAProxy", async () => {
  const proxy = await startProxy(scope);
  const backend = await startBackend(scope, "hand");
  await writeHost(proxy, "hand-1", backend.port);
  await waitServers(proxy, 1);
  expect((await liveServers(proxy))[0]).toMatch(/^server hand-1 127\.0\.0\.1:\d+ check$/);
  await waitFor("HAProxy to serve the hand-added backend", async () => {
    const res = await fetch(`http://127.0.0.1:${proxy.inst.frontendPort}/hit`).catch(() => undefined);
    return res?.ok && (await res.text()) === "hand";
  });
});

test("a burst of twenty changes becomes at most two reloads (debounce with a ceiling)", async () => {
  const proxy = await startProxy(scope);
  // Let the start-up apply settle first (a second with no reload), so the count below is the burst's alone.
  await waitFor(
    "no pending apply",
    async () => {
      const a = (await showProc(proxy.inst)).master.reloads;
      await sleep(1000);
      return (await showProc(proxy.inst)).master.reloads === a;
    },
    15_000,
  );
  const before = (await showProc(proxy.inst)).master.reloads;
  await Promise.all(Array.from({ length: 20 }, (_, i) => writeHost(proxy, `burst-${String(i).padStart(2, "0")}`, 20000 + i)));
  await waitServers(proxy, 20);
  // Give a stray second apply the chance to happen before counting (the ceiling is 800 ms).
  await sleep(1500);
  const reloads = (await showProc(proxy.inst)).master.reloads - before;
  expect(reloads).toBeGreaterThanOrEqual(1);
  expect(reloads).toBeLessThanOrEqual(2);
});

test("a hosts.d file the master cannot use is refused, HAProxy keeps its config, and fixing the file recovers", async () => {
  const proxy = await startProxy(scope);
  const backend = await startBackend(scope, "ok");
  await writeHost(proxy, "good", backend.port);
  await waitServers(proxy, 1);
  const good = await fs.readFile(proxy.inst.haproxyConfig);

  await fs.writeFile(path.join(proxy.inst.dir, "hosts.d", "broken.json"), '{"address": "10.0.0.1", "port": ');
  const status = await waitFor("status to show the refused file", async () => {
    const s = await proxy.status();
    return s.haproxy.last_error?.details.some((d) => d.startsWith("broken.json")) ? s : undefined;
  });
  expect(status.haproxy.last_error!.message).toMatch(/cannot be used/);
  expect(await fs.readFile(proxy.inst.haproxyConfig)).toEqual(good);
  expect(proxy.master.log()).toMatch(/haproxy apply failed/);

  await fs.writeFile(path.join(proxy.inst.dir, "hosts.d", "broken.json"), JSON.stringify({ address: "127.0.0.1", port: backend.port + 1 }));
  await waitServers(proxy, 2);
  await waitFor("the error to clear", async () => (await proxy.status()).haproxy.last_error === null);
  // The log says when it went bad and when it was over, not only the failure.
  expect(proxy.master.log()).toMatch(/"msg":"hosts\.d file cannot be used".*broken\.json/);
  await waitFor("the recovery in the log", () => /"event":"hosts_file_recovered".*broken\.json/.test(proxy.master.log()));
  expect(proxy.master.log()).toMatch(/haproxy applies again: the last failure \(\w+\) is over/);
});

test("a template edit is applied by the running master; a template HAProxy refuses leaves the live config alone", async () => {
  const proxy = await startProxy(scope);
  const tmpl = path.join(proxy.inst.dir, "haproxy.cfg.tmpl");
  await fs.appendFile(tmpl, "\n# edited by the operator\n");
  await waitFor("the edit in haproxy.cfg", async () => (await fs.readFile(proxy.inst.haproxyConfig, "utf8")).includes("# edited by the operator"));
  const good = await fs.readFile(proxy.inst.haproxyConfig);

  await fs.appendFile(tmpl, "\nbackend broken\n    balanse roundrobin\n");
  await waitFor("the check failure in the master's log", () => /HAProxy refused the new configuration/.test(proxy.master.log()));
  expect(await fs.readFile(proxy.inst.haproxyConfig)).toEqual(good);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^autoscaler_haproxy_check_failures_total [1-9]/m);
});

test("the last of several quick writes to one hosts.d file wins (the watcher drops changes 50 ms apart)", async () => {
  const proxy = await startProxy(scope);
  const file = path.join(proxy.inst.dir, "hosts.d", "quick.json");
  await fs.writeFile(file, JSON.stringify({ address: "127.0.0.1", port: 31000 }));
  await waitFor("the first version in haproxy.cfg", async () => (await liveServers(proxy)).some((l) => l.includes(":31000")));
  for (let round = 1; round <= 5; round++) {
    // Three versions back to back: the watcher reports the first change and drops the rest.
    for (const port of [31000 + round * 10 + 1, 31000 + round * 10 + 2, 31000 + round * 10 + 3]) {
      await fs.writeFile(file, JSON.stringify({ address: "127.0.0.1", port }));
    }
    const last = `:${31000 + round * 10 + 3} `;
    await waitFor(`round ${round}: the last version in haproxy.cfg`, async () => (await liveServers(proxy)).some((l) => l.includes(last)), 5000, 20);
  }
  // A half-written file (not JSON yet) followed at once by the rest: also ends with the complete entry.
  const handle = await fs.open(file, "w");
  await handle.write('{"address": "127.0.0.1", ');
  await handle.sync();
  await handle.write('"port": 31999}');
  await handle.close();
  await waitFor("the completed file in haproxy.cfg", async () => (await liveServers(proxy)).some((l) => l.includes(":31999 ")), 5000, 20);
  await waitFor("no error left", async () => (await proxy.status()).haproxy.last_error === null);
});
