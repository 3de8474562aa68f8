/** Read-only HTTP on `metrics_listen`: `/status` (JSON) and `/metrics` (Prometheus text, prom-client). */
import http from "node:http";
import { Counter, Gauge, Registry as PromRegistry } from "prom-client";
import type { MasterStatus } from "./status.js";

/** The counters the master bumps as things happen. Gauges are filled from the status at scrape time. */
export interface MasterMetrics {
  registry: PromRegistry;
  samples: Counter;
  samplesDropped: Counter;
  refused: Counter<"reason">;
  registrations: Counter;
  /** Webhook calls by hook name ("unknown" for a wrong secret, "none" before a lookup) and result. */
  webhookCalls: Counter<"hook" | "result">;
  /** Leaves refused: asked on a connection that presented the cluster secret. */
  leavesRefused: Counter;
  /** Samples without free resource units while [scaling] mode = resources (missing data). */
  capacityMissing: Counter;
}

/** Create the metrics, with gauges that read `status()` when scraped. */
export function createMetrics(fresh: () => MasterStatus): MasterMetrics {
  // One scrape collects five metrics from the status; build it once per scrape, not five times.
  let memo: { at: number; value: MasterStatus } | undefined;
  const status = () => {
    const now = performance.now();
    if (!memo || now - memo.at > 50) memo = { at: now, value: fresh() };
    return memo.value;
  };
  const registry = new PromRegistry();
  const samples = new Counter({ name: "autoscaler_samples_received_total", help: "CPU samples received from agents", registers: [registry] });
  const samplesDropped = new Counter({
    name: "autoscaler_samples_dropped_total",
    help: "CPU samples dropped because they came less than 250 ms after the node's last kept one (a flood)",
    registers: [registry],
  });
  const refused = new Counter({
    name: "autoscaler_connections_refused_total",
    help: "Agent connections closed by the master, by reason",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const registrations = new Counter({ name: "autoscaler_registrations_total", help: "Accepted agent hellos", registers: [registry] });
  const webhookCalls = new Counter({
    name: "autoscaler_webhook_calls_total",
    help: "Webhook calls by hook name (unknown: a wrong secret) and result",
    labelNames: ["hook", "result"] as const,
    registers: [registry],
  });
  const runsFromStatus = (
    name: string,
    help: string,
    label: "policy" | "schedule",
    pick: (s: MasterStatus) => { name: string; runs: Record<string, number | undefined> }[],
  ) =>
    new Counter({
      name,
      help,
      labelNames: [label, "result"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const p of pick(status())) for (const [result, n] of Object.entries(p.runs)) if (n) this.inc({ [label]: p.name, result }, n);
      },
    });
  runsFromStatus(
    "autoscaler_policy_executions_total",
    "Named policy runs by policy and result (executed, no_change, discarded, refused)",
    "policy",
    (s) => s.policies ?? [],
  );
  runsFromStatus("autoscaler_schedule_runs_total", "Scheduled runs by schedule and result (executed, refused, skipped)", "schedule", (s) => s.schedules ?? []);
  new Gauge({
    name: "autoscaler_node_cpu_percent",
    help: "Latest CPU percent reported by each node",
    labelNames: ["node"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const n of status().nodes) if (n.cpu_now !== null) this.set({ node: n.name }, n.cpu_now);
    },
  });
  new Gauge({
    name: "autoscaler_nodes",
    help: "Nodes by state",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const counts: Record<string, number> = { live: 0, unreachable: 0, configured: 0 };
      for (const n of status().nodes) counts[n.state] = (counts[n.state] ?? 0) + 1;
      for (const [state, v] of Object.entries(counts)) this.set({ state }, v);
    },
  });
  new Gauge({
    name: "autoscaler_capacity",
    help: "Cluster capacity: backends that serve (active: nodes whose agent reports, and hand-added backends), launches not registered yet (pending), nodes draining (leaving), and where the cluster is heading (desired)",
    labelNames: ["kind"] as const,
    registers: [registry],
    collect() {
      const c = status().capacity;
      for (const kind of ["active", "pending", "leaving", "desired", "min", "max"] as const) this.set({ kind }, c[kind]);
    },
  });
  new Gauge({
    name: "autoscaler_leader",
    help: "1 while this master decides (the leader with etcd, the decider without)",
    registers: [registry],
    collect() {
      this.set(status().role === "decider" ? 1 : 0);
    },
  });
  new Gauge({
    name: "autoscaler_leader_changes_total",
    help: "Changes of the etcd leader this master has seen since it started (0 without etcd)",
    registers: [registry],
    collect() {
      this.set(status().cluster?.leader_changes ?? 0);
    },
  });
  new Gauge({
    name: "autoscaler_etcd_up",
    help: "1 while etcd answers this master (absent without [cluster] etcd)",
    registers: [registry],
    collect() {
      this.reset();
      const cluster = status().cluster;
      if (cluster) this.set(cluster.etcd.up ? 1 : 0);
    },
  });
  new Gauge({
    name: "autoscaler_paused",
    help: "1 while automatic scaling is paused",
    registers: [registry],
    collect() {
      this.set(status().paused ? 1 : 0);
    },
  });
  new Gauge({
    name: "autoscaler_cooldown_seconds",
    help: "Seconds left in the scale-up and scale-down cooldowns",
    labelNames: ["direction"] as const,
    registers: [registry],
    collect() {
      const c = status().cooldown;
      this.set({ direction: "up" }, c.scale_up_seconds);
      this.set({ direction: "down" }, c.scale_down_seconds);
    },
  });
  const fromStatus = (name: string, help: string, pick: (s: MasterStatus) => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(pick(status()));
      },
    });
  fromStatus("autoscaler_haproxy_reloads_total", "HAProxy reloads done by this master", (s) => s.haproxy.reloads);
  fromStatus("autoscaler_haproxy_runtime_applies_total", "Changes applied through HAProxy's runtime API, without a reload", (s) => s.haproxy.runtime_applies);
  fromStatus(
    "autoscaler_haproxy_runtime_fallbacks_total",
    "Runtime API changes that failed and were applied with a reload instead",
    (s) => s.haproxy.runtime_fallbacks,
  );
  fromStatus("autoscaler_haproxy_reload_failures_total", "HAProxy reloads that failed or were not confirmed", (s) => s.haproxy.reload_failures);
  fromStatus("autoscaler_haproxy_check_failures_total", "Rendered configs that HAProxy's check refused", (s) => s.haproxy.check_failures);
  fromStatus("autoscaler_launches_total", "Launch commands started by this master", (s) => s.actions.launches);
  fromStatus("autoscaler_launch_failures_total", "Launch commands that failed or timed out (command_timeout)", (s) => s.actions.launch_failures);
  fromStatus("autoscaler_launch_timeouts_total", "Launches whose nodes did not register within launch_timeout", (s) => s.actions.launch_timeouts);
  fromStatus("autoscaler_terminations_total", "Nodes terminated by this master", (s) => s.actions.terminations);
  fromStatus("autoscaler_terminate_failures_total", "Terminate commands that failed", (s) => s.actions.terminate_failures);
  fromStatus(
    "autoscaler_decisions_not_recorded_total",
    "Decisions refused because state_dir could not be written (nothing ran)",
    (s) => s.actions.not_recorded,
  );
  const leavesRefused = new Counter({
    name: "autoscaler_leaves_refused_total",
    help: "Leaves refused because the node's connection presented the cluster secret, which speaks for any name",
    registers: [registry],
  });
  const capacityMissing = new Counter({
    name: "autoscaler_capacity_missing_total",
    help: "Samples that carried no free resource units in resources mode (the node's capacity_url failed or answered badly): missing data, never scaled on",
    registers: [registry],
  });
  return { registry, samples, samplesDropped, refused, registrations, webhookCalls, leavesRefused, capacityMissing };
}

/**
 * Headers of every answer on `metrics_listen`: a local, read-only admin page that loads only
 * from itself (no inline script or style, no framing), is never sniffed, cached or shared
 * across origins (no CORS header at all).
 */
export const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
} as const;

/**
 * Limits that keep a slow, stalled or hostile client from holding the master: few connections,
 * short request and idle timeouts (a client that stops reading its answer is dropped).
 */
export const HTTP_LIMITS = { maxConnections: 64, headersTimeoutMs: 5_000, requestTimeoutMs: 10_000, idleTimeoutMs: 15_000 } as const;

/** Put the HTTP limits on `server` and listen on host:port (exclusive); resolves once it listens. */
export async function listenWithLimits(server: http.Server, host: string, port: number): Promise<http.Server> {
  server.maxConnections = HTTP_LIMITS.maxConnections;
  server.headersTimeout = HTTP_LIMITS.headersTimeoutMs;
  server.requestTimeout = HTTP_LIMITS.requestTimeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, exclusive: true }, () => resolve());
  });
  return server;
}

/** Extra routes (the status page): an answer, or undefined for a path they do not serve. */
export type Routes = (pathname: string, query: URLSearchParams) => Promise<{ status: number; type: string; body: string | Buffer } | undefined>;

/** Serve `/status`, `/metrics` and `routes` (the status page) on host:port (loopback only, enforced by the config). */
export async function startMetricsServer(
  host: string,
  port: number,
  metrics: MasterMetrics,
  status: () => MasterStatus,
  routes: Routes = async () => undefined,
): Promise<http.Server> {
  const answer = (res: http.ServerResponse, code: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
    res.writeHead(code, { ...PAGE_HEADERS, "content-type": type, "content-length": Buffer.byteLength(body), ...extra }).end(body);
  };
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method !== "GET" && req.method !== "HEAD") return answer(res, 405, "text/plain; charset=utf-8", "read-only: GET or HEAD\n", { allow: "GET, HEAD" });
    if (url.pathname === "/status") return answer(res, 200, "application/json", JSON.stringify(status(), null, 2) + "\n");
    if (url.pathname === "/metrics") return answer(res, 200, metrics.registry.contentType, await metrics.registry.metrics());
    const page = await routes(url.pathname, url.searchParams);
    if (page) return answer(res, page.status, page.type, page.body);
    answer(res, 404, "text/plain; charset=utf-8", "not found: try /, /status or /metrics\n");
  };
  const server = http.createServer((req, res) => {
    res.setTimeout(HTTP_LIMITS.idleTimeoutMs, () => res.destroy());
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) answer(res, 500, "text/plain; charset=utf-8", err.message + "\n");
      else res.destroy();
    });
  });
  return listenWithLimits(server, host, port);
}
