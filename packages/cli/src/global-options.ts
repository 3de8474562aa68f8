import { LOG_LEVELS } from "@autoscaler/shared/core";

/**
 * The options every command takes, as yargs declares them (run.ts). The agent's own entry
 * (main.ts) reads the same table, so both accept the same names and values.
 */
export const GLOBAL_OPTIONS = {
  config: {
    type: "string",
    describe: "the ini file (default $AUTOSCALER_CONFIG, else /etc/autoscaler/autoscaler.ini)",
    global: true,
    requiresArg: true,
  },
  "log-level": { choices: LOG_LEVELS, describe: "least important log lines to print", global: true },
} as const;
