import { spawn, type ChildProcess } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { createSampler, parsePidStatTicks, parseProcStat, readCgroupUsageMicros } from "./sampler.js";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), "sampler-test-"));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => fs.rm(d, { recursive: true, force: true })));
});

describe("parseProcStat", () => {
  test("counts iowait as idle and leaves guest time out of the total (it is already in user)", () => {
    const stat = "cpu  100 0 50 800 50 0 0 0 30 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
    expect(parseProcStat(stat)).toEqual({ busy: 150, total: 1000 });
  });
  test("refuses a file without the aggregate cpu line", () => {
    expect(() => parseProcStat("cpu0 1 2 3 4\n")).toThrow(/no aggregate cpu line/);
  });
});

test("parsePidStatTicks reads utime + stime even when the command name holds ') ('", () => {
  const stat = "1234 (we ird) (name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 1000 50";
  expect(parsePidStatTicks(stat)).toBe(325);
});

describe("createSampler over counters written by the test", () => {
  test("system: the delta between two reads of /proc/stat, as a percent of all time", async () => {
    const root = await tempDir();
    await fs.writeFile(path.join(root, "stat"), "cpu  100 0 0 900 0 0 0 0 0 0\n");
    const s = createSampler({ kind: "system" }, { procRoot: root });
    expect(await s.sample()).toBeUndefined();
    await fs.writeFile(path.join(root, "stat"), "cpu  400 0 0 1600 0 0 0 0 0 0\n");
    expect(await s.sample()).toBe(30);
  });

  test.each([
    ["cgroup v2 cpu.stat", "cpu.stat", (us: number) => `usage_usec ${us}\nuser_usec 0\nsystem_usec 0\n`],
    ["cgroup v1 cpuacct.usage", "cpuacct.usage", (us: number) => `${us * 1000}\n`],
  ])("%s: CPU seconds over wall seconds, spread over the cores", async (_name, file, body) => {
    const dir = await tempDir();
    let t = 0;
    const s = createSampler({ kind: "cgroup", path: dir }, { now: () => t, cores: 4 });
    await fs.writeFile(path.join(dir, file), body(1_000_000));
    expect(await s.sample()).toBeUndefined();
    t = 2000; // 2 s later, 4 s of CPU used out of 8 core-seconds
    await fs.writeFile(path.join(dir, file), body(5_000_000));
    expect(await s.sample()).toBe(50);
    expect(await readCgroupUsageMicros(dir)).toBe(5_000_000);
  });

  test("cgroup: a folder without counters is refused with a message naming both files", async () => {
    const dir = await tempDir();
    await expect(readCgroupUsageMicros(dir)).rejects.toThrow(/cpu\.stat.*cpuacct\.usage/);
  });

  test("pid: a pid file that does not hold a number is refused", async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, "app.pid"), "not-a-pid\n");
    const s = createSampler({ kind: "pid", pidFile: path.join(dir, "app.pid") });
    await expect(s.sample()).rejects.toThrow(/does not hold a process id/);
  });
});

/** Start a node child that prints "ready" once running, then runs `body`; resolves when it is ready. */
async function startChild(body: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["-e", `process.stdout.write("ready\\n"); ${body}`], { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("error", reject);
  });
  return child;
}

test("pid: a real busy process reads as busy, an idle one as nearly idle", async () => {
  const dir = await tempDir();
  const burn = await startChild("const end = Date.now() + 5000; while (Date.now() < end) {}");
  const idle = await startChild("setTimeout(() => {}, 5000)");
  try {
    await fs.writeFile(path.join(dir, "burn.pid"), `${burn.pid}\n`);
    await fs.writeFile(path.join(dir, "idle.pid"), `${idle.pid}\n`);
    const cores = 1; // percent of one core, so the figure does not depend on the machine's size
    const hot = createSampler({ kind: "pid", pidFile: path.join(dir, "burn.pid") }, { cores });
    const cold = createSampler({ kind: "pid", pidFile: path.join(dir, "idle.pid") }, { cores });
    await hot.sample();
    await cold.sample();
    await new Promise((r) => setTimeout(r, 1000)); // the measuring interval itself, not a wait for an event
    const h = await hot.sample();
    const c = await cold.sample();
    // Relative, so a loaded 2-core machine (other suites, HAProxy under load) cannot fail it:
    // the burner always gets some CPU, the sleeper none.
    expect(c).toBeLessThan(5);
    expect(h).toBeGreaterThan(c! + 5);
  } finally {
    burn.kill("SIGKILL");
    idle.kill("SIGKILL");
  }
});

test("system: the real /proc/stat gives a percentage between 0 and 100", async () => {
  const s = createSampler({ kind: "system" });
  await s.sample();
  await new Promise((r) => setTimeout(r, 200));
  const v = await s.sample();
  expect(v).toBeGreaterThanOrEqual(0);
  expect(v).toBeLessThanOrEqual(100);
});
