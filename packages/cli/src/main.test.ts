import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ed25519KeyPair } from "@autoscaler/agent";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { Io } from "./io.js";
import { main, parseAgentArgs } from "./main.js";
import { run } from "./run.js";

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../bin/autoscaler.js");

function sink() {
  const chunks: string[] = [];
  return { write: (s: string) => chunks.push(s), text: () => chunks.join("") };
}

describe("parseAgentArgs", () => {
  test.each([
    [[], {}],
    [["--config", "a.ini"], { config: "a.ini" }],
    [["--config=a=b.ini"], { config: "a=b.ini" }],
    [["--log-level", "debug", "--config", "/etc/x.ini"], { config: "/etc/x.ini", logLevel: "debug" }],
    [["--log-level=error"], { logLevel: "error" }],
  ])("%j is read here", (argv, expected) => {
    expect(parseAgentArgs(argv)).toEqual({ config: undefined, logLevel: undefined, ...expected });
  });

  test.each([
    [["--help"]],
    [["-h"]],
    [["--version"]],
    [["--config"]],
    [["--config="]],
    [["--config", "-x"]],
    [["--config", "a", "--config", "b"]],
    [["--log-level", "loud"]],
    [["--logLevel", "debug"]],
    [["--json"]],
    [["--bogus", "1"]],
    [["extra"]],
    [["--", "--config", "a"]],
  ])("%j is left to yargs", (argv) => {
    expect(parseAgentArgs(argv)).toBeUndefined();
  });
});

describe("main answers agent command lines as run (yargs) does", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-main-"));
    await fs.writeFile(path.join(dir, "bad.ini"), "[scaling]\nmin_nodes = 5\nmax_nodes = 2\n", { mode: 0o600 });
    await fs.writeFile(path.join(dir, "no-servers.ini"), "[master]\ntoken = 0123456789abcdef0123\n", { mode: 0o600 });
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test.each([
    [["agent", "--config", "missing.ini"]],
    [["agent", "--config=bad.ini", "--log-level", "debug"]],
    [["agent", "--config", "no-servers.ini"]],
    [["agent", "--help"]],
    [["agent", "--version"]],
    [["agent", "--config"]],
    [["agent", "--log-level", "loud", "--config", "bad.ini"]],
    [["agent", "--config", "bad.ini", "extra"]],
    [["agent", "--bogus"]],
    [["--config", "bad.ini", "agent"]],
    [["agent", "--config", "a.ini", "--config", "bad.ini"]],
  ])("%j", async (argv) => {
    const answer = async (f: (argv: string[], io: Io) => Promise<number>) => {
      const stdout = sink();
      const stderr = sink();
      const code = await f(argv, { stdout, stderr, env: { HOME: dir, PATH: process.env.PATH }, cwd: dir });
      return { code, stdout: stdout.text(), stderr: stderr.text() };
    };
    expect(await answer(main)).toEqual(await answer(run));
  });
});

/**
 * Start `autoscaler agent` as a node does, with a hook that records every module the process
 * loads: ES modules as node resolves them, CommonJS ones from require's cache and node's own
 * (process.moduleLoadList: "NativeModule internal/deps/undici/undici" is fetch's) at exit.
 */
async function modulesLoaded(
  argv: string[],
  cwd: string,
  until: RegExp,
  env: Record<string, string> = {},
): Promise<{ modules: string[]; output: string; code: number | null }> {
  const list = path.join(cwd, `modules-${Date.now()}.txt`);
  const hook = `import { appendFileSync } from "node:fs"; let list;
export function initialize(d) { list = d.list; }
export async function resolve(s, c, next) { const r = await next(s, c); appendFileSync(list, r.url + "\\n"); return r; }`;
  const preload = `import { register, createRequire } from "node:module"; import { appendFileSync } from "node:fs";
register("data:text/javascript," + encodeURIComponent(${JSON.stringify(hook)}), { data: { list: ${JSON.stringify(list)} } });
process.on("exit", () => appendFileSync(${JSON.stringify(list)}, [...Object.keys(createRequire(${JSON.stringify(list)}).cache).map((f) => "file://" + f), ...process.moduleLoadList].join("\\n") + "\\n"));`;
  const child = spawn(process.execPath, ["--import", "data:text/javascript," + encodeURIComponent(preload), BIN, ...argv], {
    cwd,
    env: { HOME: cwd, PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${until} within 20 s: ${output}`)), 20_000);
    const onData = (b: Buffer) => {
      output += b.toString();
      if (until.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    void exited.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  // A moment for the daemon to take SIGTERM (it does once started): the hook writes at a clean exit.
  await new Promise((r) => setTimeout(r, 500));
  child.kill("SIGTERM");
  const code = await exited;
  return { modules: (await fs.readFile(list, "utf8")).trim().split("\n"), output, code };
}

describe("what `autoscaler agent` loads (real processes)", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-main-graph-"));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("a running agent has loaded neither yargs, the other commands, the master, zod, ssh2's server nor fetch; --help does load yargs", async () => {
    // A closed port: the agent starts, asks the metadata service and health_url there (both with
    // its HTTP client), and waits for health until it is stopped.
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    await fs.writeFile(path.join(dir, "node_key"), ed25519KeyPair().private, { mode: 0o600 });
    const settings = [
      `haproxy.servers=127.0.0.1:${port}`,
      "haproxy.ssh_command=ssh -i node_key autoscaler@$HOST",
      "master.state_dir=state",
      "agent.address=127.0.0.1",
      "agent.interval=1",
      `agent.health_url=http://127.0.0.1:${port}/health`,
    ];
    const io: Io = { stdout: sink(), stderr: sink(), env: { HOME: dir, PATH: process.env.PATH }, cwd: dir };
    expect(await run(["init", "--config", "autoscaler.ini", ...settings.flatMap((s) => ["--set", s])], io)).toBe(0);

    const agent = await modulesLoaded(["agent", "--config", "autoscaler.ini"], dir, /waiting for the health check/, {
      AUTOSCALER_METADATA_URL: `http://127.0.0.1:${port}`,
    });
    expect(agent.output).toMatch(/"agent started"/);
    expect(agent.code).toBe(0);
    const loaded = (part: string) => agent.modules.some((m) => m.includes(part));
    // What the hook sees: the agent's own modules, ES and CommonJS alike.
    for (const part of ["/packages/cli/dist/main.js", "/packages/agent/dist/tunnel.js", "/node_modules/ssh2/lib/client.js", "NativeModule _http_client"])
      expect(loaded(part), part).toBe(true);
    for (const part of [
      "/node_modules/yargs/",
      "/node_modules/yargs-parser/",
      "/packages/cli/dist/run.js",
      "/packages/cli/dist/context.js",
      "/packages/master/",
      "/packages/shared/dist/index.js",
      "/packages/shared/dist/haproxy/",
      "/packages/shared/dist/agent-messages.js",
      "/node_modules/zod/",
      "/node_modules/proper-lockfile/",
      "/node_modules/ssh2/lib/server.js",
      "/node_modules/systeminformation/",
      "NativeModule internal/deps/undici/undici",
    ])
      expect(loaded(part), part).toBe(false);

    // The same hook sees yargs when the command line goes to it.
    const help = await modulesLoaded(["agent", "--help"], dir, /run the agent daemon/);
    expect(help.code).toBe(0);
    expect(help.modules.some((m) => m.includes("/node_modules/yargs/"))).toBe(true);
  }, 60_000);
});
