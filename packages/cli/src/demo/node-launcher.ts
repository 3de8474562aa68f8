/**
 * `autoscaler demo-node launch|terminate DIR` (hidden): the demo's "cloud". The demo's master
 * runs it as its scale_up_command and scale_down_command, exactly as it would run the AWS CLI.
 *
 *   launch     starts $COUNT local nodes: each a web app (`autoscaler demo-web`) and a real
 *              `autoscaler agent` that reaches the master through the demo's SSH endpoint; prints
 *              `aws ec2 run-instances`-shaped JSON so the master matches them by instance id.
 *   terminate  stops the node whose instance id is $INSTANCE_ID (read from the environment).
 *
 * Nodes live in DIR/nodes/<name>/ with their ini, key and pids; the demo removes them all at the end.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { openSync, promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";

/** What the demo writes for its cloud: where the CLI is and what every node's ini needs. */
export interface DemoCloudConfig {
  cli: string;
  settings: string[];
  workMs: number;
}

const CLOUD_FILE = "cloud.json";

/** Write the cloud's config for `launch` to read. */
export async function writeCloudConfig(dir: string, cloud: DemoCloudConfig): Promise<void> {
  await fs.writeFile(path.join(dir, CLOUD_FILE), JSON.stringify(cloud, null, 2));
}

/** A free TCP port on 127.0.0.1 (the kernel's pick, released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The next free node name: mkdir is atomic, so two launches never get the same one. */
async function claimName(nodesDir: string): Promise<string> {
  await fs.mkdir(nodesDir, { recursive: true });
  for (let n = 1; n < 1000; n++) {
    try {
      await fs.mkdir(path.join(nodesDir, `web-${n}`));
      return `web-${n}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  throw new Error("no free node name");
}

/** Start one node; returns its instance id. */
async function startNode(dir: string, cloud: DemoCloudConfig, joinCredential: string | undefined): Promise<{ name: string; instanceId: string }> {
  const name = await claimName(path.join(dir, "nodes"));
  const nodeDir = path.join(dir, "nodes", name);
  const instanceId = `i-${randomBytes(8).toString("hex")}`;
  const port = await freePort();
  const ini = path.join(nodeDir, "autoscaler.ini");
  // As a launch template's user-data would: the launch's join credential instead of the cluster secret.
  const credential = joinCredential
    ? cloud.settings.filter((x) => !x.startsWith("master.token=")).concat(`agent.credential=${joinCredential}`)
    : cloud.settings;
  const settings = [
    ...credential,
    `agent.name=${name}`,
    "agent.address=127.0.0.1",
    `agent.port=${port}`,
    `agent.instance_id=${instanceId}`,
    "agent.cpu_source=pid:web.pid",
    "master.state_dir=state",
  ];
  const init = spawnSync(process.execPath, [cloud.cli, "init", "--config", ini, ...settings.flatMap((s) => ["--set", s])], { encoding: "utf8" });
  if (init.status !== 0) throw new Error(`cannot write ${name}'s ini: ${init.stderr.trim()}`);
  await fs.writeFile(path.join(nodeDir, "instance-id"), instanceId);
  const log = openSync(path.join(nodeDir, "node.log"), "a");
  const detached = { detached: true, stdio: ["ignore", log, log] as ["ignore", number, number] };
  const web = spawn(
    process.execPath,
    [cloud.cli, "demo-web", "--name", name, "--port", String(port), "--pid-file", path.join(nodeDir, "web.pid"), "--work-ms", String(cloud.workMs)],
    detached,
  );
  web.unref();
  const agent = spawn(process.execPath, [cloud.cli, "agent", "--config", ini], detached);
  agent.unref();
  await fs.writeFile(path.join(nodeDir, "pids"), `${web.pid}\n${agent.pid}\n`);
  return { name, instanceId };
}

/** Every node folder with its instance id and pids. */
export async function listDemoNodes(dir: string): Promise<{ name: string; instanceId: string; pids: number[]; terminated: boolean }[]> {
  const nodesDir = path.join(dir, "nodes");
  const names = await fs.readdir(nodesDir).catch(() => [] as string[]);
  const out = [];
  for (const name of names) {
    const d = path.join(nodesDir, name);
    const instanceId = (await fs.readFile(path.join(d, "instance-id"), "utf8").catch(() => "")).trim();
    const pids = (await fs.readFile(path.join(d, "pids"), "utf8").catch(() => "")).split("\n").filter(Boolean).map(Number);
    const terminated = await fs.access(path.join(d, "terminated")).then(
      () => true,
      () => false,
    );
    out.push({ name, instanceId, pids, terminated });
  }
  return out;
}

/** Stop processes by pid: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopPids(pids: number[], graceMs = 2000): Promise<void> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
}

/** Run `launch` or `terminate`; returns the exit code. */
export async function runDemoNode(
  action: "launch" | "terminate",
  dir: string,
  env: NodeJS.ProcessEnv,
  out: { write(s: string): unknown },
  err: { write(s: string): unknown },
): Promise<number> {
  const cloud = JSON.parse(await fs.readFile(path.join(dir, CLOUD_FILE), "utf8")) as DemoCloudConfig;
  if (action === "launch") {
    if (
      await fs.access(path.join(dir, "closed")).then(
        () => true,
        () => false,
      )
    ) {
      err.write("the demo is ending; no more nodes\n");
      return 5;
    }
    const count = Number(env.COUNT ?? "1");
    if (!Number.isInteger(count) || count < 1 || count > 10) {
      err.write(`COUNT ${JSON.stringify(env.COUNT)} is not valid; expected 1 to 10\n`);
      return 2;
    }
    const started = [];
    for (let i = 0; i < count; i++) started.push(await startNode(dir, cloud, env.AUTOSCALER_JOIN_CREDENTIAL));
    out.write(JSON.stringify({ Instances: started.map((s) => ({ InstanceId: s.instanceId, Tags: [{ Key: "Name", Value: s.name }] })) }, null, 2) + "\n");
    return 0;
  }
  const id = env.INSTANCE_ID ?? "";
  const node = (await listDemoNodes(dir)).find((n) => n.instanceId === id && id !== "");
  if (!node) {
    err.write(`no demo node has instance id ${JSON.stringify(id)}\n`);
    return 4;
  }
  await stopPids(node.pids);
  await fs.writeFile(path.join(dir, "nodes", node.name, "terminated"), new Date().toISOString());
  out.write(JSON.stringify({ TerminatingInstances: [{ InstanceId: id, CurrentState: { Name: "shutting-down" } }] }) + "\n");
  return 0;
}
