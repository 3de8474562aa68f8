/**
 * The daemons' logs: JSON lines when stdout is not a terminal (journald), readable lines when
 * it is (a real pseudo-terminal from util-linux `script`), `--log-level` to leave out the less
 * important lines, and a refusal or a scaling event as one line with its reason.
 */
import { spawn } from "node:child_process";
import { expect, afterEach, test } from "vitest";
import { startDaemon, type Daemon } from "./helpers/cluster.js";
import { makeInstallation, type Installation } from "./helpers/haproxy.js";
import { probeMaster } from "./helpers/hostile.js";
import { CLI, freePort, Scope, waitFor, waitForLine } from "./helpers/process.js";
import { shellQuote } from "./helpers/cloud.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** A folder installation whose master needs no HAProxy running: the reload trusts `true`, and a launch runs `true`. */
async function installation(): Promise<{ inst: Installation; port: number }> {
  const port = await freePort();
  const inst = await makeInstallation(scope, [
    `master.listen=127.0.0.1:${port}`,
    `master.metrics_listen=127.0.0.1:${await freePort()}`,
    "haproxy.reload_command=true",
    "haproxy.master_socket=",
    "machine.scale_up_command=true",
  ]);
  return { inst, port };
}

const lines = (log: string) =>
  log
    .split("\n")
    .map((l) => l.replace(/\r$/, ""))
    .filter((l) => l.trim() !== "");

test("with stdout not a terminal, the master prints JSON lines only: each has time, level and msg; a refusal and a scale-up are one line each, with the reason", async () => {
  const { inst, port } = await installation();
  const master = startDaemon(scope, ["master", "--config", inst.ini]);
  await master.waitForLog(/"msg":"master started"/);

  await probeMaster(port, "this is not json\n", { waitForClose: true });
  const refusal = await master.waitForLog(/agent connection closed/);
  const up = await inst.cli("scale-up");
  expect(up.code, up.stderr).toBe(0);
  await master.waitForLog(/"event":"launch_started"/);

  const parsed = lines(master.log()).map((l) => {
    expect(() => JSON.parse(l), `not a JSON line: ${l}`).not.toThrow();
    return JSON.parse(l) as Record<string, unknown>;
  });
  for (const entry of parsed) {
    expect(new Date(entry.time as string).toISOString()).toBe(entry.time);
    expect(["debug", "info", "warn", "error"]).toContain(entry.level);
    expect(typeof entry.msg).toBe("string");
  }
  // --log-level defaults to info: no debug lines.
  expect(parsed.filter((e) => e.level === "debug")).toEqual([]);

  const refused = JSON.parse(refusal) as Record<string, unknown>;
  expect(refused).toMatchObject({ level: "warn", reason: "bad_json" });
  expect(refused.msg).toMatch(/agent connection closed: .+/);
  const launches = parsed.filter((e) => e.event === "scale_up");
  expect(launches).toHaveLength(1);
  expect(launches[0]!.msg).toMatch(/launching 1 node\(s\): manual scale-up of 1/);
});

/** Start `autoscaler <args>` on a pseudo-terminal: util-linux `script` gives it one, and passes its output on. */
function startOnTerminal(args: string[]): Daemon {
  const command = ["exec", process.execPath, CLI, ...args].map(shellQuote).join(" ");
  let log = "";
  const child = spawn("script", ["-qfec", command, "/dev/null"], { stdio: ["ignore", "pipe", "pipe"] });
  scope.track(child);
  child.stdout.on("data", (b: Buffer) => (log += b.toString()));
  child.stderr.on("data", (b: Buffer) => (log += b.toString()));
  return {
    child,
    log: () => log,
    waitForLog: (pattern, timeoutMs) => waitForLine(child, () => log, pattern, timeoutMs),
  };
}

test("on a terminal, the master prints readable lines, not JSON", async () => {
  const { inst, port } = await installation();
  const master = startOnTerminal(["master", "--config", inst.ini]);
  const started = await master.waitForLog(/master started/);
  expect(started).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z INFO  master started listen=127\\.0\\.0\\.1:${port} role=decider `));
  await probeMaster(port, "this is not json\n", { waitForClose: true });
  const refusal = await master.waitForLog(/agent connection closed/);
  expect(refusal).toMatch(/^\S+Z WARN {2}agent connection closed: .+ reason=bad_json peer=127\.0\.0\.1:\d+/);
  expect(lines(master.log()).filter((l) => l.startsWith("{"))).toEqual([]);
});

test("--log-level warn leaves out info lines and keeps warnings", async () => {
  const { inst, port } = await installation();
  const master = startDaemon(scope, ["master", "--config", inst.ini, "--log-level", "warn"]);
  // Nothing at info says it started: wait until it answers on its port.
  await waitFor("the master to answer", async () => (await probeMaster(port, "this is not json\n", { waitForClose: true })).closedByMaster, 10_000, 100);
  await master.waitForLog(/agent connection closed/);
  const parsed = lines(master.log()).map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(parsed.length).toBeGreaterThan(0);
  expect(parsed.filter((e) => e.level === "info" || e.level === "debug")).toEqual([]);
  expect(parsed.some((e) => e.level === "warn" && e.reason === "bad_json")).toBe(true);
});
