/**
 * `autoscaler demo`: the whole loop on loopback, in one temp folder, with real parts: HAProxy,
 * an SSH endpoint (OpenSSH's sshd when usable, else an embedded one), `autoscaler master`,
 * and web nodes (a web app plus a real `autoscaler agent` measuring it with `pid:`) started by
 * the master's own scale_up_command (`autoscaler demo-node launch`). A bounded load generator
 * drives traffic through HAProxy, the nodes' CPU rises, the master scales up; the load stops,
 * the cluster shrinks back. Ends by itself after `--duration` or on Ctrl-C, and stops every
 * process it started by pid and removes its folder.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { promises as fs } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { MasterStatus } from "@autoscaler/master";
import type { Io } from "../io.js";
import { LOCAL_SETTINGS, localTemplate } from "../local.js";
import { freePort, listDemoNodes, stopPids, writeCloudConfig } from "./node-launcher.js";
import { makeKeyPair, sshdUnusable, startEmbedded, startSshd, stopChild, waitListening, type SshEndpoint } from "./ssh-endpoint.js";
import { renderFrame, type DemoView } from "./view.js";

/** What `autoscaler demo` takes. */
export interface DemoOptions {
  /** Seconds until the demo ends by itself. */
  duration: number;
  ssh: "auto" | "sshd" | "embedded";
  /** Keep the folder (logs, configs) instead of removing it. */
  keep: boolean;
}

/** The demo's scaling policy: quick, so a few minutes show a scale-up and a scale-down. */
const WINDOW_S = 5;
const WORK_MS = 4;
/**
 * CPU the load asks for, in cores, in two steps: first what makes one node hot (70 % of a core
 * against a 50 % threshold) but two comfortable, then what makes two nodes hot but three
 * comfortable. No node is ever asked for more than it can give, so no request waits long.
 */
const LOAD_STEPS_CORES = [0.7, 1.2] as const;

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Run the CLI itself (init, generate, authorize-key) and return stdout; throws with stderr on failure. */
function cli(cliPath: string, args: string[]): string {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`autoscaler ${args[0]} failed: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok ? ((await res.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** An open-loop load generator: `rate` requests a second through HAProxy, counted by the node that answered. */
function startLoad(port: number, initialRate: number, maxRequests: number) {
  let rate = initialRate;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const served = new Map<string, number>();
  const recent: { at: number; node: string }[] = [];
  let sent = 0;
  let ok = 0;
  let failed = 0;
  let inFlight = 0;
  const failures: string[] = [];
  const one = () => {
    sent++;
    inFlight++;
    const req = http.get({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        inFlight--;
        if (res.statusCode === 200) {
          ok++;
          served.set(body, (served.get(body) ?? 0) + 1);
          recent.push({ at: Date.now(), node: body });
        } else {
          failed++;
          if (failures.length < 10) failures.push(`HTTP ${res.statusCode}`);
        }
      });
    });
    req.setTimeout(5000, () => req.destroy(new Error("no answer within 5 s")));
    req.on("error", (err) => {
      inFlight--;
      failed++;
      if (failures.length < 10) failures.push(err.message);
    });
  };
  const TICK_MS = 20;
  let owed = 0;
  let running = true;
  const timer = setInterval(() => {
    if (!running) return;
    owed += (rate * TICK_MS) / 1000;
    // Never more than 256 waiting: a stalled cluster does not pile up unbounded requests.
    while (owed >= 1 && sent < maxRequests && inFlight < 256) {
      owed--;
      one();
    }
    if (sent >= maxRequests) running = false;
  }, TICK_MS);
  return {
    get running() {
      return running;
    },
    stop() {
      running = false;
    },
    setRate(r: number) {
      rate = r;
    },
    /** Share of answers per node over the last `ms`. */
    shares(ms: number): Map<string, number> {
      const since = Date.now() - ms;
      while (recent.length > 0 && recent[0]!.at < since) recent.shift();
      const m = new Map<string, number>();
      for (const r of recent) m.set(r.node, (m.get(r.node) ?? 0) + 1);
      return m;
    },
    totals: () => ({ sent, ok, failed, failures: [...failures], served: new Map(served) }),
    async close() {
      running = false;
      clearInterval(timer);
      const deadline = Date.now() + 6000;
      while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      agent.destroy();
    },
  };
}

/** Run the demo; returns the exit code. */
export async function runDemo(io: Io, options: DemoOptions): Promise<number> {
  const out = (s: string) => io.stdout.write(s);
  const tty = io.stdout.isTTY === true;
  const haproxy = spawnSync("haproxy", ["-v"], { encoding: "utf8" });
  if (haproxy.error || haproxy.status !== 0) {
    io.stderr.write(
      "error: the demo needs HAProxy (2.6 or newer), and `haproxy` is not on the PATH.\n" +
        "  Debian/Ubuntu: sudo apt-get install haproxy\n" +
        "  or run the README's demo command, bash scripts/demo.sh, which installs it with apt-get.\n",
    );
    return 1;
  }
  const sshChoice = options.ssh === "auto" ? (sshdUnusable() ? "embedded" : "sshd") : options.ssh;
  if (sshChoice === "sshd" && sshdUnusable()) {
    io.stderr.write(`error: --ssh sshd: ${sshdUnusable()}; use --ssh embedded, or install openssh-server\n`);
    return 1;
  }

  const cliPath = path.resolve(process.argv[1]!);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-demo-"));
  const children: ChildProcess[] = [];
  let ssh: SshEndpoint | undefined;
  let load: ReturnType<typeof startLoad> | undefined;
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    load?.stop();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const startedAt = Date.now();
  const elapsed = () => (Date.now() - startedAt) / 1000;
  const stamp = () => `[${elapsed().toFixed(1).padStart(6)}s]`;
  const say = (line: string) => {
    if (!tty) out(`${stamp()} ${line}\n`);
  };

  const summary = { launched: 0, terminated: 0, maxLive: 0, nodesSeen: new Set<string>() };
  let exitCode = 0;
  try {
    const [frontendPort, masterPort, metricsPort, sshPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const ncpu = Math.max(1, os.availableParallelism());
    // Thresholds are percent of all cores: 50 % and 15 % of one core.
    const up = Math.round(50 / ncpu);
    const down = Math.max(1, Math.round(15 / ncpu));
    const ini = path.join(dir, "autoscaler.ini");
    const launch = `${shellQuote(process.execPath)} ${shellQuote(cliPath)} demo-node launch ${shellQuote(dir)}`;
    const terminate = `${shellQuote(process.execPath)} ${shellQuote(cliPath)} demo-node terminate ${shellQuote(dir)}`;
    const settings = [
      // A one-folder installation as `init --local` makes it (its nodes are on loopback too)...
      ...LOCAL_SETTINGS,
      // ...whose agents come through the demo's SSH endpoint.
      `haproxy.servers=127.0.0.1:${sshPort}`,
      `master.listen=127.0.0.1:${masterPort}`,
      `master.metrics_listen=127.0.0.1:${metricsPort}`,
      "master.interval=0.5",
      `machine.scale_up_command=${launch}`,
      `machine.scale_down_command=${terminate}`,
      "machine.launch_timeout=60",
      "machine.command_timeout=30",
      "scaling.mode=instance",
      `scaling.scale_up_threshold=${up}`,
      `scaling.scale_down_threshold=${down}`,
      `scaling.window=${WINDOW_S}`,
      "scaling.cooldown=5",
      "scaling.min_nodes=1",
      "scaling.max_nodes=4",
      "scaling.drain_seconds=2",
      "scaling.node_timeout=5",
      "scaling.forget_after=60",
    ];
    cli(cliPath, ["init", "--config", ini, ...settings.flatMap((s) => ["--set", s])]);
    const token = /^token = (.+)$/m.exec(await fs.readFile(ini, "utf8"))![1]!;
    const template = path.join(dir, "haproxy.cfg.tmpl");
    await fs.writeFile(template, localTemplate(await fs.readFile(template, "utf8"), frontendPort, dir));
    cli(cliPath, ["generate", "--config", ini]);

    // Children run in their own process groups, so a Ctrl-C reaches only the demo, which then
    // stops them in order (the load first, so no request meets a stopped part).
    const hap = spawn("haproxy", ["-W", "-S", path.join(dir, "master.sock"), "-f", path.join(dir, "haproxy.cfg"), "-p", path.join(dir, "haproxy.pid")], {
      cwd: dir,
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
    });
    children.push(hap);
    let hapLog = "";
    hap.stderr!.on("data", (b: Buffer) => (hapLog += b.toString()));
    await waitListening(frontendPort, () => (hap.exitCode !== null ? `HAProxy exited: ${hapLog.trim()}` : undefined));

    const nodeKey = makeKeyPair();
    await fs.writeFile(path.join(dir, "node_key"), nodeKey.privateKey, { mode: 0o600 });
    await fs.writeFile(path.join(dir, "node_key.pub"), nodeKey.publicLine + "\n");
    if (sshChoice === "sshd") {
      const line = cli(cliPath, ["authorize-key", "--line-only", path.join(dir, "node_key.pub"), "--config", ini]);
      ssh = await startSshd(dir, sshPort, masterPort, line);
    } else {
      ssh = await startEmbedded(sshPort, masterPort, nodeKey.publicLine);
    }
    await fs.writeFile(path.join(dir, "known_hosts"), ssh.knownHostsLine + "\n");
    await writeCloudConfig(dir, {
      cli: cliPath,
      workMs: WORK_MS,
      settings: [
        `haproxy.servers=127.0.0.1:${sshPort}`,
        `haproxy.ssh_command=ssh -i ${path.join(dir, "node_key")} ${ssh.user}@$HOST`,
        `haproxy.known_hosts=${path.join(dir, "known_hosts")}`,
        `master.token=${token}`,
        `master.listen=127.0.0.1:${masterPort}`,
        "master.metrics_listen=",
        "agent.interval=1",
      ],
    });

    const masterLog = await fs.open(path.join(dir, "master.log"), "a");
    const master = spawn(process.execPath, [cliPath, "master", "--config", ini], { cwd: dir, stdio: ["ignore", masterLog.fd, masterLog.fd], detached: true });
    children.push(master);
    await masterLog.close();
    const statusUrl = `http://127.0.0.1:${metricsPort}/status`;
    const deadline = Date.now() + 15_000;
    while (!(await getJson<MasterStatus>(statusUrl))) {
      if (master.exitCode !== null || Date.now() > deadline)
        throw new Error(`the master did not start; its log: ${(await fs.readFile(path.join(dir, "master.log"), "utf8")).slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    // The first line: the status page, to open in a browser while the text view runs.
    const pageUrl = `http://127.0.0.1:${metricsPort}/`;
    out(`status page: ${pageUrl}\n`);

    const [rateLow, rateHigh] = LOAD_STEPS_CORES.map((cores) => Math.round(cores / (WORK_MS / 1000))) as [number, number];
    const loadSeconds = Math.max(20, Math.round(options.duration * 0.45));
    const stepSeconds = Math.round(loadSeconds * 0.4);
    out(
      [
        `autoscaler demo in ${dir}`,
        `  HAProxy   http://127.0.0.1:${frontendPort}/  (master-worker, reloads confirmed on ${path.join(dir, "master.sock")})`,
        `  SSH       ${ssh.kind === "sshd" ? "OpenSSH sshd" : "embedded SSH server (ssh2)"} on 127.0.0.1:${sshPort}, the only way the agents reach the master`,
        `  master    agents on 127.0.0.1:${masterPort}; master status: ${statusUrl}`,
        `  policy    scale up when a node is at ≥ ${up} % CPU (of ${ncpu} cores) for ${WINDOW_S} s; down when all are < ${down} %; 1 to 4 nodes`,
        `  load      ${rateLow} requests/s through HAProxy (${WORK_MS} ms of CPU each) once the first node serves, ${rateHigh}/s after ${stepSeconds} s, none after ${loadSeconds} s`,
        `  ends      after ${options.duration} s, or on Ctrl-C; everything it started is stopped and ${options.keep ? "the folder kept" : "the folder removed"}`,
        "",
      ].join("\n"),
    );

    const seenEvents = new Set<string>();
    let lastSummaryAt = 0;
    let loadEndsAt = Infinity;
    let rate = rateLow;
    const view: DemoView = {
      pageUrl,
      elapsed: 0,
      duration: options.duration,
      rate,
      loadOn: false,
      loadDone: false,
      up,
      down,
      windowS: WINDOW_S,
      sshKind: ssh.kind,
      frontendPort,
      status: undefined,
      shares: new Map(),
      totals: { ok: 0, failed: 0 },
    };
    while (!interrupted && elapsed() < options.duration) {
      const status = await getJson<MasterStatus>(statusUrl);
      if (master.exitCode !== null)
        throw new Error(`the master stopped (exit ${master.exitCode}); its log: ${(await fs.readFile(path.join(dir, "master.log"), "utf8")).slice(-2000)}`);
      if (status) {
        const live = status.nodes.filter((n) => n.state === "live");
        summary.maxLive = Math.max(summary.maxLive, live.length);
        for (const n of live) summary.nodesSeen.add(n.name);
        summary.launched = status.actions.launches;
        summary.terminated = status.actions.terminations;
        // The load starts once the first node serves, and runs for loadSeconds.
        if (!load && live.length > 0 && loadEndsAt === Infinity) {
          load = startLoad(frontendPort, rate, rateHigh * loadSeconds);
          loadEndsAt = elapsed() + loadSeconds;
          say(`load on: ${rate} requests/s through HAProxy`);
        }
        if (load?.running && rate === rateLow && elapsed() >= loadEndsAt - loadSeconds + stepSeconds) {
          rate = rateHigh;
          load.setRate(rate);
          say(`load up: ${rate} requests/s through HAProxy`);
        }
        if (load?.running && elapsed() >= loadEndsAt) {
          load.stop();
          say("load off: the nodes go idle; watch the cluster shrink");
        }
        // Events are a ring of the last 20: print the ones not printed yet.
        for (const e of status.events) {
          const key = `${e.at} ${e.kind} ${e.message}`;
          if (seenEvents.has(key)) continue;
          seenEvents.add(key);
          say(`${e.kind.padEnd(16)} ${e.message}`);
        }
        if (!tty && elapsed() - lastSummaryAt >= 5) {
          lastSummaryAt = elapsed();
          const shares = load?.shares(5000) ?? new Map<string, number>();
          const total = [...shares.values()].reduce((a, b) => a + b, 0);
          say(
            `nodes: ${live.map((n) => `${n.name} ${n.cpu_now === null ? "-" : n.cpu_now.toFixed(1)}%`).join(", ") || "none live"} · capacity ${status.capacity.active} active, ${status.capacity.pending} pending, ${status.capacity.leaving} leaving` +
              (total > 0 ? ` · served (5 s): ${[...shares].map(([k, v]) => `${k} ${Math.round((100 * v) / total)}%`).join(", ")}` : ""),
          );
        }
      }
      if (tty) {
        Object.assign(view, {
          rate,
          elapsed: elapsed(),
          loadOn: load?.running ?? false,
          loadDone: loadEndsAt !== Infinity && !(load?.running ?? false),
          status,
          shares: load?.shares(5000) ?? new Map(),
          totals: load ? load.totals() : { ok: 0, failed: 0 },
        });
        out("\x1b[H\x1b[2J" + renderFrame(view, Math.min(120, (io.stdout as { columns?: number }).columns || 100)));
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  } catch (err) {
    io.stderr.write(`error: ${(err as Error).message}\n`);
    exitCode = 1;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (load) await load.close();
    const totals = load?.totals();
    // The cloud closes first (a launch still running starts nothing more), then the master, the
    // nodes (twice: a launch that was mid-way may have added one), HAProxy, SSH.
    await fs.writeFile(path.join(dir, "closed"), "").catch(() => undefined);
    for (const c of children.slice(1).reverse()) await stopChild(c);
    for (let pass = 0; pass < 2; pass++) {
      await stopPids((await listDemoNodes(dir)).flatMap((n) => n.pids));
      await new Promise((r) => setTimeout(r, 300));
    }
    for (const c of children.slice(0, 1)) await stopChild(c);
    await ssh?.stop();
    if (!options.keep) await fs.rm(dir, { recursive: true, force: true });
    if (exitCode === 0) {
      const served = totals
        ? [...totals.served]
            .sort()
            .map(([n, c]) => `${n} (${c})`)
            .join(", ")
        : "";
      out(
        `\ndemo ${interrupted ? "stopped" : "finished"} after ${Math.round(elapsed())} s: launched ${summary.launched} node(s), terminated ${summary.terminated}; at most ${summary.maxLive} nodes live; ` +
          `${totals?.ok ?? 0} requests through HAProxy, ${totals?.failed ?? 0} failed${served ? `; served by ${served}` : ""}\n` +
          (totals && totals.failed > 0 ? `failures: ${totals.failures.join("; ")}\n` : "") +
          (options.keep ? `folder kept: ${dir}\n` : "everything it started is stopped and its folder removed\n"),
      );
    }
  }
  return interrupted ? 130 : exitCode;
}
