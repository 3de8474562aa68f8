import { formatProblem, loadConfig, resolveConfigPath, type Config } from "@autoscaler/shared/core";
import type { GlobalArgs } from "./context.js";
import type { Io } from "./io.js";

/** Load the config named by --config / AUTOSCALER_CONFIG; print its warnings to stderr. */
export async function readConfig(io: Io, args: GlobalArgs): Promise<Config> {
  const file = resolveConfigPath(args.config, io.env, io.cwd);
  const { config, warnings } = await loadConfig(file, { home: io.env.HOME });
  for (const w of warnings) io.stderr.write(`warning: ${formatProblem(w)}\n`);
  return config;
}
