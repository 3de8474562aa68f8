/**
 * `master` and `agent`: the daemons, in the foreground, logging to stdout until SIGTERM or
 * SIGINT. The master also takes SIGHUP: it reads the ini again and applies what it can.
 * The agent starts here from main.ts without yargs: this module imports only
 * "@autoscaler/shared/core" and loads the master's modules only to run the master.
 */
import { AutoscalerError, createLogger, formatProblem, loadConfig, type Logger } from "@autoscaler/shared/core";
import type { RunningMaster } from "@autoscaler/master";
import { readConfig } from "../config-file.js";
import type { GlobalArgs } from "../context.js";
import type { Io } from "../io.js";

/** The daemons' logger: JSON lines when stdout is not a terminal (journald), readable lines when it is. */
export function daemonLogger(io: Io, args: GlobalArgs, secrets: string[]): Logger {
  return createLogger(io.stdout, { level: args.logLevel ?? "info", json: !io.stdout.isTTY, secrets });
}

function untilSignal(logger: Logger): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => {
      process.off("SIGTERM", term);
      process.off("SIGINT", int);
      logger.info(`received ${sig}; stopping`);
      resolve(sig);
    };
    const term = () => on("SIGTERM");
    const int = () => on("SIGINT");
    process.on("SIGTERM", term);
    process.on("SIGINT", int);
  });
}

/**
 * SIGHUP: read the ini again with the same loader as at start. A bad ini changes nothing: each
 * problem is logged (secret values are already redacted by the loader) and the running config
 * stays. A good one goes to the master, which applies what it can and names what needs a restart.
 * `secrets` is the logger's own list: the new ini's secrets join it before anything is logged.
 */
export async function reloadMasterConfig(io: Io, file: string, master: RunningMaster, logger: Logger, secrets: string[]): Promise<boolean> {
  logger.info("SIGHUP: reading the config again", { file });
  let loaded: Awaited<ReturnType<typeof loadConfig>>;
  try {
    loaded = await loadConfig(file, { home: io.env.HOME });
  } catch (err) {
    const details = err instanceof AutoscalerError ? err.details : [];
    // loadConfig lists the problems, then the warnings ("warning: …"), which may explain them.
    const problems = details.filter((d) => !d.startsWith("warning: "));
    for (const problem of problems) logger.error(problem, { event: "config_reload_refused", file });
    for (const warning of details.filter((d) => d.startsWith("warning: "))) logger.warn(warning.slice("warning: ".length), { file });
    logger.error(`${(err as Error).message.replace(/:$/, "")}; keeping the running config`, {
      event: "config_reload_refused",
      file,
      problems: problems.length,
    });
    return false;
  }
  for (const s of loaded.config.secrets) if (!secrets.includes(s)) secrets.push(s);
  for (const w of loaded.warnings) logger.warn(formatProblem(w), { file });
  try {
    master.reconfigure(loaded.config);
  } catch (err) {
    logger.error(`cannot apply the reloaded config: ${(err as Error).message}`, { event: "config_reload_failed", file });
    return false;
  }
  return true;
}

/** Run the master until a signal stops it; SIGHUP reloads the ini. */
export async function runMaster(io: Io, args: GlobalArgs, version: string): Promise<number> {
  // SIGHUP's default action ends the process, so take it before anything else. Reloads run one
  // at a time; one asked for while the master starts runs once it has started.
  let started: { master: RunningMaster; logger: Logger; file: string; secrets: string[] } | undefined;
  let stopping = false;
  let hupWhileStarting = false;
  let reloads = Promise.resolve();
  const reload = (): void => {
    if (!started) {
      hupWhileStarting = true;
      return;
    }
    const { master, logger, file, secrets } = started;
    if (stopping) return logger.info("SIGHUP ignored: the master is stopping");
    reloads = reloads
      .then(() => reloadMasterConfig(io, file, master, logger, secrets))
      .then(
        () => undefined,
        (err: Error) => logger.error(`config reload failed: ${err.message}`, { event: "config_reload_failed" }),
      );
  };
  process.on("SIGHUP", reload);
  try {
    const config = await readConfig(io, args);
    // The logger keeps this array: a reload adds the new ini's secrets, and none is ever dropped.
    const secrets = [...config.secrets];
    const logger = daemonLogger(io, args, secrets);
    const [{ startMaster }, { createShellRunner }] = await Promise.all([import("@autoscaler/master"), import("@autoscaler/shared")]);
    const master = await startMaster(config, { logger, runner: createShellRunner(), now: () => Date.now(), version });
    started = { master, logger, file: config.file, secrets };
    if (hupWhileStarting) reload();
    await untilSignal(logger);
    stopping = true;
    await reloads;
    await master.stop();
    logger.info("master stopped");
    return 0;
  } finally {
    process.off("SIGHUP", reload);
  }
}

/** Run the agent until a signal stops it. */
export async function runAgent(io: Io, args: GlobalArgs, version: string): Promise<number> {
  const config = await readConfig(io, args);
  const logger = daemonLogger(io, args, config.secrets);
  const { startAgent } = await import("@autoscaler/agent");
  const agent = await startAgent(config, { logger, version, env: io.env });
  await untilSignal(logger);
  await agent.stop();
  logger.info("agent stopped");
  return 0;
}
