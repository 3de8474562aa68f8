import { existsSync, readFileSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { createShellRunner, describeExit, type CommandResult } from "./command-runner.js";

/** True once `pid` no longer runs: gone, or a zombie waiting to be reaped by whoever inherited it. */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
  try {
    // /proc/PID/stat: "pid (comm) STATE ..."; Z is a zombie, X dead.
    const state = /\)\s+(\S)/.exec(readFileSync(`/proc/${pid}/stat`, "utf8"))?.[1];
    return state === "Z" || state === "X";
  } catch {
    return true;
  }
}

/** Poll a condition until it holds or `timeoutMs` passes; no fixed sleeps. */
async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return condition();
}

describe("createShellRunner", () => {
  let dir: string;
  const stray: number[] = [];
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-runner-"));
  });
  afterEach(async () => {
    // Only if a test failed half-way: stop what it started, by pid.
    for (const pid of stray.splice(0)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await fs.rm(dir, { recursive: true, force: true });
  });

  const runner = createShellRunner();

  test.each([
    ["a ; and a command after it", "x; touch injected"],
    ["a command substitution", "$(touch injected)"],
    ["backticks", "`touch injected`"],
    ["quotes that try to end the string", 'x"; touch injected; echo "'],
    ["a newline and a command", "x\ntouch injected"],
  ])("passes a value with %s through the environment only, never running it", async (_what, value) => {
    const result = await runner.run('printf %s "$V"', { env: { V: value }, cwd: dir });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(value);
    expect(existsSync(path.join(dir, "injected"))).toBe(false);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  test("runs in the cwd given", async () => {
    const result = await runner.run("pwd", { cwd: dir });
    expect(result.stdout.trim()).toBe(await fs.realpath(dir));
  });

  test("captures stdout and stderr apart", async () => {
    const result = await runner.run("echo out; echo err >&2; echo more");
    expect(result).toMatchObject({ code: 0, signal: null, timedOut: false, stdout: "out\nmore\n", stderr: "err\n" });
  });

  test("reports the exit code", async () => {
    const result = await runner.run("echo failing >&2; exit 3");
    expect(result).toMatchObject({ code: 3, signal: null, timedOut: false, stderr: "failing\n" });
  });

  test("reports the signal that ended the command", async () => {
    const result = await runner.run("kill -TERM $$");
    expect(result).toMatchObject({ code: null, signal: "SIGTERM", timedOut: false });
  });

  test("keeps only the tail of a long output", async () => {
    const result = await runner.run("printf 0123456789; printf abcdef >&2", { maxOutputBytes: 4 });
    expect(result.stdout).toBe("6789");
    expect(result.stderr).toBe("cdef");
  });

  test("merges env over the base environment", async () => {
    const base = createShellRunner({ PATH: process.env.PATH, BASE: "from-base", BOTH: "base" });
    const result = await base.run('printf "%s %s %s" "$BASE" "$BOTH" "$ONLY"', { env: { BOTH: "override", ONLY: "given" } });
    expect(result.stdout).toBe("from-base override given");
  });

  test("does not leak the test's environment into a runner given another base", async () => {
    const base = createShellRunner({ PATH: process.env.PATH });
    const result = await base.run('printf %s "${HOME-unset}"');
    expect(result.stdout).toBe("unset");
  });

  test("fails when the cwd does not exist", async () => {
    await expect(runner.run("true", { cwd: path.join(dir, "missing") })).rejects.toMatchObject({ code: "ENOENT" });
  });

  test("a timeout kills the whole process group, background children included", async () => {
    // The inner shell starts a background sleep, prints its pid, then waits in the foreground.
    const started = Date.now();
    const result = await runner.run(`sh -c 'sleep 30 & echo $!; sleep 30'`, { timeoutMs: 300 });
    const pid = Number(result.stdout.trim());
    expect(pid).toBeGreaterThan(1);
    stray.push(pid);
    expect(result.timedOut).toBe(true);
    expect(result.signal).toBe("SIGKILL");
    expect(Date.now() - started).toBeLessThan(10_000);
    const gone = await waitFor(() => processGone(pid), 5_000);
    if (gone) stray.splice(stray.indexOf(pid), 1); // its pid may be reused now: never signal it again
    expect(gone).toBe(true);
  });
});

describe("describeExit", () => {
  const base: CommandResult = { code: 0, signal: null, stdout: "", stderr: "", timedOut: false, durationMs: 12.4 };
  test.each([
    ["a clean exit", { code: 0 }, "exit code 0"],
    ["a failing exit", { code: 2 }, "exit code 2"],
    ["an end by signal", { code: null, signal: "SIGTERM" as const }, "ended by signal SIGTERM"],
    ["a timeout, whatever the signal", { code: null, signal: "SIGKILL" as const, timedOut: true, durationMs: 1999.6 }, "timed out after 2000 ms"],
  ])("describes %s", (_what, fields, expected) => {
    expect(describeExit({ ...base, ...fields })).toBe(expected);
  });
});
