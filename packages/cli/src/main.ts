/**
 * The bin's entry (import from "@autoscaler/cli/main"). `autoscaler agent`, the daemon on every
 * web node, starts from here without yargs and the other commands: that is code a node would
 * keep in memory for as long as the agent runs (README "Agent footprint"). This module loads
 * only small files; the agent's own modules, or the whole CLI, are imported on demand.
 *
 * The agent's command line is read here only when it is plainly valid: `agent`, then each of
 * the global options (GLOBAL_OPTIONS, the table yargs declares too) at most once, as `--name
 * value` or `--name=value`, with a value yargs would take. Anything else (--help, --version,
 * a misspelt option, options before the command) goes to `run`, whose yargs answers it.
 */
import type { GlobalArgs } from "./context.js";
import { GLOBAL_OPTIONS } from "./global-options.js";
import { processIo, type Io } from "./io.js";
import { printError } from "./print-error.js";
import { version } from "./version.js";

type OptionName = keyof typeof GLOBAL_OPTIONS;

/** The agent's options from `argv` (the words after `agent`), or undefined when yargs should read them. */
export function parseAgentArgs(argv: string[]): GlobalArgs | undefined {
  const seen = new Map<OptionName, string>();
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z][a-z-]*)(?:=([\s\S]*))?$/.exec(argv[i]!);
    if (!m || !Object.hasOwn(GLOBAL_OPTIONS, m[1]!)) return undefined;
    const name = m[1] as OptionName;
    if (seen.has(name)) return undefined; // yargs makes a repeated option an array
    const value = m[2] ?? argv[++i];
    if (value === undefined || value === "" || value.startsWith("-")) return undefined;
    const spec = GLOBAL_OPTIONS[name];
    if ("choices" in spec && !(spec.choices as readonly string[]).includes(value)) return undefined;
    seen.set(name, value);
  }
  return { config: seen.get("config"), logLevel: seen.get("log-level") as GlobalArgs["logLevel"] };
}

/** Run one command line; returns the exit code. */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const agentArgs = argv[0] === "agent" ? parseAgentArgs(argv.slice(1)) : undefined;
  if (!agentArgs) return (await import("./run.js")).run(argv, io);
  try {
    return await (await import("./commands/daemons.js")).runAgent(io, agentArgs, version);
  } catch (err) {
    return printError(io, err);
  }
}
