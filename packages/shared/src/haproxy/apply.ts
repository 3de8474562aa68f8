/**
 * The HAProxy apply pipeline (SPEC behaviour 7):
 *
 *   render → compare with the live file ─(same bytes)→ done: no write, no check, no reload
 *                      │ (different)
 *                      ▼
 *   stage beside it → check_command on the staged file ─(fails)→ remove stage; live file untouched
 *                      │ (passes)
 *                      ▼
 *   rename over the live file → reload_command → confirm on the master CLI
 *                                   │ (fails, or no new worker)
 *                                   ▼
 *                     put the previous bytes back; report
 *
 * The whole pipeline holds a lock on the live file, so two processes applying at once render
 * one after the other and the last render sees every hosts.d entry.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import lockfile from "proper-lockfile";
import { readIfExists, syncDir, tempPathFor, writeAndSync, writeFileAtomic } from "../atomic-write.js";
import { describeExit, type CommandResult, type CommandRunner } from "../command-runner.js";
import { AutoscalerError } from "../errors.js";
import type { Config } from "../config/load.js";
import type { Logger } from "../logger.js";
import { judgeReload, showProc, type ProcTable } from "./master-cli.js";

/** The settings the pipeline uses (a slice of `[haproxy]` and `[machine]`). */
export interface ApplySettings {
  /** The live HAProxy config file. */
  target: string;
  checkCommand: string;
  reloadCommand: string;
  /** HAProxy's master CLI socket; empty to skip confirmation. */
  masterSocket: string;
  reloadTimeoutMs: number;
  commandTimeoutMs: number;
  /** Folder commands run in (the config file's folder). */
  cwd: string;
  /**
   * A file holding the SHA-256 of the config HAProxy last reloaded. With it, an unchanged file
   * that was written without a reload (`--no-reload`) is still reloaded when a reload is asked.
   */
  reloadedMarker?: string;
}

/** The pipeline's settings from a loaded config; `target` overrides `[haproxy] config` (generate --output FILE). */
export function applySettingsFromConfig(config: Config, target = config.haproxy.config): ApplySettings {
  return {
    target,
    checkCommand: config.haproxy.check_command,
    reloadCommand: config.haproxy.reload_command,
    masterSocket: config.haproxy.master_socket,
    reloadTimeoutMs: config.haproxy.reload_timeout * 1000,
    commandTimeoutMs: config.machine.command_timeout * 1000,
    cwd: config.dir,
    // Only for the live file: a file written elsewhere (--output FILE) is not what HAProxy runs.
    ...(target === config.haproxy.config ? { reloadedMarker: path.join(config.master.state_dir, "haproxy-reloaded.sha256") } : {}),
  };
}

/** What the pipeline needs from outside. */
export interface ApplyDeps {
  runner: CommandRunner;
  logger: Logger;
  /** Reads the master CLI's process table; injectable for tests of the verdict logic. */
  showProc?: (socket: string) => Promise<ProcTable>;
  sleep?: (ms: number) => Promise<void>;
  /** Runs just before reload_command, with the new file's text (the runtime path saves HAProxy's server states here). */
  beforeReload?: (text: string) => Promise<void>;
}

/** What happened, with how long each step took (ms). */
export interface ApplyResult {
  changed: boolean;
  checked: boolean;
  reloaded: boolean;
  /** True when the file was unchanged but HAProxy had not reloaded it yet, so only a reload ran. */
  reloadOnly?: boolean;
  /** True when the master CLI showed the new worker; undefined when it could not be asked. */
  confirmed: boolean | undefined;
  workerPid?: number;
  /** Set when HAProxy's runtime API applied the change (no reload): the servers added and removed, and deletions still waiting for connections to end. */
  runtime?: { added: string[]; removed: string[]; pendingDeletes: string[] };
  /** Why this change took the reload path although a runtime socket is set. */
  reloadBecause?: string;
  /** Set when a runtime command failed and the change fell back to the reload path: HAProxy's words. */
  runtimeFailure?: string;
  timings: { renderMs: number; checkMs: number; reloadMs: number; confirmMs: number; totalMs: number; runtimeMs?: number };
}

/** How an apply goes: reload a changed file, and `force` a reload of an unchanged one (HAProxy's servers were found out of step with it). */
export interface ApplyOptions {
  reload: boolean;
  force?: boolean;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** HAProxy's own error lines from a check, with the staged file's name put back to the live one. */
export function haproxyErrorLines(result: CommandResult, staged: string, target: string, stagedText: string): string[] {
  const raw = `${result.stdout}\n${result.stderr}`
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== "");
  const important = raw.filter((l) => /\[(ALERT|WARNING)\]|error|fatal/i.test(l));
  const lines = (important.length > 0 ? important : raw).slice(0, 40).map((l) => l.split(staged).join(target));
  // Show the offending rendered lines themselves, so a template mistake is easy to find.
  const text = stagedText.split("\n");
  const seen = new Set<number>();
  for (const l of [...lines]) {
    for (const m of l.matchAll(/\[[^\]]*:(\d+)\]/g)) {
      const n = Number(m[1]);
      if (seen.has(n) || !text[n - 1]) continue;
      seen.add(n);
      lines.push(`  line ${n}: ${text[n - 1]!.trim()}`);
    }
  }
  return lines;
}

async function modeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).mode & 0o7777;
  } catch {
    return 0o644;
  }
}

/**
 * Render with `render()` and apply the result. With `reload`, a changed file is reloaded and the
 * reload confirmed. Throws AUTOSCALER_HAPROXY_CHECK_FAILED (live file untouched) or
 * AUTOSCALER_HAPROXY_RELOAD_FAILED (previous file restored).
 */
export async function applyHaproxyConfig(settings: ApplySettings, render: () => Promise<string>, deps: ApplyDeps, options: ApplyOptions): Promise<ApplyResult> {
  const t0 = performance.now();
  return withApplyLock(settings.target, async () => applyLocked(settings, Buffer.from(await render(), "utf8"), deps, options, t0));
}

/** Run `fn` holding the apply lock on `target` (`<target>.lock`), so applies of any process never overlap. */
export async function withApplyLock<T>(target: string, fn: () => Promise<T>): Promise<T> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  const release = await lockfile.lock(target, {
    realpath: false,
    stale: 60_000,
    retries: { retries: 200, factor: 1.2, minTimeout: 10, maxTimeout: 250 },
  });
  try {
    return await fn();
  } finally {
    await release().catch(() => undefined);
  }
}

/** The SHA-256 of a config text, as the reloaded marker keeps it. */
export const configDigest = (text: Buffer): string => createHash("sha256").update(text).digest("hex");

/** The reloaded marker's digest, or undefined when there is no marker (setting or file). */
export async function readReloadedMarker(settings: ApplySettings): Promise<string | undefined> {
  return settings.reloadedMarker ? (await readIfExists(settings.reloadedMarker))?.toString("utf8").trim() : undefined;
}

/** Record that HAProxy runs `digest` now. A marker that cannot be written only costs one extra reload later: a warning, never a failed apply. */
export async function writeReloadedMarker(settings: ApplySettings, digest: string, logger: Logger): Promise<void> {
  if (!settings.reloadedMarker) return;
  try {
    await fs.mkdir(path.dirname(settings.reloadedMarker), { recursive: true });
    await writeFileAtomic(settings.reloadedMarker, digest + "\n", { mode: 0o644 });
  } catch (err) {
    logger.warn("HAProxy has the new config, but its marker could not be written; the next apply reloads once more", {
      file: settings.reloadedMarker,
      error: (err as Error).message,
    });
  }
}

/**
 * Write `rendered` beside the live file and run check_command on it. Returns the staged path;
 * throws AUTOSCALER_HAPROXY_CHECK_FAILED (stage removed, live file untouched) when HAProxy refuses it.
 */
export async function stageAndCheck(settings: ApplySettings, rendered: Buffer, deps: Pick<ApplyDeps, "runner">): Promise<string> {
  const { target } = settings;
  const staged = tempPathFor(target, "staged");
  await writeAndSync(staged, rendered, await modeOf(target));
  let check: CommandResult;
  try {
    check = await deps.runner.run(settings.checkCommand, { env: { CONFIG: staged }, cwd: settings.cwd, timeoutMs: settings.commandTimeoutMs });
  } catch (err) {
    await fs.rm(staged, { force: true });
    throw err;
  }
  if (check.code !== 0 || check.timedOut) {
    await fs.rm(staged, { force: true });
    const details = haproxyErrorLines(check, staged, target, rendered.toString("utf8"));
    throw new AutoscalerError(
      "AUTOSCALER_HAPROXY_CHECK_FAILED",
      `HAProxy refused the new configuration (check_command ${describeExit(check)}); ${target} was left as it was. HAProxy said:`,
      { details },
    );
  }
  return staged;
}

/** Put a checked staged file in place of the live one, durably. */
export async function promoteStaged(staged: string, target: string, bytes: number, logger: Logger): Promise<void> {
  await fs.rename(staged, target);
  await syncDir(path.dirname(target));
  logger.info("haproxy config written", { file: target, bytes });
}

/**
 * The reload path for an already rendered text, with the apply lock held: compare, stage,
 * check, rename, reload, confirm (see the top of this file).
 */
export async function applyLocked(settings: ApplySettings, rendered: Buffer, deps: ApplyDeps, options: ApplyOptions, t0: number): Promise<ApplyResult> {
  const { target } = settings;
  const timings = { renderMs: 0, checkMs: 0, reloadMs: 0, confirmMs: 0, totalMs: 0 };
  const previous = await readIfExists(target);
  const digest = configDigest(rendered);
  timings.renderMs = performance.now() - t0;
  let reloadOnly = false;
  if (previous && previous.equals(rendered)) {
    const known = settings.reloadedMarker ? await readReloadedMarker(settings) : digest;
    if (!options.reload || (known === digest && !options.force)) {
      timings.totalMs = performance.now() - t0;
      return { changed: false, checked: false, reloaded: false, confirmed: undefined, timings };
    }
    // The file is right but HAProxy has not been reloaded on it (it was written with --no-reload): reload only.
    reloadOnly = true;
  } else {
    const t1 = performance.now();
    const staged = await stageAndCheck(settings, rendered, deps);
    timings.checkMs = performance.now() - t1;
    await promoteStaged(staged, target, rendered.length, deps.logger);
  }

  if (!options.reload) {
    timings.totalMs = performance.now() - t0;
    return { changed: true, checked: true, reloaded: false, confirmed: undefined, timings };
  }
  const changed = !reloadOnly;
  const done = async (confirmed: boolean | undefined, workerPid?: number): Promise<ApplyResult> => {
    await writeReloadedMarker(settings, digest, deps.logger);
    timings.totalMs = performance.now() - t0;
    return {
      changed,
      checked: changed,
      reloaded: true,
      ...(reloadOnly ? { reloadOnly } : {}),
      confirmed,
      ...(workerPid !== undefined ? { workerPid } : {}),
      timings,
    };
  };

  const restore = async (reason: string, details: string[]): Promise<never> => {
    if (previous && !reloadOnly) await writeFileAtomic(target, previous);
    const fileNote = reloadOnly
      ? `${target} was not changed`
      : previous
        ? `the previous ${target} was put back`
        : `${target} is the new file (there was none before)`;
    throw new AutoscalerError("AUTOSCALER_HAPROXY_RELOAD_FAILED", `reload failed: ${reason}; ${fileNote} and HAProxy keeps serving the configuration it had`, {
      details,
    });
  };

  const ask = deps.showProc ?? ((s: string) => showProc(s));
  let before: ProcTable | undefined;
  if (settings.masterSocket) {
    try {
      before = await ask(settings.masterSocket);
    } catch (err) {
      deps.logger.warn("cannot confirm the reload: HAProxy's master CLI does not answer; set [haproxy] master_socket to the -S socket of haproxy", {
        socket: settings.masterSocket,
        error: (err as Error).message,
      });
    }
  }

  await deps.beforeReload?.(rendered.toString("utf8"));
  const t2 = performance.now();
  const reload = await deps.runner.run(settings.reloadCommand, { env: { CONFIG: target }, cwd: settings.cwd, timeoutMs: settings.commandTimeoutMs });
  timings.reloadMs = performance.now() - t2;
  if (reload.code !== 0 || reload.timedOut) {
    const out = `${reload.stdout}\n${reload.stderr}`
      .split("\n")
      .filter((l) => l.trim() !== "")
      .slice(-20);
    await restore(`reload_command failed (${describeExit(reload)})`, out);
  }
  if (!before) return done(undefined);

  const t3 = performance.now();
  const sleep = deps.sleep ?? defaultSleep;
  let failedSeen = 0;
  for (;;) {
    let after: ProcTable | undefined;
    try {
      after = await ask(settings.masterSocket);
    } catch {
      // The master re-executes during a reload and drops CLI connections meanwhile: ask again.
    }
    if (after) {
      const verdict = judgeReload(before, after);
      if (verdict.state === "confirmed") {
        timings.confirmMs = performance.now() - t3;
        return done(true, verdict.workerPid);
      }
      // A failed verdict must hold for a few looks: the new worker may be a moment behind the master.
      if (verdict.state === "failed" && ++failedSeen >= 5) {
        await restore(
          "HAProxy did not start a worker with the new configuration (its master reported the reload but kept the old worker; see HAProxy's log for the cause, such as a port already in use)",
          [],
        );
      }
    }
    if (performance.now() - t3 > settings.reloadTimeoutMs) {
      await restore(`HAProxy did not confirm the reload within ${Math.round(settings.reloadTimeoutMs)} ms (no new worker on ${settings.masterSocket})`, []);
    }
    await sleep(20);
  }
}
