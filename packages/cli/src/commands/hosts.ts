/** `add-host`, `remove-host` and `hosts`: the operator's view of hosts.d. */
import { promises as fs } from "node:fs";
import {
  AutoscalerError,
  checkHost,
  checkName,
  checkPort,
  entryAddress,
  errnoCode,
  normaliseHost,
  readHosts,
  renderServerLine,
  splitHostPort,
  applyHaproxyConfig,
  cliApplyDeps,
  type HostEntry,
} from "@autoscaler/shared";
import { loadContext, runner, type CommandContext, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";
import { formatTable } from "../table.js";
import { checkRendered, describeApply, renderServed } from "./generate.js";

const usageError = (message: string) => new AutoscalerError("AUTOSCALER_INPUT_INVALID", message, { exitCode: 2 });

/** The name given to a backend added without --name: host and port, with characters names cannot hold replaced. */
export function defaultHostName(host: string, port: number): string {
  return `${host}-${port}`.replace(/[^A-Za-z0-9._-]/g, "_").slice(-63);
}

async function applyAfterChange(io: Io, ctx: CommandContext, reload: boolean): Promise<void> {
  const result = await applyHaproxyConfig(
    ctx.applySettings,
    () => renderServed(ctx.config, ctx.store, (line) => io.stderr.write(line + "\n")),
    cliApplyDeps(ctx.config, { runner, logger: ctx.logger }),
    { reload },
  );
  io.stdout.write(describeApply(ctx.applySettings.target, result, reload) + "\n");
}

/** Arguments of `add-host`. */
export interface AddHostArgs extends GlobalArgs {
  host: string;
  port: string;
  name?: string;
  reload?: boolean;
}

/** Validate and write a hosts.d entry (source manual), then regenerate and reload. */
export async function runAddHost(io: Io, args: AddHostArgs): Promise<number> {
  const host = String(args.host);
  const portText = String(args.port);
  const problems = [
    checkHost(host) && `host ${JSON.stringify(host)} ${checkHost(host)}`,
    checkPort(portText) && `port ${JSON.stringify(portText)} ${checkPort(portText)}`,
  ];
  if (args.name !== undefined && checkName(String(args.name))) problems.push(`--name ${JSON.stringify(String(args.name))} ${checkName(String(args.name))}`);
  const bad = problems.filter((p): p is string => Boolean(p));
  if (bad.length > 0) throw usageError(bad.join("\n"));

  const ctx = await loadContext(io, args);
  const address = normaliseHost(host);
  const port = Number(portText);
  const name = args.name !== undefined ? String(args.name) : defaultHostName(address, port);
  const existing = await readHosts(ctx.store);
  const same = existing.find((h) => h.address === address && h.port === port);
  if (same) throw new AutoscalerError("AUTOSCALER_EXISTS", `${entryAddress(same)} is already in hosts.d as ${JSON.stringify(same.name)}; nothing was changed`);
  const entry: HostEntry = { name, address, port, source: "manual", addedAt: new Date().toISOString() };
  await ctx.store.add(entry);
  io.stdout.write(`added ${name} (${entryAddress(entry)}) to ${ctx.store.dir}\n`);
  try {
    await applyAfterChange(io, ctx, args.reload !== false);
  } catch (err) {
    // A config HAProxy refuses must not stay behind in hosts.d: undo the add, keep the command atomic.
    if (err instanceof AutoscalerError && err.code === "AUTOSCALER_HAPROXY_CHECK_FAILED") {
      await ctx.store.remove(name);
      // Whose fault: the same check without the new entry tells the template (or another entry) from it.
      const withoutIt = await checkRendered(ctx.config, ctx.store).then(
        () => "passes",
        (e: unknown) => (e instanceof AutoscalerError && e.code === "AUTOSCALER_HAPROXY_CHECK_FAILED" ? "fails" : "unknown"),
      );
      io.stdout.write(
        withoutIt === "fails"
          ? `removed ${name} again; the check fails without it too, so the fault is in the template (${ctx.config.haproxy.template}) or another hosts.d entry, not in ${name}: fix what HAProxy names below, then add ${name} again\n`
          : `removed ${name} again: HAProxy refused the config with it${withoutIt === "passes" ? " and accepts it without" : ""}\n`,
      );
    } else if (err instanceof AutoscalerError && err.code === "AUTOSCALER_HAPROXY_RELOAD_FAILED") {
      // The entry is valid and stays; what failed is HAProxy's reload, which the next apply retries.
      io.stdout.write(`${name} stays in hosts.d; run "autoscaler generate --reload" once HAProxy can reload (a running master retries by itself)\n`);
    }
    throw err;
  }
  return 0;
}

/** Arguments of `remove-host`. */
export interface RemoveHostArgs extends GlobalArgs {
  target: string;
  reload?: boolean;
}

/** Remove an entry by name or by host:port, then regenerate and reload. */
export async function runRemoveHost(io: Io, args: RemoveHostArgs): Promise<number> {
  const target = String(args.target);
  if (/[\s/\\]/.test(target) || target === "")
    throw usageError(`${JSON.stringify(target)} is not a backend name or host:port; expected a name from "autoscaler hosts" or host:port`);
  const ctx = await loadContext(io, args);
  const { hosts } = await ctx.store.list();
  let match = hosts.find((h) => h.name === target);
  if (!match) {
    const { host, port } = splitHostPort(target);
    if (port !== undefined) match = hosts.find((h) => h.address === normaliseHost(host) && String(h.port) === port);
  }
  if (!match) {
    // 2001:db8::6:80 reads as an IPv6 address without a port: say how to write host:port for one.
    const ipv6Hint =
      !target.startsWith("[") && (target.match(/:/g) ?? []).length >= 2 ? ` (for an IPv6 host and port, write [host]:port, such as [2001:db8::6]:80)` : "";
    throw new AutoscalerError(
      "AUTOSCALER_NOT_FOUND",
      `no backend named or at ${JSON.stringify(target)} in ${ctx.store.dir}${ipv6Hint}; "autoscaler hosts" lists them`,
    );
  }
  await ctx.store.remove(match.name);
  io.stdout.write(`removed ${match.name} (${entryAddress(match)}) from ${ctx.store.dir}\n`);
  await applyAfterChange(io, ctx, args.reload !== false);
  return 0;
}

/**
 * List hosts.d, each entry with whether its server line is in haproxy.cfg. That is all this command
 * can know from files: whether HAProxy runs that file (a reload may have failed) and whether the
 * backend answers are `autoscaler status`'s to say, where "active" means serving.
 */
export async function runHosts(io: Io, args: GlobalArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const { hosts, problems } = await ctx.store.list();
  let live = "";
  try {
    live = await fs.readFile(ctx.config.haproxy.config, "utf8");
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw err;
  }
  const liveLines = new Set(live.split("\n").map((l) => l.trim()));
  const rows = hosts.map((h) => ({
    name: h.name,
    address: h.address,
    port: h.port,
    source: h.source,
    in_config: liveLines.has(renderServerLine(ctx.config.haproxy.server_line, h).trim()),
    added_at: h.addedAt,
    instance_id: h.instanceId ?? null,
  }));
  if (args.json) {
    io.stdout.write(JSON.stringify({ hosts: rows, problems }, null, 2) + "\n");
  } else {
    io.stdout.write(
      formatTable(
        ["NAME", "ADDRESS", "PORT", "SOURCE", "IN HAPROXY.CFG", "ADDED"],
        rows.map((r) => [r.name, r.address, String(r.port), r.source, r.in_config ? "yes" : "not yet", r.added_at]),
      ),
    );
    if (rows.length === 0) io.stdout.write(`(no backends in ${ctx.store.dir}; add one with "autoscaler add-host HOST PORT")\n`);
  }
  for (const p of problems) io.stderr.write(`error: ${ctx.store.dir}/${p.file} ${p.message}\n`);
  return problems.length > 0 ? 1 : 0;
}
