/**
 * `autoscaler agent`: samples CPU every interval and keeps one tunnel per proxy, each saying
 * `hello` (after the health gate) and then a `sample` per interval. Per proxy:
 *
 *   waiting-for-health ──healthy──► connecting ──welcome──► reporting ──break──► backoff ─┐
 *          ▲                            │ refused (host key, token, …)                    │
 *          └────────────────────────────┴─────────────── backoff (jittered, ≤ 30 s) ◄─────┘
 *
 * Nothing is buffered while disconnected: a sample that cannot be sent is dropped.
 */
import { EventEmitter } from "node:events";
import { promises as fs } from "node:fs";
import path from "node:path";
import { AutoscalerError, EXIT_CONFIG, errnoCode, writeFileAtomic, type Config, type Logger, type ProxyServer } from "@autoscaler/shared/core";
import { MAX_LINE_BYTES, PROTOCOL_VERSION, createLineSplitter, decodeMasterMessage, encodeMessage, type SampleMessage } from "@autoscaler/shared/protocol";
import { capacityOf, leaveOf, readAppValue } from "./app-state.js";
import { readFacts } from "./facts.js";
import { checkHealth } from "./health.js";
import { resolveIdentity } from "./identity.js";
import { parseKnownHosts } from "./known-hosts.js";
import { leaveSocketPath, startLeaveSocket, type LeaveAnswer } from "./leave-socket.js";
import { createSampler } from "./sampler.js";
import { HostKeyError, openTunnel, type Tunnel, type TunnelTarget } from "./tunnel.js";

/** What the agent needs from outside. */
export interface AgentDeps {
  logger: Logger;
  version: string;
  env: NodeJS.ProcessEnv;
  random?: () => number;
}

/** A running agent. */
export interface RunningAgent {
  /** Proxies with a welcomed tunnel right now. */
  connected(): string[];
  /** Ask every master this agent is connected to to drain and terminate this node (`autoscaler leave`). */
  leave(why: string): LeaveAnswer;
  stop(): Promise<void>;
}

/** The reconnect cap of SPEC "Agent ⇄ master". */
export const BACKOFF_CAP_MS = 30_000;
const BACKOFF_BASE_MS = 500;
const WELCOME_TIMEOUT_MS = 10_000;

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, with equal jitter (half fixed, half random). */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Read the agent's settings that must be present, with a message naming each missing one. */
function requireSettings(config: Config): { user: string; keyFile: string; servers: ProxyServer[]; masterPort: number } {
  const problems: string[] = [];
  if (config.haproxy.servers.length === 0) problems.push("haproxy.servers is empty; expected the proxy hosts the agent reports to");
  if (!config.ssh.user) problems.push('no SSH user; expected haproxy.ssh_command "ssh -i KEY -p PORT USER@$HOST" (or ssh_user)');
  if (!config.ssh.identityFile) problems.push("no SSH key; expected -i KEY in haproxy.ssh_command (or ssh_params)");
  if (config.master.token === "" && config.agent.credential === "")
    problems.push("no credential; expected agent.credential (autoscaler node-credential, or a launch's AUTOSCALER_JOIN_CREDENTIAL) or master.token");
  if (problems.length > 0) throw new AutoscalerError("AUTOSCALER_CONFIG_INVALID", "the agent cannot start:", { exitCode: EXIT_CONFIG, details: problems });
  return { user: config.ssh.user!, keyFile: config.ssh.identityFile!, servers: config.haproxy.servers, masterPort: config.master.listen!.port };
}

/**
 * The credential the agent presents: the one a master handed it in `welcome` (kept in
 * credential_file), else [agent] credential, else [master] token (the weaker mode). A kept
 * credential the masters refuse (the cluster secret changed) gives way to the configured one.
 */
async function createCredentials(config: Config, name: string, logger: Logger) {
  const file = config.agent.credential_file || path.join(config.master.state_dir, "node-credential");
  const configured = config.agent.credential || config.master.token;
  let kept: string | undefined;
  try {
    // Only a credential for this name: a file shared by several agents' inis, or left from another name, is not ours.
    const text = (await fs.readFile(file, "utf8")).trim();
    if (text.startsWith(`asc1.node.${name}.`)) kept = text;
    else if (text !== "") logger.warn("the kept node credential is for another name; using the configured one", { file, node: name });
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") logger.warn("cannot read the kept node credential; using the configured one", { file, error: (err as Error).message });
  }
  let keptRefused = false;
  return {
    current: () => (kept !== undefined && !keptRefused ? kept : configured),
    refused(code: string, presented: string) {
      if (code === "TOKEN" && presented === kept && !keptRefused) {
        keptRefused = true;
        logger.warn("the kept node credential was refused; trying the configured one", { file });
      }
    },
    async issued(credential: string) {
      keptRefused = false;
      if (credential === kept || !credential.startsWith(`asc1.node.${name}.`)) return;
      kept = credential;
      try {
        await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
        await writeFileAtomic(file, credential + "\n", { mode: 0o600, forceMode: true });
        logger.info("node credential received and kept for reconnects", { file });
      } catch (err) {
        logger.warn("cannot keep the node credential; reconnects present the configured one", { file, error: (err as Error).message });
      }
    },
  };
}

/** Start the agent; resolves once sampling has started (connections follow in the background). */
export async function startAgent(config: Config, deps: AgentDeps): Promise<RunningAgent> {
  const { logger } = deps;
  const random = deps.random ?? Math.random;
  const s = requireSettings(config);
  let privateKey: Buffer;
  try {
    privateKey = await fs.readFile(s.keyFile);
  } catch (err) {
    throw new AutoscalerError("AUTOSCALER_CONFIG_INVALID", `cannot read the SSH key ${s.keyFile} (from haproxy.ssh_command): ${(err as Error).message}`, {
      exitCode: EXIT_CONFIG,
    });
  }
  let knownHostsText = "";
  try {
    knownHostsText = await fs.readFile(config.haproxy.known_hosts, "utf8");
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") {
      throw new AutoscalerError(
        "AUTOSCALER_CONFIG_INVALID",
        `cannot read ${config.haproxy.known_hosts} (haproxy.known_hosts): ${(err as Error).message}; it must be readable by the agent's user (the unit runs as autoscaler: chown autoscaler: ${config.haproxy.known_hosts})`,
        { exitCode: EXIT_CONFIG },
      );
    }
    logger.warn("known_hosts file not found: every proxy's host key will be refused until it is added", { file: config.haproxy.known_hosts });
  }
  const knownHosts = parseKnownHosts(knownHostsText);
  const identity = await resolveIdentity(config, deps.env, logger);
  const facts = await readFacts();
  const intervalMs = config.agent.interval * 1000;

  // One sampler and one health check for all proxies; each tick is broadcast to every tunnel.
  const ticks = new EventEmitter();
  ticks.setMaxListeners(0);
  const sampler = createSampler(config.agent.cpu_source);
  let healthy = await checkHealth(config.agent.health_url);
  let stopped = false;
  /** Set once this node asked to leave: every tunnel (and each new one) sends `leave`. */
  let leaving: string | undefined;
  const appTimeoutMs = Math.min(2000, intervalMs);
  /** The capacity_url problem last logged (logged again only when it changes, and when it clears), and how many samples went without. */
  const capacityProblems = { last: "", count: 0 };
  const readCapacity = async (): Promise<number | undefined> => {
    const { capacity_url: url, capacity_key: key } = config.agent;
    if (!url) return undefined;
    const read = capacityOf(await readAppValue(url, key, appTimeoutMs), key);
    if (read.ok) {
      if (capacityProblems.last !== "") logger.info("capacity_url answers again", { url, missed: capacityProblems.count });
      capacityProblems.last = "";
      return read.value;
    }
    capacityProblems.count++;
    if (read.problem !== capacityProblems.last)
      logger.warn("capacity_url gave no usable answer; this sample carries no free units (missing data, never scaled on)", {
        url,
        problem: read.problem,
        missed: capacityProblems.count,
      });
    capacityProblems.last = read.problem;
    return undefined;
  };
  const checkLeaveUrl = async () => {
    const { leave_url: url, leave_key: key } = config.agent;
    if (!url || leaving !== undefined) return;
    // Only a JSON true at leave_key is a leave: a failure, a bad answer or any other value is not.
    if (leaveOf(await readAppValue(url, key, appTimeoutMs))) leave(`${url} says ${key} = true`);
  };
  const tick = async () => {
    try {
      const cpu = await sampler.sample();
      const wasHealthy = healthy;
      const [health, available] = await Promise.all([checkHealth(config.agent.health_url), readCapacity(), checkLeaveUrl()]);
      healthy = health;
      if (wasHealthy !== healthy) logger.warn(healthy ? "health check passes again" : "health check fails", { url: config.agent.health_url });
      if (cpu !== undefined)
        ticks.emit("sample", { type: "sample", time: Date.now(), cpu, healthy, ...(available !== undefined ? { available } : {}) } satisfies SampleMessage);
    } catch (err) {
      logger.warn("cannot read CPU", { source: config.agent.cpu_source.kind, error: (err as Error).message });
    }
  };
  await sampler.sample().catch(() => undefined); // prime, so the first tick has a delta
  const timer = setInterval(() => void tick(), intervalMs);

  const connected = new Set<string>();
  const tunnels = new Set<Tunnel>();
  /** Ask the masters to drain and terminate this node; sent on every tunnel now and on each new one. */
  function leave(why: string): LeaveAnswer {
    if (leaving === undefined) logger.warn("asking the masters to drain and terminate this node", { reason: why, node: identity.name });
    leaving ??= why;
    const proxies = [...connected];
    ticks.emit("leave");
    return proxies.length > 0
      ? { ok: true, node: identity.name, proxies }
      : { ok: false, error: "not connected to any master now; the leave is sent as soon as a tunnel is up" };
  }
  const wakeups = new Set<() => void>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        wakeups.delete(done);
        resolve();
      }
      wakeups.add(done);
    });

  const credentials = await createCredentials(config, identity.name, logger);
  const hello = {
    type: "hello" as const,
    version: PROTOCOL_VERSION,
    name: identity.name,
    address: identity.address,
    port: identity.port,
    ...(identity.instanceId !== undefined ? { instance_id: identity.instanceId } : {}),
    agent_version: deps.version,
    facts,
  };

  /** Send hello and wait for the master's answer on the channel. */
  const handshake = (tunnel: Tunnel, label: string) =>
    new Promise<{ role: string; splitter: ReturnType<typeof createLineSplitter> }>((resolve, reject) => {
      const splitter = createLineSplitter(MAX_LINE_BYTES);
      const timer = setTimeout(() => reject(new Error(`no answer to hello within ${WELCOME_TIMEOUT_MS} ms`)), WELCOME_TIMEOUT_MS);
      const onData = (chunk: Buffer) => {
        const { lines, tooLong } = splitter.push(chunk);
        if (tooLong) return finish(new Error("the master sent a line over 64 KiB"));
        for (const line of lines) {
          const m = decodeMasterMessage(line);
          if (!m.ok) return finish(new Error(`unreadable answer from the master (${m.reason})`));
          if (m.message.type === "error") {
            credentials.refused(m.message.code, token);
            return finish(new Error(`the master refused this node: ${m.message.message}`));
          }
          if (m.message.credential !== undefined) void credentials.issued(m.message.credential);
          return finish(undefined, m.message.role);
        }
      };
      const onClose = () => finish(new Error("the channel closed before the master answered"));
      function finish(err: Error | undefined, role?: string) {
        clearTimeout(timer);
        tunnel.stream.off("data", onData);
        tunnel.stream.off("close", onClose);
        if (err) reject(err);
        else resolve({ role: role!, splitter });
      }
      tunnel.stream.on("data", onData);
      tunnel.stream.on("close", onClose);
      const token = credentials.current();
      tunnel.stream.write(encodeMessage({ ...hello, token, healthy }));
      logger.debug("hello sent", { proxy: label });
    });

  const runProxy = async (server: ProxyServer) => {
    const sshPort = server.sshPort ?? config.ssh.port ?? 22;
    const label = `${server.host}:${sshPort}`;
    const target: TunnelTarget = {
      host: server.host,
      sshPort,
      username: s.user,
      privateKey,
      knownHosts,
      knownHostsFile: config.haproxy.known_hosts,
      masterHost: "127.0.0.1",
      masterPort: s.masterPort,
      keepaliveMs: 10_000,
      readyTimeoutMs: 10_000,
    };
    let attempt = 0;
    while (!stopped) {
      if (!healthy) {
        logger.info("waiting for the health check before saying hello", { proxy: label, url: config.agent.health_url });
        while (!stopped && !healthy) await sleep(intervalMs);
        if (stopped) break;
      }
      let tunnel: Tunnel | undefined;
      try {
        tunnel = await openTunnel(target);
        tunnels.add(tunnel);
        const { role } = await handshake(tunnel, label);
        attempt = 0;
        connected.add(label);
        logger.info("connected to the master", { proxy: label, role, node: identity.name });
        const t = tunnel;
        const send = (sample: SampleMessage) => {
          if (t.stream.writable && t.stream.writableLength < MAX_LINE_BYTES) t.stream.write(encodeMessage(sample));
        };
        const sendLeave = () => {
          if (t.stream.writable) t.stream.write(encodeMessage({ type: "leave" }));
        };
        ticks.on("sample", send);
        ticks.on("leave", sendLeave);
        if (leaving !== undefined) sendLeave();
        t.stream.on("data", () => undefined); // the master sends nothing after welcome; keep the stream flowing
        await new Promise<void>((resolve) => {
          t.stream.once("close", resolve);
          t.closed.then(resolve, resolve);
        });
        ticks.off("sample", send);
        ticks.off("leave", sendLeave);
        if (!stopped) logger.warn("tunnel closed; reconnecting", { proxy: label });
      } catch (err) {
        if (err instanceof HostKeyError) logger.error(`refusing proxy ${label}: ${err.message}`, { proxy: label, reason: err.verdict.reason });
        else logger.warn("cannot reach the master", { proxy: label, error: (err as Error).message });
      } finally {
        connected.delete(label);
        if (tunnel) {
          tunnel.close();
          tunnels.delete(tunnel);
        }
      }
      if (stopped) break;
      const delay = backoffDelay(attempt++, random);
      logger.debug("reconnecting after backoff", { proxy: label, ms: delay });
      await sleep(delay);
    }
  };

  logger.info("agent started", {
    node: identity.name,
    address: identity.address,
    port: identity.port,
    instance_id: identity.instanceId ?? null,
    proxies: s.servers.map((p) => p.host),
    interval_s: config.agent.interval,
    cpu_source: config.agent.cpu_source.kind,
  });
  const loops = s.servers.map((server) => runProxy(server));
  // `autoscaler leave` on this node reaches the agent here (leave-socket.ts).
  const leaveFile = leaveSocketPath(config.master.state_dir);
  const closeLeaveSocket = await startLeaveSocket(leaveFile, (name) =>
    name === undefined || name === identity.name
      ? leave("autoscaler leave")
      : { ok: false, error: `this agent is ${identity.name}, not ${name}; give each agent its own [master] state_dir` },
  ).catch((err: Error) => {
    logger.warn("cannot open the leave socket; autoscaler leave will not reach this agent", { file: leaveFile, error: err.message });
    return async () => undefined;
  });

  return {
    connected: () => [...connected],
    leave,
    async stop() {
      stopped = true;
      await closeLeaveSocket();
      clearInterval(timer);
      for (const w of [...wakeups]) w();
      for (const t of tunnels) t.close();
      await Promise.all(loops);
    },
  };
}
