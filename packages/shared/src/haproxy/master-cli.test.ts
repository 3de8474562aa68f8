import { promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { judgeReload, parseShowProc, sendCliCommand, showProc, type ProcTable } from "./master-cli.js";

/** `show proc` as HAProxy 2.6.12 (Debian 12) printed it, verbatim, trailing blanks included. */
const SHOW_PROC_26 = [
  "#<PID>          <type>          <reloads>       <uptime>        <version>      ",
  "2475            master          3 [failed: 0]   0d00h10m25s     2.6.12-1+deb12u4",
  "# workers",
  "2808            worker          0               0d00h00m08s     2.6.12-1+deb12u4",
  "# programs",
  "",
].join("\n");

/** The same master one reload later, with the new worker up and the old one still finishing. */
const SHOW_PROC_26_RELOADED = [
  "#<PID>          <type>          <reloads>       <uptime>        <version>      ",
  "2475            master          4 [failed: 0]   0d00h10m40s     2.6.12-1+deb12u4",
  "# workers",
  "2901            worker          0               0d00h00m01s     2.6.12-1+deb12u4",
  "2808            worker          1               0d00h00m23s     2.6.12-1+deb12u4",
  "# programs",
  "",
].join("\n");

describe("parseShowProc", () => {
  test("reads HAProxy 2.6's master line and worker line", () => {
    expect(parseShowProc(SHOW_PROC_26)).toEqual({
      master: { pid: 2475, type: "master", reloads: 3 },
      workers: [{ pid: 2808, type: "worker", reloads: 0 }],
    });
  });

  test("reads an old worker next to the new one", () => {
    expect(parseShowProc(SHOW_PROC_26_RELOADED)?.workers).toEqual([
      { pid: 2901, type: "worker", reloads: 0 },
      { pid: 2808, type: "worker", reloads: 1 },
    ]);
  });

  test("reads CRLF line ends", () => {
    expect(parseShowProc(SHOW_PROC_26.replace(/\n/g, "\r\n"))?.master.pid).toBe(2475);
  });

  test.each([
    ["an empty answer", ""],
    ["an error from the CLI", "Unknown command: 'show prc'\n"],
    ["workers without a master line", "# workers\n2808            worker          0               0d00h00m08s     2.6.12\n"],
    ["only the header", "#<PID>          <type>          <reloads>       <uptime>        <version>\n"],
  ])("gives undefined for %s", (_what, text) => {
    expect(parseShowProc(text)).toBeUndefined();
  });
});

describe("judgeReload", () => {
  const table = (masterReloads: number, workers: [pid: number, reloads: number][]): ProcTable => ({
    master: { pid: 2475, type: "master", reloads: masterReloads },
    workers: workers.map(([pid, reloads]) => ({ pid, type: "worker", reloads })),
  });
  const before = table(3, [[2808, 0]]);

  test.each([
    ["pending while the master's reload count has not grown", table(3, [[2808, 0]]), { state: "pending" }],
    ["pending even if a worker looks new while the count is unchanged", table(3, [[2901, 0]]), { state: "pending" }],
    [
      "confirmed when the count grew and a new worker is 0 reloads old",
      table(4, [
        [2901, 0],
        [2808, 1],
      ]),
      { state: "confirmed", workerPid: 2901 },
    ],
    ["confirmed when the old worker has already gone", table(4, [[2901, 0]]), { state: "confirmed", workerPid: 2901 }],
    ["failed when the count grew but only the old worker is left, now 1 reload old", table(4, [[2808, 1]]), { state: "failed" }],
    ["failed when the count grew and there is no worker at all", table(4, []), { state: "failed" }],
  ])("is %s", (_what, after, verdict) => {
    expect(judgeReload(before, after)).toEqual(verdict);
  });

  test("is confirmed on the parsed tables of a real reload", () => {
    expect(judgeReload(parseShowProc(SHOW_PROC_26)!, parseShowProc(SHOW_PROC_26_RELOADED)!)).toEqual({ state: "confirmed", workerPid: 2901 });
  });
});

describe("sendCliCommand and showProc on a Unix socket", () => {
  let dir: string;
  let servers: net.Server[] = [];
  let connections: net.Socket[] = [];

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-cli-"));
  });
  afterEach(async () => {
    // A silent server keeps its half-open connection: destroy it, or close() would wait for it.
    for (const c of connections) c.destroy();
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    servers = [];
    connections = [];
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** A socket server that reads one command line and answers like the master CLI (or not at all). */
  async function startMasterCli(answer: (command: string) => string | undefined): Promise<{ socket: string; received: string[] }> {
    const socket = path.join(dir, "master.sock");
    const received: string[] = [];
    const server = net.createServer({ allowHalfOpen: true }, (conn) => {
      connections.push(conn);
      let buffered = "";
      conn.on("data", (b: Buffer) => {
        buffered += b.toString("utf8");
        const nl = buffered.indexOf("\n");
        if (nl < 0) return;
        const command = buffered.slice(0, nl);
        received.push(command);
        const reply = answer(command);
        if (reply !== undefined) conn.end(reply);
      });
      conn.on("error", () => {});
    });
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socket, () => resolve());
    });
    return { socket, received };
  }

  const masterCli = (command: string) => (command === "show proc" ? SHOW_PROC_26 : `Unknown command: '${command}'\n`);

  test("sendCliCommand sends one line and returns the whole answer", async () => {
    const cli = await startMasterCli(masterCli);
    expect(await sendCliCommand(cli.socket, "show proc")).toBe(SHOW_PROC_26);
    expect(cli.received).toEqual(["show proc"]);
  });

  test("showProc parses the master's answer", async () => {
    const cli = await startMasterCli(masterCli);
    const procs = await showProc(cli.socket);
    expect(procs.master).toEqual({ pid: 2475, type: "master", reloads: 3 });
    expect(procs.workers.map((w) => w.pid)).toEqual([2808]);
  });

  test("showProc refuses an answer that is not a process table", async () => {
    const cli = await startMasterCli(() => "Permission denied\n");
    await expect(showProc(cli.socket)).rejects.toThrow(/unexpected answer to "show proc".*Permission denied/);
  });

  test("sendCliCommand gives up on a silent socket after its timeout", async () => {
    const cli = await startMasterCli(() => undefined);
    await expect(sendCliCommand(cli.socket, "show proc", 200)).rejects.toThrow(/no answer from .*master\.sock within 200 ms/);
    expect(cli.received).toEqual(["show proc"]);
  });

  test("sendCliCommand fails when nothing listens on the path", async () => {
    await expect(sendCliCommand(path.join(dir, "absent.sock"), "show proc")).rejects.toMatchObject({ code: "ENOENT" });
  });
});
