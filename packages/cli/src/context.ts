/** What most commands share: the loaded config, a logger, hosts.d and the apply settings. */
import {
  applySettingsFromConfig,
  createHostsStore,
  createLogger,
  createShellRunner,
  type ApplySettings,
  type Config,
  type HostsStore,
  type Logger,
  type LogLevel,
} from "@autoscaler/shared";
import { readConfig } from "./config-file.js";
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

/** The config named by --config / AUTOSCALER_CONFIG (its warnings printed: readConfig), and what the commands build from it. */
export async function loadContext(io: Io, args: GlobalArgs): Promise<CommandContext> {
  const config = await readConfig(io, args);
  return {
    config,
    logger: cliLogger(io, args, config.secrets),
    store: createHostsStore(config.hostsDir),
    applySettings: applySettingsFromConfig(config),
  };
}

/** The production command runner. */
export const runner = createShellRunner();
