/**
 * `autoscaler master`: wires the registry, the agent listener, the HAProxy applier, the
 * hosts.d/template watcher, the control socket and the metrics server.
 */
import { promises as fs } from "node:fs";
import {
  AutoscalerError,
  applyHaproxyChange,
  applySettingsFromConfig,
  createHostsStore,
  nodeAddressProblem,
  nodeCredential,
  readTemplate,
  SHARED_TOKEN_NOTE,
  type CommandRunner,
  type Config,
  type HostEntry,
  type Logger,
  type RenderInputs,
  type RuntimeSettings,
} from "@autoscaler/shared";
import { type HelloMessage } from "@autoscaler/shared/protocol";
import { admit, createNameRate, REGISTRATION_MARGIN, type Admission } from "./admission.js";
import { createApplier, type Applier } from "./applier.js";
import { applyWithOwnerNote, recoverApplyLeftovers } from "./apply-lock.js";
import { controlSocketPath, startControlServer } from "./control.js";
import { createControlDispatch } from "./control-dispatch.js";
import { createEventLog, EVENTS_KEPT } from "./events.js";
import { buildInstances } from "./fleet.js";
import { clusterSample, createHistory } from "./history.js";
import { loadHostsCache } from "./hosts-cache.js";
import { createMetrics, startMetricsServer } from "./metrics.js";
import { buildPageData } from "./page-data.js";
import { policyFromConfig } from "./policy.js";
import { loadNameBook } from "./name-book.js";
import { createRegistry, type Registry } from "./registry.js";
import { resolveRoleResolving, type Role } from "./role.js";
import type { ClusterMembership } from "./cluster/join.js";
import { planReconfigure } from "./reconfigure.js";
import { startScaler, type Scaler } from "./scaler.js";
import { startAgentServer } from "./server.js";
import { createPageRoutes } from "./status-page.js";
import { createStateStore } from "./state-store.js";
import { buildStatus, type MasterStatus } from "./status.js";
import { startWatcher } from "./watcher.js";
import { startWebhookServer } from "./webhooks.js";

/** What the master needs from outside; production defaults come from the CLI. */
export interface MasterDeps {
  logger: Logger;
  runner: CommandRunner;
  now: () => number;
  version: string;
}

/** A running master. */
export interface RunningMaster {
  status(): MasterStatus;
  registry: Registry;
  applier: Applier;
  scaler: Scaler;
  /**
   * Swap in a reloaded ini (SIGHUP): [scaling], [machine], [aws] and most of [haproxy] apply now
   * (an apply is scheduled, so a new server_line or template renders); keys only a restart can
   * change keep their running value and are named in `needsRestart`; agent keys are `ignored`.
   */
  reconfigure(next: Config): { applied: string[]; needsRestart: string[]; ignored: string[] };
  stop(): Promise<void>;
}

/** Debounce for HAProxy applies: 100 ms of quiet, at most 800 ms after the first change (SPEC: in HAProxy within a second). */
export const APPLY_QUIET_MS = 100;
export const APPLY_CEILING_MS = 800;
const APPLY_RETRY_MS = 5000;
const HELLO_TIMEOUT_MS = 3_000;
const HELLO_BUDGET = 128;
const MAX_CONNECTIONS = 4096;

/**
 * The runtime API's settings, when `[haproxy] runtime_socket` is set and is a socket; a path
 * that is missing or not a socket is a warning, and changes take the reload path.
 */
async function runtimeSettingsOf(config: Config, logger: Logger): Promise<RuntimeSettings | undefined> {
  const socket = config.haproxy.runtime_socket;
  if (!socket) return undefined;
  const problem = await fs.stat(socket).then(
    (st) => (st.isSocket() ? undefined : "is not a socket"),
    (err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? "does not exist" : `cannot be read (${err.message})`),
  );
  if (problem) {
    logger.warn(
      `[haproxy] runtime_socket ${socket} ${problem}; registrations and removals are applied with a reload. Point it at the template's "stats socket … level admin" (HAProxy must be running)`,
      { event: "runtime_socket_unusable", key: "haproxy.runtime_socket", socket },
    );
    return undefined;
  }
  return { socket, backend: config.haproxy.backend };
}

/** Start the master; resolves once it listens on every socket. */
export async function startMaster(initialConfig: Config, deps: MasterDeps): Promise<RunningMaster> {
  const { logger, now } = deps;
  // `let`: `reconfigure` (SIGHUP) swaps in a reloaded config; every closure below reads it at use.
  let config = initialConfig;
  // First, what this master will do about capacity: a fresh `init` launches nothing until told how.
  if (config.machine.scale_up_command.trim() === "") {
    logger.info(
      `[machine] scale_up_command is empty: this master launches nothing (a hot cluster and min_nodes = ${config.scaling.min_nodes} are only reported). To start scaling, set it in ${config.file} (the ini init writes has an AWS example, commented out), then: systemctl reload autoscaler-master (or kill -HUP the master)`,
      { event: "no_launch_command", key: "machine.scale_up_command" },
    );
  }
  const store = createHostsStore(config.hostsDir);
  await fs.mkdir(config.master.state_dir, { recursive: true, mode: 0o700 });
  await fs.mkdir(config.hostsDir, { recursive: true });
  // `hosts`: the cache's current list, replaced (never mutated) on each change.
  let hosts: HostEntry[] = [];
  const hostsCache = await loadHostsCache(store, config.hostsDir, (list) => (hosts = list));
  for (const [file, message] of hostsCache.problems) logger.warn("hosts.d file cannot be used", { file, problem: message });
  let template: string | undefined;

  // The status page's charts; scale-ups and scale-downs become its markers as they are logged.
  const history = createHistory();
  const events = createEventLog(now, EVENTS_KEPT, (e) => {
    if (e.kind === "scale_up" || e.kind === "scale_down") history.mark(e);
  });
  // Without etcd the role is fixed at start; with it, it follows the election (joinCluster below).
  const configured = await resolveRoleResolving(config);
  let cluster: ClusterMembership | undefined;
  const joining = { role: "follower" as const, why: `joining the cluster in etcd at ${config.etcdPrefix}` };
  const role = (): { role: Role; why: string } => cluster?.role() ?? (config.cluster.etcd.length > 0 ? joining : configured);
  // The registry reads its options at each call, so a reload updates them in place.
  const registryOptions = {
    nodeTimeoutMs: config.scaling.node_timeout * 1000,
    forgetAfterMs: config.scaling.forget_after * 1000,
    keepMs: config.scaling.window * 1000 + 60_000,
    isManual: (name: string) => hosts.some((h) => h.name === name && h.source === "manual"),
  };
  const registry = createRegistry(registryOptions);

  let settings = applySettingsFromConfig(config);
  let runtime = await runtimeSettingsOf(config, logger);
  let scaler: Scaler | undefined;
  /** The template and the hosts HAProxy should serve now (read with the apply lock held). */
  const renderInputs = async (): Promise<RenderInputs> => {
    if (template === undefined) template = await readTemplate(config);
    await hostsCache.recheckProblems();
    const problems = hostsCache.problems;
    if (problems.size > 0) {
      throw new AutoscalerError(
        "AUTOSCALER_HOSTS_INVALID",
        `${problems.size} file(s) in ${config.hostsDir} cannot be used; fix or remove them (HAProxy keeps its config):`,
        {
          details: [...problems].map(([file, message]) => `${file}: ${message}`),
        },
      );
    }
    // Nodes drained without a runtime socket, or about to be terminated, are left out.
    const excluded = scaler?.excluded();
    const serving = excluded && excluded.size > 0 ? hosts.filter((h) => !excluded.has(h.name)) : hosts;
    return { template, hosts: serving, serverLine: config.haproxy.server_line };
  };
  /**
   * A registration or removal: at once while the runtime API takes such changes, else debounced
   * like any reload. One reload-path apply (the start's, a template edit's) brings HAProxy in
   * step; two in a row mean a lasting cause (a DNS-named backend, a server_line the runtime API
   * cannot take), so changes are debounced until a runtime apply succeeds again.
   */
  const hostsChanged = (reason: string) => applier.schedule(reason, { urgent: runtime !== undefined && applier.state.reloadPathsInARow < 2 });
  const applier = createApplier({
    quietMs: APPLY_QUIET_MS,
    ceilingMs: APPLY_CEILING_MS,
    retryMs: APPLY_RETRY_MS,
    logger,
    now,
    apply: () =>
      applyWithOwnerNote(settings.target, (lockHeld) =>
        applyHaproxyChange(
          settings,
          async () => {
            await lockHeld();
            return renderInputs();
          },
          { runner: deps.runner, logger },
          runtime,
        ),
      ),
  });

  const listen = `${config.master.listen!.host}:${config.master.listen!.port}`;
  const status = (eventCount = 20): MasterStatus =>
    buildStatus({
      version: deps.version,
      role: role(),
      listen,
      haproxyConfig: config.haproxy.config,
      registry,
      hosts,
      applier: applier.state,
      events: events.latest(eventCount),
      windowMs: config.scaling.window * 1000,
      now: now(),
      scaling: scaler?.status(),
      sharedToken: config.master.shared_token,
      cluster: cluster?.status(),
    });
  const metrics = createMetrics(() => status());

  /** Registrations whose hosts.d write is under way, by name. */
  const registering = new Map<string, Promise<void>>();
  /**
   * Write or refresh the agent's hosts.d entry; a hand-added entry of that name is never
   * overwritten. An instance id a launch's output or an operator vouched for is kept; a node's
   * own id is recorded as only its word.
   */
  const upsert = (hello: HelloMessage, admission: Extract<Admission, { ok: true }>): Promise<void> => {
    const done = writeEntry(hello, admission).finally(() => {
      if (registering.get(hello.name) === done) registering.delete(hello.name);
    });
    registering.set(hello.name, done);
    return done;
  };
  const writeEntry = async (hello: HelloMessage, admission: Extract<Admission, { ok: true }>) => {
    const existing = await store.get(hello.name);
    if (existing?.source === "manual") throw new Error(`${hello.name} is a hand-added backend`);
    const vouched = existing?.instanceIdFrom !== undefined;
    if (existing && existing.address === hello.address && existing.port === hello.port && (vouched || existing.instanceId === hello.instance_id)) return;
    // A node hosts.d did not have may be the one a pending launch is waiting for.
    const claim =
      existing === undefined && scaler !== undefined
        ? await scaler.claimLaunch(hello, {
            launchId: admission.launchId,
            anyLaunch: admission.kind === "shared" || (admission.kind === "node" && admission.fresh),
          })
        : { claimed: false };
    const instanceId = vouched ? existing.instanceId : (claim.instanceId ?? hello.instance_id);
    const instanceIdFrom = vouched ? existing.instanceIdFrom : claim.instanceId !== undefined ? ("launch" as const) : undefined;
    const entry: HostEntry = {
      name: hello.name,
      address: hello.address,
      port: hello.port,
      source: existing?.source === "launched" || claim.claimed ? "launched" : "agent",
      addedAt: existing?.addedAt ?? new Date(now()).toISOString(),
      ...(instanceId !== undefined ? { instanceId } : {}),
      ...(instanceIdFrom !== undefined ? { instanceIdFrom } : {}),
    };
    // The in-memory copy first, so the apply (on the runtime path, at the next turn of the event
    // loop) puts the node in service while its entry is written and flushed; the agent is welcomed
    // only once the entry is on disk. A write that fails takes the node out of service again.
    hostsCache.set(entry);
    hostsChanged(`registered ${hello.name}`);
    try {
      await store.put(entry);
    } catch (err) {
      if (existing) hostsCache.set(existing);
      else hostsCache.delete(hello.name);
      hostsChanged(`${hello.name} not registered: its hosts.d entry could not be written`);
      throw err;
    }
  };

  // The control socket first: it also proves that no other master runs on this state_dir
  // before the scaler reads state.json and acts on it.
  const instances = () => {
    const st = status();
    return { instances: buildInstances(st, scaler?.status().launched_by ?? {}, now()), paused: st.paused, teardown: st.teardown, drains: st.drains };
  };
  const control = await startControlServer(controlSocketPath(config.master.state_dir), createControlDispatch({ status, scaler: () => scaler, instances }));
  // The only master on this state_dir now: clear what a predecessor killed mid-apply left.
  await recoverApplyLeftovers(config.haproxy.config, logger);
  /** Remove a backend: out of memory first, then its file, then apply. */
  const removeHost = async (name: string) => {
    hostsCache.delete(name);
    await store.remove(name);
    hostsChanged(`removed ${name}`);
  };

  const names = await loadNameBook(config.master.state_dir, logger);
  const newNameRate = createNameRate(() => Math.max(10, config.scaling.max_nodes));
  /** The agent entries (hosts.d and the registry, hand-added hosts aside), and the most there may be. */
  const agentRoom = () => {
    const agentNames = new Set([...hosts.filter((h) => h.source !== "manual").map((h) => h.name), ...registry.list().map((r) => r.name)]);
    return { registered: agentNames.size, limit: config.scaling.max_nodes + (scaler?.pending() ?? 0) + REGISTRATION_MARGIN };
  };
  if (config.master.shared_token === "allow" && config.master.token !== "") {
    logger.warn(SHARED_TOKEN_NOTE, { event: "shared_token_allowed" });
  }

  const closeControl = async () => {
    await new Promise<void>((r) => control.close(() => r()));
    await fs.rm(controlSocketPath(config.master.state_dir), { force: true });
  };
  /** Record in hosts.d that a launch's own output gives `name` this instance id. */
  const vouch = async (name: string, instanceId: string) => {
    // The claim came from this node's registration, whose hosts.d write may still be under way.
    await registering.get(name);
    const entry = await store.get(name);
    if (!entry || entry.source === "manual" || entry.instanceIdFrom !== undefined) return;
    const vouched: HostEntry = { ...entry, instanceId, instanceIdFrom: "launch" };
    await store.put(vouched);
    hostsCache.set(vouched);
    logger.info("instance id from the launch's output", { node: name, instance_id: instanceId });
  };
  const shared = config.cluster.etcd.length > 0;
  scaler = await startScaler({
    config,
    role: configured.role,
    store: createStateStore(config.master.state_dir),
    shared,
    mayAct: () => cluster?.leading() ?? true,
    leaderName: () => cluster?.status().leader?.member,
    registry,
    events,
    logger,
    runner: deps.runner,
    now,
    hosts: () => hosts,
    applyNow: async (reason) => {
      applier.schedule(reason);
      await applier.flush();
    },
    removeHost,
    launchOf: (name) => names.get(name)?.launch,
    vouch,
  }).catch(async (err: unknown) => {
    applier.stop();
    await closeControl();
    throw err;
  });
  const running = scaler;
  /**
   * What is running so far, undone newest first when a later step fails (a port in use): the
   * master then exits with the error instead of living on with timers and no listener.
   */
  const undo: (() => Promise<void> | void)[] = [closeControl, () => applier.stop(), () => running.stop()];
  const orUndo = async <T>(step: Promise<T>): Promise<T> => {
    try {
      return await step;
    } catch (err) {
      for (const u of undo.splice(0).reverse())
        await Promise.resolve()
          .then(u)
          .catch(() => undefined);
      throw err;
    }
  };
  if (shared) {
    // Loaded only with etcd: the gRPC client costs memory a single proxy need not pay.
    const { joinCluster } = await orUndo(import("./cluster/join.js"));
    cluster = await orUndo(
      joinCluster({
        config,
        candidate: config.master.role !== "follower",
        scaler: running,
        logger,
        now,
        onExcludedChange: () => applier.schedule("the leader's drains changed"),
        removeHost: async (name) => {
          await removeHost(name);
          registry.forget(name);
        },
        vouch,
      }),
    );
    const joined = cluster;
    undo.push(() => joined.stop());
    events.add("cluster", `joined the cluster in etcd at ${config.etcdPrefix} as ${cluster.status().member}`);
  }

  // Read per connection, so a reload's node_timeout holds for the next connections.
  const agentLimits = {
    maxConnections: MAX_CONNECTIONS,
    helloBudget: HELLO_BUDGET,
    helloTimeoutMs: HELLO_TIMEOUT_MS,
    idleTimeoutMs: Math.max(60_000, config.scaling.node_timeout * 2000),
  };
  const agents = await orUndo(
    startAgentServer(
      config.master.listen!.host,
      config.master.listen!.port,
      {
        registry,
        role: () => role().role,
        version: deps.version,
        logger,
        now,
        judge: (hello) => {
          const ports = config.master.node_ports;
          const room = agentRoom();
          return admit({
            secret: config.master.token,
            allowShared: config.master.shared_token === "allow",
            now: now(),
            name: hello.name,
            token: hello.token,
            addressProblem:
              nodeAddressProblem(hello.address, config.master.node_networks) ??
              (ports.length > 0 && !ports.includes(hello.port) ? "is not in [master] node_ports" : undefined),
            terminated: running.admit(hello),
            known: names.get(hello.name),
            exists: registry.get(hello.name) !== undefined || hosts.some((h) => h.name === hello.name),
            launchNamesUsed: (id) => names.launchNames(id),
            ...room,
            takeNewName: () => newNameRate(now()),
          });
        },
        onRegistered: async (hello, isNew, admission) => {
          const remembered = names.remember(hello.name, { kind: admission.kind, ...(admission.launchId ? { launch: admission.launchId } : {}), at: now() });
          // A launch's count must be on disk before its node is welcomed (a restart must not reset it);
          // other names are protected by hosts.d meanwhile, so their write does not hold the registration.
          if (admission.kind === "launch") await remembered;
          else remembered.catch((err: Error) => logger.warn("cannot record the node's name in names.json", { node: hello.name, error: err.message }));
          await upsert(hello, admission);
          metrics.registrations.inc();
          events.add(
            "registered",
            `${hello.name} (${hello.address}:${hello.port}) ${isNew ? "registered" : "reconnected"} with a ${admission.kind} credential`,
          );
        },
        credentialFor: (name) => nodeCredential(config.master.token, name),
        onRefused: (reason, detail) => {
          metrics.refused.inc({ reason });
          events.add("refused", `agent connection refused (${reason}): ${detail}`);
        },
        onSample: (kept, sample) => {
          (kept ? metrics.samples : metrics.samplesDropped).inc();
          if (kept && sample.available === undefined && config.scaling.mode === "resources") metrics.capacityMissing.inc();
        },
        onLeave: (name, credential) => {
          // The cluster secret speaks for any name (the weaker mode): a leave needs the node's own
          // credential (or its launch's), so a holder of the secret cannot make another node leave.
          if (credential === "shared") {
            metrics.leavesRefused.inc();
            events.add("leave_refused", `${name} asked to leave on a connection that presented the cluster secret, which speaks for any name; refused`);
            logger.warn("leave refused: the connection presented the cluster secret, not the node's own credential", { event: "leave_refused", node: name });
            return;
          }
          events.add("leave", `${name} asks to leave`);
          running.leave(name).catch((err: Error) => logger.warn("leave not honoured", { node: name, error: err.message }));
        },
      },
      agentLimits,
    ),
  );
  undo.push(() => agents.close());

  const watcher = startWatcher({
    hostsDir: config.hostsDir,
    template: () => config.haproxy.template,
    cache: hostsCache,
    schedule: (reason) => applier.schedule(reason),
    hostsChanged,
    onTemplateChange: () => (template = undefined), // read again on the next apply
    logger,
  });

  const sweep = setInterval(
    () => {
      const list = registry.list();
      const at = now();
      history.record(
        clusterSample(at, scaler?.status().capacity, list, (r) => registry.stateOf(r, at)),
        list.map((r) => [r.name, r.readings.at(-1)?.cpu ?? null] as const),
      );
      for (const gone of registry.sweep(now())) {
        events.add("forgotten", `${gone.name} sent nothing for ${config.scaling.forget_after} s and was removed`);
        logger.info("node forgotten", { node: gone.name });
        const entry = hosts.find((h) => h.name === gone.name);
        if (entry && entry.source !== "manual") {
          // Out of the in-memory copy first, so status never shows it as a bare hosts.d entry
          // while the file is being removed (a failed removal is put back by the next resync).
          removeHost(gone.name).catch((err: Error) => logger.error("cannot remove hosts.d entry", { node: gone.name, error: err.message }));
        }
      }
    },
    Math.max(200, config.master.interval * 1000),
  );

  undo.push(
    () => watcher.close(),
    () => clearInterval(sweep),
  );
  const metricsServer = config.master.metrics_listen
    ? await orUndo(
        startMetricsServer(
          config.master.metrics_listen.host,
          config.master.metrics_listen.port,
          metrics,
          () => status(),
          createPageRoutes((range, node) =>
            buildPageData({
              status: status(EVENTS_KEPT),
              history,
              policy: policyFromConfig(config),
              readings: (name) => registry.get(name)?.readings,
              now: now(),
              range,
              node,
            }),
          ),
        ),
      )
    : undefined;

  const webhookServer = config.master.webhook_listen
    ? await orUndo(
        startWebhookServer(config.master.webhook_listen.host, config.master.webhook_listen.port, {
          logger,
          events,
          metrics,
          now,
          leading: () => running.leading(),
          find: (secret) => running.findWebhook(secret),
          execute: (policy, trigger) => running.executePolicy(policy, trigger),
        }),
      )
    : undefined;
  if (webhookServer) undo.push(() => void webhookServer.close());

  applier.schedule("start");
  logger.info("master started", {
    listen,
    role: role().role,
    role_reason: role().why,
    ...(cluster ? { etcd: config.cluster.etcd.join(","), prefix: config.etcdPrefix } : {}),
    metrics: config.master.metrics_listen ? `${config.master.metrics_listen.host}:${config.master.metrics_listen.port}` : "off",
    webhooks: config.master.webhook_listen ? `${config.master.webhook_listen.host}:${config.master.webhook_listen.port}` : "off",
    control: controlSocketPath(config.master.state_dir),
    backends: hosts.length,
  });
  events.add("started", `master started as ${role().role}: ${role().why}`);

  return {
    status,
    registry,
    applier,
    scaler: running,
    reconfigure(next) {
      const previous = config;
      const plan = planReconfigure(previous, next);
      const needsRestart = plan.needsRestart.map((r) => r.key);
      for (const r of plan.needsRestart) {
        logger.warn(`${r.key} changed in ${previous.file}, but only a restart applies it (${r.why}); the running master keeps its current value`, {
          event: "config_needs_restart",
          key: r.key,
        });
      }
      config = plan.config;
      if (plan.applied.length > 0) {
        settings = applySettingsFromConfig(config);
        if (config.haproxy.runtime_socket !== previous.haproxy.runtime_socket || config.haproxy.backend !== previous.haproxy.backend)
          void runtimeSettingsOf(config, logger).then((r) => (runtime = r));
        registryOptions.nodeTimeoutMs = config.scaling.node_timeout * 1000;
        registryOptions.forgetAfterMs = config.scaling.forget_after * 1000;
        registryOptions.keepMs = config.scaling.window * 1000 + 60_000;
        agentLimits.idleTimeoutMs = Math.max(60_000, config.scaling.node_timeout * 2000);
        if (config.haproxy.template !== previous.haproxy.template) {
          watcher.moveTemplate(previous.haproxy.template, config.haproxy.template);
        }
        template = undefined; // read again (a new path, or edited along with the ini)
        running.reconfigure(config);
        applier.schedule("config reloaded");
      }
      // Key names only: a changed value may be a secret.
      logger.info("config reloaded", {
        event: "config_reloaded",
        file: config.file,
        applied: plan.applied,
        needs_restart: needsRestart,
        ignored: plan.ignored,
      });
      const said = [
        plan.applied.length > 0 ? `applied ${plan.applied.join(", ")}` : "nothing to apply",
        needsRestart.length > 0 ? `needs a restart: ${needsRestart.join(", ")}` : "",
      ].filter(Boolean);
      events.add("config_reloaded", `config reloaded: ${said.join("; ")}`);
      return { applied: plan.applied, needsRestart, ignored: plan.ignored };
    },
    async stop() {
      // No new decisions; a scale command already running finishes and its outcome is saved
      // (within command_timeout), so a restart finds it recorded rather than "unknown".
      running.stop();
      await running.idle();
      // Resign after the last outcome is recorded, so a follower takes over at once.
      await cluster?.stop();
      clearInterval(sweep);
      applier.stop();
      await watcher.close();
      await agents.close();
      await closeControl();
      if (webhookServer) {
        webhookServer.closeAllConnections();
        await new Promise<void>((r) => webhookServer.close(() => r()));
      }
      if (metricsServer) {
        metricsServer.closeAllConnections();
        await new Promise<void>((r) => metricsServer.close(() => r()));
      }
    },
  };
}
