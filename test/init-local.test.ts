/**
 * The README's one-machine recipe ("Try it on one machine"), run as written: its commands are
 * read from the README between the `recipe:one-machine` markers and run one by one with bash in
 * a temp folder. `npx autoscaler` is what it resolves to in a clone, this repository's
 * bin/autoscaler.js. The HAProxy it starts (`-D`, in the background) and the Python server are
 * stopped by their pids at cleanup. Also: what `init --local` refuses.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { canConnect } from "./helpers/haproxy.js";
import { CLI, REPO_ROOT, runCli, runProcess, Scope, waitFor } from "./helpers/process.js";

const scope = new Scope();
afterEach(() => scope.cleanup());

/** The recipe's command lines, as the README shows them. */
async function recipe(): Promise<string[]> {
  const readme = await fs.readFile(path.join(REPO_ROOT, "README.md"), "utf8");
  const block = /<!-- recipe:one-machine -->\n```sh\n([\s\S]*?)\n```\n<!-- \/recipe:one-machine -->/.exec(readme);
  if (!block) throw new Error("README.md has no recipe:one-machine block");
  return block[1]!.split("\n").filter((l) => l.trim() !== "");
}

/** Stop a daemon by the pid in its pid file, and wait until it is gone (bounded). */
async function stopByPidFile(file: string): Promise<void> {
  const pid = Number((await fs.readFile(file, "utf8").catch(() => "")).trim());
  if (!(pid > 1)) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (let i = 0; i < 50; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  process.kill(pid, "SIGKILL");
}

test("the README's one-machine recipe serves a hand-added backend through HAProxy in five commands", async () => {
  const lines = await recipe();
  expect(lines).toHaveLength(5);
  for (const port of [8080, 8081]) expect(await canConnect(port), `127.0.0.1:${port} is in use on this machine; the recipe needs it free`).toBe(false);
  const dir = await scope.tempDir("autoscaler-recipe-");
  scope.onCleanup(() => stopByPidFile(path.join(dir, "try", "haproxy.pid")));
  const npx = `${process.execPath} ${CLI}`;
  const outputs: string[] = [];
  for (const line of lines) {
    const command = line.replace(/^npx autoscaler /, `${npx} `);
    if (command.endsWith("&")) {
      // A server left running: started here so the scope stops it by its pid.
      const child = spawn("bash", ["-c", `exec ${command.slice(0, -1)}`], { cwd: dir, stdio: "ignore" });
      scope.track(child);
      await waitFor(`${line} to listen`, () => canConnect(8081), 10_000, 50);
      continue;
    }
    const r = await runProcess("bash", ["-c", command], { cwd: dir, timeoutMs: 30_000 });
    expect(r.code, `${line}\n${r.stdout}\n${r.stderr}`).toBe(0);
    outputs.push(r.stdout);
  }
  // init printed the HAProxy command the recipe runs next, for this folder.
  expect(outputs[0]).toContain(`haproxy -W -D -S ${path.join(dir, "try", "master.sock")}`);
  // add-host rendered, checked and reloaded, confirmed on HAProxy's master CLI.
  expect(outputs[2]).toMatch(/check passed; reloaded \(new worker pid \d+ confirmed on the master CLI\)/);
  // curl got the Python server's listing through HAProxy's frontend.
  expect(outputs[3]).toMatch(/Directory listing for \//);
  // Everything stayed in the folder.
  expect((await fs.readdir(path.join(dir, "try"))).sort()).toEqual(
    ["admin.sock", "autoscaler.ini", "haproxy-server-state", "haproxy.cfg", "haproxy.cfg.tmpl", "haproxy.pid", "hosts.d", "master.sock", "state"].sort(),
  );
});

test("init --local refuses --config with it, a bad --port and a port in use, writing nothing", async () => {
  const dir = await scope.tempDir("autoscaler-local-");
  const both = await runCli(["init", "--local", path.join(dir, "a"), "--config", path.join(dir, "x.ini")]);
  expect(both.code).toBe(2);
  expect(both.stderr).toMatch(/expected --local or --config, not both/);
  const badPort = await runCli(["init", "--local", path.join(dir, "a"), "--port", "70000"]);
  expect(badPort.code).toBe(2);
  expect(badPort.stderr).toMatch(/--port 70000 is not valid; expected a port from 1 to 65535/);
  const server = scope.trackServer((await import("node:net")).createServer());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const used = (server.address() as { port: number }).port;
  const inUse = await runCli(["init", "--local", path.join(dir, "a"), "--port", String(used)]);
  expect(inUse.code).toBe(2);
  expect(inUse.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1:${used} is in use, so HAProxy could not listen there; nothing was written`));
  expect(await fs.readdir(dir)).toEqual([]);
});
