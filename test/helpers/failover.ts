/**
 * Two or more masters of one cluster on loopback, each with its own installation and HAProxy,
 * sharing one etcd, and the tcp-node cloud (test/helpers/tcp-node.mjs) whose nodes report to
 * every master's port with their launch's join credential. Used by failover-kills.test.ts and
 * bench/failover.ts; failover.test.ts builds real proxies in network namespaces instead.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { shellQuote } from "./cloud.js";
import { startDaemon, type Daemon } from "./cluster.js";
import { makeInstallation, startHaproxy, type Installation } from "./haproxy.js";
import { freePort, REPO_ROOT, waitFor, type Scope } from "./process.js";
import { status } from "./status.js";

const TCP_NODE = path.join(REPO_ROOT, "test", "helpers", "tcp-node.mjs");

/** One master's box: its installation (HAProxy running on it) and its current master process. */
export interface Box {
  inst: Installation;
  masterPort: number;
  metricsPort: number;
  master: Daemon;
  startMaster(): Promise<Daemon>;
  /** SIGKILL its master (unless it is gone already) and wait for the exit. */
  killMaster(): Promise<void>;
}

/** A cluster of boxes on one etcd with the tcp-node cloud as its scale commands. */
export interface LoopbackCluster {
  boxes: Box[];
  token: string;
  cloudDir: string;
  /** The index of the one master that says it decides (status over the control socket). */
  leader(timeoutMs: number): Promise<number>;
}

/** Start `count` boxes named box-0…, with `settings` after the cluster's own (etcd, token, commands). */
export async function startLoopbackCluster(scope: Scope, count: number, endpoints: string, settings: string[]): Promise<LoopbackCluster> {
  const cloudDir = await scope.tempDir("autoscaler-tcpcloud-");
  await fs.mkdir(path.join(cloudDir, "nodes"));
  const command = (verb: string) => [process.execPath, TCP_NODE, verb, cloudDir].map(shellQuote).join(" ");
  const token = randomBytes(24).toString("base64url");
  // Nothing starts once the test is cleaning up; then every node is killed by its pid.
  scope.onCleanup(async () => {
    await fs.writeFile(path.join(cloudDir, "closed"), "");
    for (const name of await fs.readdir(path.join(cloudDir, "nodes")).catch(() => [] as string[])) {
      const pid = Number(await fs.readFile(path.join(cloudDir, "nodes", name, "node.pid"), "utf8").catch(() => ""));
      if (pid > 1)
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
    }
  });
  const boxes: Box[] = [];
  for (let i = 0; i < count; i++) {
    const masterPort = await freePort();
    const metricsPort = await freePort();
    const inst = await makeInstallation(scope, [
      `master.listen=127.0.0.1:${masterPort}`,
      `master.metrics_listen=127.0.0.1:${metricsPort}`,
      `master.token=${token}`,
      `cluster.etcd=${endpoints}`,
      `cluster.member=box-${i}`,
      `machine.scale_up_command=${command("launch")}`,
      `machine.scale_down_command=${command("terminate")}`,
      ...settings,
    ]);
    const gen = await inst.cli("generate");
    if (gen.code !== 0) throw new Error(`generate failed: ${gen.stderr}`);
    await startHaproxy(scope, inst);
    const box: Box = {
      inst,
      masterPort,
      metricsPort,
      master: undefined as unknown as Daemon,
      async startMaster() {
        const d = startDaemon(scope, ["master", "--config", inst.ini]);
        box.master = d;
        await d.waitForLog(/master started/, 15_000);
        return d;
      },
      async killMaster() {
        const child = box.master.child;
        if (child.exitCode !== null || child.signalCode !== null) return;
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        await gone;
      },
    };
    await box.startMaster();
    boxes.push(box);
  }
  await fs.writeFile(path.join(cloudDir, "setup.json"), JSON.stringify({ masterPorts: boxes.map((b) => b.masterPort), token, joinCredential: true }) + "\n");
  const leader = (timeoutMs: number) =>
    waitFor(
      "one leader",
      async () => {
        const all = await Promise.all(boxes.map((b) => status(b.inst, 1000).catch(() => undefined)));
        const leading = all.flatMap((s, i) => (s?.role === "decider" ? [i] : []));
        return leading.length === 1 ? { i: leading[0]! } : undefined;
      },
      timeoutMs,
      25,
    )
      .then((x) => x.i)
      .catch(async (err: Error) => {
        const all = await Promise.all(boxes.map((b) => status(b.inst, 1000).catch((e: Error) => e.message)));
        throw new Error(
          `${err.message}: ${JSON.stringify(all.map((x) => (typeof x === "string" ? x : { role: x.role, why: x.role_reason, cluster: x.cluster })))}`,
        );
      });
  return { boxes, token, cloudDir, leader };
}
