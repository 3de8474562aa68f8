/** What most commands share: the loaded config, a logger, hosts.d and the apply settings. */
import {
  applySettingsFromConfig,
  createHostsStore,
  createLogger,
  createShellRunner,
  formatProblem,
  loadConfig,
  resolveConfigPath,
  type ApplySettings,
  type Config,
  type HostsStore,
  type Logger,
  type LogLevel,
} from "@autoscaler/shared";
import type { Io } from "./io.js";

/** Options every command takes. */
export interface GlobalArgs {
  config?: string;
  logLevel?: LogLevel;
  json?: boolean;
}

/** A loaded config with what the commands build from it. */
export interface CommandContext {
  config: Config;
  logger: Logger;
  store: HostsStore;
  applySettings: ApplySettings;
}

/** A logger for the short-lived commands: readable lines on stderr (warnings and up unless --log-level), secrets redacted. */
export function cliLogger(io: Io, args: GlobalArgs, secrets: string[] = []): Logger {
  return createLogger(io.stderr, { level: args.logLevel ?? "warn", json: false, secrets });
}

/** Load the config named by --config / AUTOSCALER_CONFIG; print its warnings to stderr. */
export async function loadContext(io: Io, args: GlobalArgs): Promise<CommandContext> {
  const file = resolveConfigPath(args.config, io.env, io.cwd);
  const { config, warnings } = await loadConfig(file, { home: io.env.HOME });
  for (const w of warnings) io.stderr.write(`warning: ${formatProblem(w)}\n`);
  return {
    config,
    logger: cliLogger(io, args, config.secrets),
    store: createHostsStore(config.hostsDir),
    applySettings: applySettingsFromConfig(config),
  };
}

/** The production command runner. */
export const runner = createShellRunner();
