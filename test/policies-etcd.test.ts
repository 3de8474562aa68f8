/**
 * Webhooks and policy runs with `[cluster] etcd`: a real one-member etcd, two real masters (one
 * campaigns and leads, one a follower), real HAProxy, the real CLI. The webhook lives in the
 * shared state under the prefix (its SHA-256 only); the follower answers 503 and runs nothing;
 * the leader's run is in the shared state, so the follower's copy shows it.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { startDaemon } from "./helpers/cluster.js";
import { startEtcd } from "./helpers/etcd.js";
import { makeInstallation, startHaproxy } from "./helpers/haproxy.js";
import { freePort, runCli, Scope, waitFor } from "./helpers/process.js";
import { registerSecret } from "./helpers/secrets.js";
import { status } from "./helpers/status.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

test("with etcd the webhook is in the shared state (hash only); a follower answers 503; the leader runs it once and the follower's copy shows the run", async () => {
  const etcd = await startEtcd(scope, 1);
  const cloud = await scope.tempDir("autoscaler-policy-etcd-");
  const log = path.join(cloud, "runs.log");
  await fs.writeFile(path.join(cloud, "launch.sh"), `#!/bin/sh\necho "start $COUNT" >> "${log}"\n`);
  // One cluster: the same token on both masters.
  const token = randomBytes(24).toString("base64url");
  registerSecret(token, "the cluster's master.token");
  const runs = async () => (await fs.readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);

  const start = async (member: string, role: "auto" | "follower") => {
    const webhookPort = await freePort();
    const inst = await makeInstallation(scope, [
      `master.listen=127.0.0.1:${await freePort()}`,
      `master.metrics_listen=127.0.0.1:${await freePort()}`,
      `master.webhook_listen=127.0.0.1:${webhookPort}`,
      `master.role=${role}`,
      `master.token=${token}`,
      `cluster.etcd=${etcd.endpoints}`,
      `cluster.member=${member}`,
      "cluster.lease_ttl=2",
      "master.interval=0.2",
      `machine.scale_up_command=sh '${cloud}/launch.sh'`,
      "scaling.mode=instance",
      "scaling.window=600",
      "scaling.scale_up_cooldown=0",
      "policy:out.change=+1",
      "policy:out.cooldown=600",
    ]);
    expect((await inst.cli("generate", "--no-reload")).code).toBe(0);
    await startHaproxy(scope, inst);
    const master = startDaemon(scope, ["master", "--config", inst.ini]);
    await master.waitForLog(/master started/, 20_000);
    return { inst, webhookPort };
  };
  const leader = await start("a", "auto");
  await waitFor("a to lead", async () => (await status(leader.inst)).role === "decider", 15_000, 100);
  const follower = await start("b", "follower");

  const added = await runCli(["webhook", "add", "out", "--name", "alarm", "--json", "--config", leader.inst.ini], { shows: /\/hooks\/[A-Za-z0-9_-]{43}/ });
  expect(added.code, added.stderr).toBe(0);
  const hookPath = (JSON.parse(added.stdout) as { path: string }).path;
  const secret = hookPath.slice("/hooks/".length);
  registerSecret(secret, "webhook alarm's secret");

  const shared = await etcd.ctl("get", "--print-value-only", "/autoscaler/default/state");
  expect(shared).toMatch(/"name": "alarm"[\s\S]*"sha256": "[0-9a-f]{64}"/);
  expect(shared).not.toContain(secret);

  // A webhook on a follower: 503, nothing runs; and a follower refuses to add one.
  const onFollower = await fetch(`http://127.0.0.1:${follower.webhookPort}${hookPath}`, { method: "POST" });
  expect(onFollower.status).toBe(503);
  expect((await fetch(`http://127.0.0.1:${follower.webhookPort}/leader`)).status).toBe(503);
  expect((await fetch(`http://127.0.0.1:${leader.webhookPort}/leader`)).status).toBe(200);
  const refused = await follower.inst.cli("webhook", "add", "out");
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/this master is a follower .*a leads now: run it there/);

  const onLeader = await fetch(`http://127.0.0.1:${leader.webhookPort}${hookPath}`, { method: "POST" });
  expect(onLeader.status).toBe(202);
  await waitFor("the launch command", async () => (await runs()).length === 1);
  const seen = await waitFor(
    "the follower's copy of the shared state to show the run",
    async () => {
      const s = await status(follower.inst);
      return s.policies[0]?.last_via === "webhook alarm" ? s : undefined;
    },
    10_000,
    100,
  );
  expect(seen.policies[0]).toMatchObject({ name: "out", last_outcome: "executed" });
  expect(seen.webhooks).toEqual([{ name: "alarm", policy: "out", created_at: expect.any(String) as unknown }]);
  expect(await runs()).toEqual(["start 1"]);
});
