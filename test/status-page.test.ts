/**
 * The status page in a real browser: Debian's chromium driven by playwright-core (headless, no
 * sandbox, no background networking) against a real master, sshd and HAProxy, and a real agent.
 * One proxy and one browser page are shared by the file's tests, which run in order: the page
 * is open before the node registers, so the registration is seen live. The launch command is a
 * script that fails with hostile stderr, so a forced scale-up brings both a marker and an event
 * text full of markup.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type BrowserServer, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startNode, startProxy, type Proxy } from "./helpers/cluster.js";
import { Scope } from "./helpers/process.js";

const scope = new Scope();
const HOSTILE = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;
/** Where the run leaves its screenshot (docs/status-page.png is one of these, committed). */
const SCREENSHOT = process.env.STATUS_PAGE_SCREENSHOT ?? path.join(os.tmpdir(), "autoscaler-status-page.png");

let proxy: Proxy;
let server: BrowserServer;
let browser: Browser;
let page: Page;
let base: string;
const consoleErrors: string[] = [];
const requested: string[] = [];

beforeAll(async () => {
  const cloud = await scope.tempDir("autoscaler-page-cloud-");
  await fs.writeFile(path.join(cloud, "launch.sh"), `#!/bin/sh\necho '${HOSTILE}' >&2\nexit 1\n`);
  proxy = await startProxy(scope, {
    settings: [`machine.scale_up_command=sh '${cloud}/launch.sh'`, "scaling.min_nodes=0", "scaling.window=10", "master.interval=0.5"],
  });
  base = `http://127.0.0.1:${proxy.metricsPort}`;
  server = await chromium.launchServer({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-gpu"],
  });
  scope.track(server.process());
  scope.onCleanup(() => server.close());
  browser = await chromium.connect(server.wsEndpoint());
  page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (err) => consoleErrors.push(err.message));
  page.on("request", (r) => requested.push(r.url()));
}, 60_000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await scope.cleanup();
});

test("the page loads from the master alone with its headers, and draws with no console error", async () => {
  const res = await page.goto(`${base}/`);
  expect(res?.status()).toBe(200);
  const headers = res!.headers();
  expect(headers["content-security-policy"]).toMatch(/default-src 'none'; script-src 'self'; style-src 'self'/);
  expect(headers["x-content-type-options"]).toBe("nosniff");
  expect(Object.keys(headers).filter((h) => h.startsWith("access-control-"))).toEqual([]);
  await page.waitForFunction(() => document.getElementById("role")?.textContent?.startsWith("decider"));
  await page.waitForSelector("#capacity-chart canvas");
  expect(consoleErrors).toEqual([]);
});

test("a node that registers shows within 2 s of its hello, and its CPU chart draws points", async () => {
  const node = await startNode(scope, [proxy], { name: "web-page", address: "127.0.0.2" });
  const hello = Date.parse((JSON.parse(await node.agent.waitForLog(/"hello sent"/, 15_000)) as { time: string }).time);
  await page.waitForSelector('tr[data-node="web-page"]', { timeout: 5_000 });
  expect(Date.now() - hello).toBeLessThan(2000);
  const row = page.locator('tr[data-node="web-page"]');
  await expect.poll(() => row.locator("td").nth(2).textContent()).toBe("live");
  expect(await row.locator("td").nth(1).textContent()).toMatch(/^127\.0\.0\.2:\d+$/);
  // The window chart: a canvas with points in its data and pixels drawn.
  const chart = row.locator("td.chart").first();
  await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 10_000 }).toBeGreaterThan(1);
  const inked = () =>
    chart.locator("canvas").evaluate((c: HTMLCanvasElement) => {
      const pixels = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) n++;
      return n;
    });
  // The line grows with each reading (one a second).
  await expect.poll(inked, { timeout: 5_000 }).toBeGreaterThan(20);
});

test("a forced scale-up shows its marker and reason; hostile event text shows as text, not markup", async () => {
  const up = await proxy.inst.cli("scale-up", "1");
  expect(up.code, up.stderr).toBe(0);
  const decision = page.locator("#decisions li.up").first();
  await expect.poll(() => decision.textContent(), { timeout: 5_000 }).toMatch(/scale_uplaunching 1 node\(s\): manual scale-up of 1/);
  const marker = page.locator("#capacity-chart .marker.up").first();
  await expect.poll(() => marker.getAttribute("title"), { timeout: 5_000 }).toMatch(/scale_up: launching 1 node\(s\): manual scale-up of 1/);

  // The launch script's stderr (markup) arrives in the event log as it was written, as text.
  const failed = page.locator("#events li", { hasText: "launch_failed" }).first();
  await expect.poll(() => failed.locator(".message").textContent(), { timeout: 5_000 }).toContain(HOSTILE);
  expect(await page.locator("#events img, #events script, #decisions img").count()).toBe(0);
  expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
  // The filter keeps one kind.
  await page.selectOption("#event-kind", "launch_failed");
  const kinds = await page.locator("#events li .kind").allTextContents();
  expect(kinds.length).toBeGreaterThan(0);
  expect(new Set(kinds)).toEqual(new Set(["launch_failed"]));
  await page.selectOption("#event-kind", "");

  // The window range: per-tick samples, so the screenshot of a young master is not one minute's dot.
  await page.click('#ranges button[value="window"]');
  await expect.poll(async () => Number(await page.locator("#capacity-chart").getAttribute("data-points"))).toBeGreaterThan(20);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  expect(consoleErrors).toEqual([]);
  // Every request the page made went to the master on loopback.
  expect(requested.length).toBeGreaterThan(3);
  expect(requested.filter((u) => new URL(u).host !== `127.0.0.1:${proxy.metricsPort}`)).toEqual([]);
});

test("unknown paths are 404, methods other than GET and HEAD are 405, HEAD answers headers only", async () => {
  for (const p of ["/nope", "/page/", "/page/app.js/x", "/index.html", "/status/"]) expect((await fetch(`${base}${p}`)).status, p).toBe(404);
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
    const r = await fetch(`${base}/`, { method });
    expect(r.status, method).toBe(405);
    expect(r.headers.get("allow")).toBe("GET, HEAD");
    expect(r.headers.get("access-control-allow-origin")).toBeNull();
  }
  const head = await fetch(`${base}/page/data`, { method: "HEAD" });
  expect(head.status).toBe(200);
  expect(await head.text()).toBe("");
  const data = (await (await fetch(`${base}/page/data?range=window`)).json()) as { range: string; nodes: unknown[] };
  expect(data.range).toBe("window");
  // /status does not carry the history.
  const status = (await (await fetch(`${base}/status`)).json()) as Record<string, unknown>;
  expect(Object.keys(status)).not.toContain("series");
  expect(Object.keys(status)).not.toContain("markers");
});
