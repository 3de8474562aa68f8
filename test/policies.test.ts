/**
 * Named policies, webhooks and set-capacity with a real master, real HAProxy, the real CLI and
 * real shell scripts as the cloud commands (each run appends one line, so runs are counted): a
 * webhook called over HTTP on loopback runs its policy once, wrong and near-miss secrets get
 * 404, a flood of wrong calls changes nothing and is rate-limited, the secret appears in no
 * output (the suite's secrets scan), a SIGKILL while a policy's command runs does not repeat it,
 * and bad input exits 2 or 78. Schedules on the fake clock are packages/master/src/policies.test.ts;
 * the one real-time schedule is schedules-realtime.test.ts.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { startProxy, type Proxy } from "./helpers/cluster.js";
import { freePort, runCli, Scope, waitFor } from "./helpers/process.js";
import { registerSecret } from "./helpers/secrets.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** What `webhook add` prints on purpose: the URL's secret (43 base64url characters). */
const HOOK_URL = /\/hooks\/[A-Za-z0-9_-]{43}/;

interface PolicyProxy extends Proxy {
  webhookPort: number;
  runs: () => Promise<string[]>;
}

/** A proxy whose launch script logs `start COUNT`, does `body`, then logs `end`; with `[policy:out] change = +1, cooldown = 600`. */
async function proxyWithPolicies(settings: string[] = [], body = ""): Promise<PolicyProxy> {
  const cloud = await scope.tempDir("autoscaler-policy-cloud-");
  const log = path.join(cloud, "runs.log");
  await fs.writeFile(path.join(cloud, "launch.sh"), `#!/bin/sh\necho "start $COUNT" >> "${log}"\n${body}\necho end >> "${log}"\n`);
  const webhookPort = await freePort();
  const proxy = await startProxy(scope, {
    settings: [
      `machine.scale_up_command=sh '${cloud}/launch.sh'`,
      `master.webhook_listen=127.0.0.1:${webhookPort}`,
      "master.interval=0.2",
      // Only the policies act: no automatic decision ever has a full window of data here.
      "scaling.mode=instance",
      "scaling.window=600",
      "scaling.scale_up_cooldown=0",
      "policy:out.change=+1",
      "policy:out.cooldown=600",
      "policy:four.desired=4",
      ...settings,
    ],
  });
  return Object.assign(proxy, {
    webhookPort,
    runs: async () => (await fs.readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean),
  });
}

/** `webhook add`: the URL it prints once (registered as a secret of the suite from then on). */
async function addWebhook(proxy: Proxy, ...args: string[]): Promise<{ name: string; path: string; secret: string }> {
  const r = await runCli(["webhook", "add", ...args, "--json", "--config", proxy.inst.ini], { shows: HOOK_URL });
  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { name: string; path: string };
  const secret = out.path.slice("/hooks/".length);
  registerSecret(secret, `webhook ${out.name}'s secret`);
  return { name: out.name, path: out.path, secret };
}

const post = (port: number, urlPath: string, body?: string) =>
  fetch(`http://127.0.0.1:${port}${urlPath}`, { method: "POST", ...(body !== undefined ? { body } : {}) });

test("a webhook runs its policy once over HTTP; wrong and near-miss secrets get 404; 1,000 wrong calls change nothing and are rate-limited; the secret is in no output", async () => {
  const proxy = await proxyWithPolicies();
  const hook = await addWebhook(proxy, "out", "--name", "alarm");
  expect(hook.name).toBe("alarm");

  // The state keeps only the secret's SHA-256, in a file of mode 0600.
  const stateFile = path.join(proxy.inst.stateDir, "state.json");
  const stateText = await fs.readFile(stateFile, "utf8");
  expect(stateText).not.toContain(hook.secret);
  expect(stateText).toMatch(/"sha256": "[0-9a-f]{64}"/);
  expect((await fs.stat(stateFile)).mode & 0o777).toBe(0o600);

  const first = await post(proxy.webhookPort, hook.path, '{"alarm":"cpu high"}');
  expect(first.status).toBe(202);
  expect(await first.json()).toMatchObject({ webhook: "alarm", policy: "out", outcome: "executed" });
  await waitFor("the launch command to finish", async () => (await proxy.runs()).includes("end"));
  // The same call again: inside the policy's own cooldown, so nothing more runs.
  const again = await post(proxy.webhookPort, hook.path);
  expect(again.status).toBe(202);
  expect(await again.json()).toMatchObject({ outcome: "not_executed", result: expect.stringMatching(/policy out's own cooldown/) as unknown });
  expect(await proxy.runs()).toEqual(["start 1", "end"]);

  const near = hook.secret.slice(0, -1) + (hook.secret.endsWith("A") ? "B" : "A");
  expect((await post(proxy.webhookPort, `/hooks/${near}`)).status).toBe(404);
  expect((await post(proxy.webhookPort, `/hooks/${"x".repeat(43)}`)).status).toBe(404);
  expect((await fetch(`http://127.0.0.1:${proxy.webhookPort}${hook.path}`)).status).toBe(405);
  expect((await post(proxy.webhookPort, hook.path, "x".repeat(65 * 1024))).status).toBe(413);

  const before = await status(proxy);
  expect(before.events.some((e) => e.kind === "webhook" && e.message.startsWith("webhook alarm (policy out) from 127.0.0.1"))).toBe(true);
  const codes = new Map<number, number>();
  for (let i = 0; i < 1000; i++) {
    const wrong = `/hooks/${hook.secret.slice(0, 10)}${String(i).padStart(33, "0")}`;
    const r = await post(proxy.webhookPort, wrong);
    await r.arrayBuffer();
    codes.set(r.status, (codes.get(r.status) ?? 0) + 1);
  }
  expect([...codes.keys()].sort()).toEqual([404, 429]);
  expect(codes.get(429)).toBeGreaterThan(900);
  const after = await status(proxy);
  expect(after.launches).toEqual(before.launches);
  // (cooldown_left_seconds goes down with time: everything else is as before.)
  const runsOf = (x: typeof before) => x.policies.map(({ cooldown_left_seconds: _, ...rest }) => rest);
  expect(runsOf(after)).toEqual(runsOf(before));
  expect(after.webhooks).toEqual([{ name: "alarm", policy: "out", created_at: expect.any(String) as unknown }]);
  expect(await proxy.runs()).toEqual(["start 1", "end"]);

  // Status, metrics and the event log show the call by the hook's name.
  expect(after.policies.find((p) => p.name === "out")).toMatchObject({ last_via: "webhook alarm", runs: { executed: 1, discarded: 1 } });
  // The flood is one event (per 10 s), not a thousand: the hook's calls are still among the last 20.
  expect(after.events.filter((e) => e.kind === "webhook_unknown").length).toBeLessThanOrEqual(3);
  expect(after.events.some((e) => e.kind === "webhook" && e.message.startsWith("webhook alarm (policy out) from 127.0.0.1"))).toBe(true);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^autoscaler_webhook_calls_total\{hook="alarm",result="executed"\} 1$/m);
  expect(metrics).toMatch(/^autoscaler_webhook_calls_total\{hook="alarm",result="not_executed"\} 1$/m);
  expect(metrics).toMatch(/^autoscaler_webhook_calls_total\{hook="unknown",result="rate_limited"\} \d{3}$/m);
  expect(metrics).toMatch(/^autoscaler_policy_executions_total\{policy="out",result="executed"\} 1$/m);
  expect(metrics).toMatch(/^autoscaler_policy_executions_total\{policy="out",result="discarded"\} 1$/m);

  const list = await proxy.inst.cli("webhook", "list");
  expect(list.code).toBe(0);
  expect(list.stdout).toMatch(/^alarm\s+out\s/m);
  const removed = await proxy.inst.cli("webhook", "remove", "alarm");
  expect(removed.code, removed.stderr).toBe(0);
  expect((await post(proxy.webhookPort, hook.path)).status).toBe(404);
  // Everything the suite saw (the master's log, every CLI output) is scanned for the secret at cleanup.
});

test("execute, policies, set-capacity and scale-up N% over the control socket; bad input exits 2", async () => {
  const proxy = await proxyWithPolicies();
  const executed = await proxy.inst.cli("execute", "four");
  expect(executed.code, executed.stderr).toBe(0);
  expect(executed.stdout).toMatch(/^policy four: executed: =4 from 0 to 4/);
  const again = await proxy.inst.cli("execute", "four");
  expect(again.code).toBe(0);
  expect(again.stdout).toMatch(/no_change: =4 from 4: already at 4/);
  const up = await proxy.inst.cli("scale-up", "50%");
  expect(up.code, up.stderr).toBe(0);
  expect(up.stdout).toMatch(/launching 2 node\(s\): manual scale-up of 50% of 4 = 2/);
  const set = await proxy.inst.cli("set-capacity", "7");
  expect(set.code, set.stderr).toBe(0);
  expect(set.stdout).toMatch(/set-capacity 7/);
  await waitFor("four launches to finish", async () => (await proxy.runs()).filter((l) => l === "end").length === 3);
  expect((await proxy.runs()).filter((l) => l.startsWith("start"))).toEqual(["start 4", "start 2", "start 1"]);

  const listed = await proxy.inst.cli("policies", "--json");
  expect(listed.code).toBe(0);
  const policies = (JSON.parse(listed.stdout) as { policies: { name: string; action: string; last_outcome: string | null }[] }).policies;
  expect(policies.map((p) => [p.name, p.action, p.last_outcome])).toEqual([
    ["out", "+1", null],
    ["four", "=4", "no_change"],
  ]);

  for (const args of [
    ["execute", "nope"],
    ["webhook", "add", "nope"],
    ["set-capacity", "many"],
    ["scale-up", "0%"],
  ]) {
    const r = await proxy.inst.cli(...args);
    expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2);
  }
  expect((await proxy.inst.cli("webhook", "add", "nope")).stderr).toMatch(/unknown policy "nope"; the ini has: out, four/);
});

test("a policy with two actions, a bad cron or time zone: exit 78 naming the section and the field", async () => {
  const dir = await scope.tempDir("autoscaler-policy-ini-");
  const cases: [string, RegExp][] = [
    ["[policy:up]\nchange = +1\ndesired = 3\n", /\[policy:up\]: has change and desired; expected exactly one of/],
    ["[policy:up]\ncooldown = 60\n", /\[policy:up\]: has none; expected exactly one of/],
    ["[schedule:s]\ncron = 0 25 * * *\nmin_nodes = 2\n", /schedule:s\.cron: "0 25 \* \* \*" is not valid/],
    ["[schedule:s]\ncron = 0 8 * * *\ntimezone = Europe/Nowhere\nmin_nodes = 2\n", /schedule:s\.timezone: "Europe\/Nowhere" is not valid/],
  ];
  for (const [i, [text, message]] of cases.entries()) {
    const ini = path.join(dir, `bad-${i}.ini`);
    await fs.writeFile(ini, text, { mode: 0o600 });
    const r = await runCli(["check-config", "--config", ini]);
    expect(r.code, r.stderr).toBe(78);
    expect(r.stderr).toMatch(message);
  }
});

test("SIGKILL while a policy's command runs: it is not run again after the restart, and the policy's cooldown holds", async () => {
  const proxy = await proxyWithPolicies(["machine.launch_timeout=60"], "sleep 3");
  const executed = await proxy.inst.cli("execute", "out");
  expect(executed.code, executed.stderr).toBe(0);
  await waitFor("the launch command to start", async () => (await proxy.runs()).includes("start 1"));
  process.kill(proxy.master.child.pid!, "SIGKILL");
  await waitFor("the master to die", async () => proxy.master.child.signalCode === "SIGKILL");
  proxy.master = await proxy.startMaster();
  const s = await waitFor("the interrupted launch to be recovered", async () => {
    const st = await status(proxy);
    return st.launches.some((l) => l.note !== null) ? st : undefined;
  });
  expect(s.launches).toMatchObject([{ status: "pending", count: 1, reason: expect.stringMatching(/^policy out \(execute\)/) as unknown }]);
  expect(s.events.map((e) => e.kind)).toContain("launch_recovered");
  const again = await proxy.inst.cli("execute", "out");
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(/policy out discarded: .*own cooldown/);
  // The command from before the kill finishes by itself; it ran exactly once.
  await waitFor("the first command to end", async () => (await proxy.runs()).includes("end"), 10_000);
  expect(await proxy.runs()).toEqual(["start 1", "end"]);
});
