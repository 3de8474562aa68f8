/**
 * Named policies over the control socket: `autoscaler policies`, `execute <policy>`,
 * `set-capacity <N>`, `webhook add|list|remove`, `schedules`. The master runs each through its
 * state machine, exactly as its own decisions.
 */
import { AutoscalerError, EXIT_USAGE } from "@autoscaler/shared";
import type { PolicyStatus, ScheduleStatus } from "@autoscaler/master";
import { loadContext, type CommandContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";
import { formatTable } from "../table.js";

const usage = (message: string) => new AutoscalerError("AUTOSCALER_USAGE", message, { exitCode: EXIT_USAGE });

async function call(ctx: CommandContext, request: { cmd: string; [k: string]: unknown }): Promise<Record<string, unknown>> {
  const { callControl, controlSocketPath } = await import("@autoscaler/master");
  return (await callControl(controlSocketPath(ctx.config.master.state_dir), request, 15_000)) as Record<string, unknown>;
}

/** A policy the ini has, or exit 2 naming the ones it has. */
function knownPolicy(ctx: CommandContext, name: unknown): string {
  const names = ctx.config.policies.map((p) => p.name);
  if (typeof name !== "string" || !names.includes(name))
    throw usage(
      `unknown policy ${JSON.stringify(name)}; ${names.length ? `the ini has: ${names.join(", ")}` : `the ini has no [policy:NAME] section (see the README, "Policies, webhooks and schedules")`}`,
    );
  return name;
}

const runs = (r: Record<string, number | undefined>) =>
  Object.entries(r)
    .filter(([, n]) => n)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ") || "-";

/** `autoscaler policies [--json]`. */
export async function runPolicies(io: Io, args: GlobalArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const result = await call(ctx, { cmd: "policies" });
  if (args.json) {
    io.stdout.write(JSON.stringify(result, null, 2) + "\n");
    return 0;
  }
  const policies = result.policies as PolicyStatus[];
  const cooldown = result.cooldown as { scale_up_seconds: number; scale_down_seconds: number };
  if (policies.length === 0) {
    io.stdout.write('no named policies: add a [policy:NAME] section to the ini (README, "Policies, webhooks and schedules")\n');
    return 0;
  }
  io.stdout.write(
    formatTable(
      ["POLICY", "ACTION", "COOLDOWN", "LEFT", "LAST RUN", "VIA", "RESULT", "RUNS"],
      policies.map((p) => [
        p.name,
        p.action,
        `${p.cooldown_seconds} s`,
        `${p.cooldown_left_seconds} s`,
        p.last_run_at ?? "-",
        p.last_via ?? "-",
        p.last_outcome ? `${p.last_outcome}: ${p.last_result ?? ""}` : "-",
        runs(p.runs),
      ]),
    ) +
      `group cooldown left: scale-up ${cooldown.scale_up_seconds} s, scale-down ${cooldown.scale_down_seconds} s${result.paused ? "; paused (webhooks and schedules do not run)" : ""}\n`,
  );
  return 0;
}

/** `autoscaler execute <policy>`: exit 1 when it was discarded (a cooldown) or refused. */
export async function runExecute(io: Io, args: GlobalArgs & { policy?: unknown }): Promise<number> {
  const ctx = await loadContext(io, args);
  const policy = knownPolicy(ctx, args.policy);
  const result = await call(ctx, { cmd: "execute", policy });
  io.stdout.write(args.json ? JSON.stringify(result, null, 2) + "\n" : `policy ${policy}: ${String(result.outcome)}: ${String(result.result)}\n`);
  return 0;
}

/** `autoscaler set-capacity <N>`. */
export async function runSetCapacity(io: Io, args: GlobalArgs & { count?: unknown }): Promise<number> {
  const text = String(args.count ?? "");
  if (!/^[0-9]{1,4}$/.test(text) || Number(text) > 1000) throw usage(`capacity ${JSON.stringify(text)} is not valid; expected a whole number from 0 to 1000`);
  const ctx = await loadContext(io, args);
  const result = await call(ctx, { cmd: "set-capacity", desired: Number(text) });
  io.stdout.write(args.json ? JSON.stringify(result, null, 2) + "\n" : `${String(result.reason)}\nfollow it with: autoscaler status\n`);
  return 0;
}

/** `autoscaler webhook add <policy> [--name N]`: prints the URL once; only its hash is kept. */
export async function runWebhookAdd(io: Io, args: GlobalArgs & { policy?: unknown; name?: unknown }): Promise<number> {
  if (args.name !== undefined && (typeof args.name !== "string" || !/^[A-Za-z0-9._-]{1,63}$/.test(args.name)))
    throw usage(`--name ${JSON.stringify(args.name)} is not valid; expected 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-'`);
  const ctx = await loadContext(io, args);
  const policy = knownPolicy(ctx, args.policy);
  const result = await call(ctx, { cmd: "webhook-add", policy, ...(args.name !== undefined ? { name: args.name } : {}) });
  const listen = ctx.config.master.webhook_listen;
  const where = listen ? `http://${listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${listen.port}` : "http://WEBHOOK_LISTEN";
  const pathPart = `/hooks/${String(result.secret)}`;
  if (args.json) {
    io.stdout.write(JSON.stringify({ name: result.name, policy: result.policy, path: pathPart, url: `${where}${pathPart}` }, null, 2) + "\n");
    return 0;
  }
  io.stdout.write(
    [
      `webhook ${String(result.name)} runs policy ${String(result.policy)} on: POST ${where}${pathPart}`,
      "This URL is the secret: it is shown now only (the master keeps its SHA-256). Behind HAProxy's TLS frontend use https://<proxy>/hooks/… (README).",
      listen ? "" : "Note: [master] webhook_listen is empty, so no webhook is served until it is set (and the master restarted).",
    ]
      .filter(Boolean)
      .join("\n") + "\n",
  );
  return 0;
}

/** `autoscaler webhook list`: names and policies, never secrets. */
export async function runWebhookList(io: Io, args: GlobalArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const result = await call(ctx, { cmd: "webhook-list" });
  const hooks = result.webhooks as { name: string; policy: string; created_at: string }[];
  if (args.json) io.stdout.write(JSON.stringify(hooks, null, 2) + "\n");
  else if (hooks.length === 0) io.stdout.write("no webhooks; add one with: autoscaler webhook add <policy>\n");
  else
    io.stdout.write(
      formatTable(
        ["WEBHOOK", "POLICY", "CREATED"],
        hooks.map((h) => [h.name, h.policy, h.created_at]),
      ),
    );
  return 0;
}

/** `autoscaler webhook remove <name>`. */
export async function runWebhookRemove(io: Io, args: GlobalArgs & { name?: unknown }): Promise<number> {
  if (typeof args.name !== "string" || !/^[A-Za-z0-9._-]{1,63}$/.test(args.name)) throw usage(`webhook name ${JSON.stringify(args.name)} is not valid`);
  const ctx = await loadContext(io, args);
  const result = await call(ctx, { cmd: "webhook-remove", name: args.name });
  io.stdout.write(
    args.json ? JSON.stringify(result, null, 2) + "\n" : `webhook ${String(result.name)} (policy ${String(result.policy)}) removed; its URL answers 404 now\n`,
  );
  return 0;
}

/** `autoscaler schedules [--json]`: each schedule's next run, last run and the limits in force. */
export async function runSchedules(io: Io, args: GlobalArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const result = await call(ctx, { cmd: "schedules" });
  if (args.json) {
    io.stdout.write(JSON.stringify(result, null, 2) + "\n");
    return 0;
  }
  const schedules = result.schedules as ScheduleStatus[];
  const limits = result.limits as { min_nodes: number; max_nodes: number; set_by: string | null; set_at: string | null } | null;
  const out =
    schedules.length === 0
      ? 'no schedules: add a [schedule:NAME] section to the ini (README, "Policies, webhooks and schedules")\n'
      : formatTable(
          ["SCHEDULE", "CRON", "ZONE", "ACTION", "NEXT RUN", "LAST RUN", "RESULT"],
          schedules.map((x) => [
            x.name,
            x.cron,
            x.timezone,
            x.action,
            x.next_run_at ?? "-",
            x.last_run_at ?? "-",
            x.last_outcome ? `${x.last_outcome}: ${x.last_result ?? ""}` : "-",
          ]),
        );
  const lim = limits
    ? `limits in force: min_nodes ${limits.min_nodes}, max_nodes ${limits.max_nodes} (${limits.set_by ? `set by ${limits.set_by} at ${limits.set_at}` : "the ini's"})\n`
    : "";
  io.stdout.write(out + lim);
  return 0;
}
