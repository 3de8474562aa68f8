/** `generate` and `check-config`. */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  AutoscalerError,
  applyHaproxyConfig,
  cliApplyDeps,
  applySettingsFromConfig,
  describeExit,
  haproxyErrorLines,
  readHosts,
  readTemplate,
  renderFromFiles,
  resolveConfigPath,
  renderHaproxyConfig,
  type ApplyResult,
  type Config,
  type HostsStore,
  SHARED_TOKEN_NOTE,
} from "@autoscaler/shared";
import { loadContext, runner, type GlobalArgs } from "../context.js";
import type { Io } from "../io.js";
import { runCheckSshd, type CheckSshdArgs } from "./check-sshd.js";

/**
 * Render what the master would serve: hosts.d without the nodes it is draining or terminating
 * (read from state_dir), so a CLI apply never puts a leaving node back.
 */
export async function renderServed(config: Config, store: HostsStore, warn: (line: string) => void = () => undefined): Promise<string> {
  const { leavingNodes } = await import("@autoscaler/master");
  const leaving = await leavingNodes(config);
  if (leaving.unknown)
    warn(`warning: ${leaving.unknown}; nodes being drained are not left out of this render (the running master leaves them out again at its next apply)`);
  return renderFromFiles(config, store, leaving.names);
}

/** One line that says what the apply pipeline did. */
export function describeApply(target: string, r: ApplyResult, reloadAsked: boolean): string {
  if (!r.changed && !r.reloaded) return `${target} is unchanged: nothing written, checked or reloaded`;
  const steps = r.reloadOnly
    ? [`${target} is unchanged but HAProxy had not reloaded it yet (it was written with --no-reload)`]
    : [`wrote ${target}`, "check passed"];
  if (r.reloaded) {
    steps.push(r.confirmed ? `reloaded (new worker pid ${r.workerPid} confirmed on the master CLI)` : "reloaded (not confirmed: master CLI not available)");
  } else if (reloadAsked) {
    steps.push("not reloaded");
  } else {
    steps.push("not reloaded (pass --reload, or run reload_command)");
  }
  return `${steps.join("; ")} in ${Math.round(r.timings.totalMs)} ms`;
}

/** Arguments of `generate`. */
export interface GenerateArgs extends GlobalArgs {
  output?: string;
  reload?: boolean;
}

/** Render; `-` prints; otherwise stage, check, swap and, with --reload, reload. */
export async function runGenerate(io: Io, args: GenerateArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  if (args.output === "-") {
    if (args.reload) throw new AutoscalerError("AUTOSCALER_USAGE", "--reload cannot go with --output -: printing writes no file to reload", { exitCode: 2 });
    io.stdout.write(await renderServed(ctx.config, ctx.store, (line) => io.stderr.write(line + "\n")));
    return 0;
  }
  const target = args.output ? path.resolve(io.cwd, args.output) : ctx.config.haproxy.config;
  if (args.reload && target !== ctx.config.haproxy.config) {
    throw new AutoscalerError(
      "AUTOSCALER_USAGE",
      `--reload cannot go with --output ${args.output}: HAProxy reads its own config (haproxy.config = ${ctx.config.haproxy.config}), so a reload would not load ${target}. Write the file without --reload, or leave out --output to write and reload ${ctx.config.haproxy.config}`,
      { exitCode: 2 },
    );
  }
  const settings = applySettingsFromConfig(ctx.config, target);
  const result = await applyHaproxyConfig(
    settings,
    () => renderServed(ctx.config, ctx.store, (line) => io.stderr.write(line + "\n")),
    cliApplyDeps(ctx.config, { runner, logger: ctx.logger }),
    { reload: Boolean(args.reload) },
  );
  if (args.json) io.stdout.write(JSON.stringify({ file: target, ...result }) + "\n");
  else io.stdout.write(describeApply(target, result, Boolean(args.reload)) + "\n");
  return 0;
}

/** Arguments of `check-config`: with `sshd`, check this machine's sshd instead (check-sshd.ts). */
export interface CheckConfigArgs extends CheckSshdArgs {
  sshd?: boolean;
}

/**
 * Validate the ini (loading does), the template, hosts.d, and the rendered result with check_command;
 * with --sshd, instead what sshd applies to a node's connection against the block authorize-key prints.
 */
export async function runCheckConfig(io: Io, args: CheckConfigArgs): Promise<number> {
  if (args.sshd) return runCheckSshd(io, args);
  if (!args.json) return checkConfig(io, args);
  // --json: a failed check is JSON on stdout too (the same words stay on stderr, and the exit code).
  try {
    return await checkConfig(io, args);
  } catch (err) {
    if (err instanceof AutoscalerError)
      io.stdout.write(
        JSON.stringify({ ok: false, config: resolveConfigPath(args.config, io.env, io.cwd), code: err.code, message: err.message, problems: err.details }) +
          "\n",
      );
    throw err;
  }
}

/**
 * Render the template with hosts.d as it is now and run check_command on it, in a temp file (the
 * live haproxy.cfg is never touched). Throws AUTOSCALER_HAPROXY_CHECK_FAILED with HAProxy's words.
 */
export async function checkRendered(config: Config, store: HostsStore): Promise<{ backends: number }> {
  const template = await readTemplate(config);
  const hosts = await readHosts(store);
  const rendered = renderHaproxyConfig(template, hosts, config.haproxy.server_line);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "autoscaler-check-"));
  const file = path.join(dir, "haproxy.cfg");
  try {
    await fs.writeFile(file, rendered, { mode: 0o600 });
    const result = await runner.run(config.haproxy.check_command, {
      env: { CONFIG: file },
      cwd: config.dir,
      timeoutMs: config.machine.command_timeout * 1000,
    });
    if (result.code !== 0 || result.timedOut) {
      throw new AutoscalerError("AUTOSCALER_HAPROXY_CHECK_FAILED", `the template renders a config HAProxy refuses (check_command ${describeExit(result)}):`, {
        details: haproxyErrorLines(result, file, config.haproxy.template + " (rendered)", rendered),
      });
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  return { backends: hosts.length };
}

async function checkConfig(io: Io, args: CheckConfigArgs): Promise<number> {
  const ctx = await loadContext(io, args);
  const { backends } = await checkRendered(ctx.config, ctx.store);
  // A note, not a problem: the weaker mode still works (stdout, so a clean check leaves stderr empty).
  const note = ctx.config.master.shared_token === "allow" && ctx.config.master.token !== "" ? SHARED_TOKEN_NOTE : null;
  const summary = { ok: true, config: ctx.config.file, template: ctx.config.haproxy.template, backends, note };
  if (args.json) io.stdout.write(JSON.stringify(summary) + "\n");
  else
    io.stdout.write(
      `${ctx.config.file}: OK; template ${ctx.config.haproxy.template} renders ${backends} backend${backends === 1 ? "" : "s"} and passes check_command\n` +
        (note ? `note: ${note}\n` : ""),
    );
  return 0;
}
