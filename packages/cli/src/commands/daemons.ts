/** `master` and `agent`: the daemons, in the foreground, logging to stdout until SIGTERM or SIGINT. */
import { createLogger, createShellRunner, type Logger } from "@autoscaler/shared";
import { loadContext, type GlobalArgs } from "../context.js";
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

/** Run the master until a signal stops it. */
export async function runMaster(io: Io, args: GlobalArgs, version: string): Promise<number> {
  const ctx = await loadContext(io, args);
  const logger = daemonLogger(io, args, ctx.config.secrets);
  const { startMaster } = await import("@autoscaler/master");
  const master = await startMaster(ctx.config, { logger, runner: createShellRunner(), now: () => Date.now(), version });
  await untilSignal(logger);
  await master.stop();
  logger.info("master stopped");
  return 0;
}

/** Run the agent until a signal stops it. */
export async function runAgent(io: Io, args: GlobalArgs, version: string): Promise<number> {
  const ctx = await loadContext(io, args);
  const logger = daemonLogger(io, args, ctx.config.secrets);
  const { startAgent } = await import("@autoscaler/agent");
  const agent = await startAgent(ctx.config, { logger, version, env: io.env });
  await untilSignal(logger);
  await agent.stop();
  logger.info("agent stopped");
  return 0;
}
